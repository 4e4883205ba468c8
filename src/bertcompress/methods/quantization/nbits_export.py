"""The ONNX stand-in of a symmetric 4-bit PackedLinear: ONNX Runtime's weight-only `MatMulNBits` over the
stored codes, so the exported graph stays 4-bit (about 1/8 of fp32) instead of dequantized fp32.

MatMulNBits keeps B as [N, K / block, block / 2] bytes (two codes a byte, the even one in the low nibble),
one scale per block and zero point 8: our codes -7..7 become 1..15, exact. Blocks must be a power of two
of at least 16 that divides our quantization group, so a group's scale is repeated over its blocks."""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn as nn
import torch.nn.functional as F

if TYPE_CHECKING:
    from bertcompress.methods.quantization.packed import PackedLinear

MAX_BLOCK = 128


def block_size(group_length: int) -> int | None:
    """The largest power of two in 16..MAX_BLOCK dividing the group length, or None."""
    size = MAX_BLOCK
    while size >= 16:
        if group_length % size == 0:
            return size
        size //= 2
    return None


def nbits_block(source: "PackedLinear") -> int | None:
    """The MatMulNBits block for this module, or None when it cannot be one (not 4-bit symmetric, an input
    quantizer, or groups no allowed block divides)."""
    spec = source.spec
    if spec.bits != 4 or not spec.symmetric or source.input_spec is not None:
        return None
    group = spec.group_size if spec.granularity == "group" else source.in_features
    return block_size(group)


class NBitsLinear(nn.Module):
    """Export-only stand-in; outside export, forward computes the dequantized product (a reference)."""

    def __init__(self, source: "PackedLinear", block: int):
        super().__init__()
        n, k = source.out_features, source.in_features
        self.n, self.k, self.block = n, k, block
        codes = (source.codes().to(torch.int16) + 8).to(torch.uint8).reshape(n, k // block, block)
        self.register_buffer("packed", codes[..., 0::2] | (codes[..., 1::2] << 4))
        group = source.spec.group_size if source.spec.granularity == "group" else k
        scale = source.scale.float().reshape(n if source.spec.granularity != "tensor" else 1, -1)
        self.register_buffer("scales", scale.expand(n, k // group).repeat_interleave(group // block, 1).reshape(-1)
                             .contiguous())
        self.bias = None if source.bias is None else nn.Parameter(source.bias.detach().clone(), requires_grad=False)

    def dequantized(self) -> torch.Tensor:
        low, high = (self.packed & 15).to(torch.int16), (self.packed >> 4).to(torch.int16)
        codes = torch.stack([low, high], dim=-1).reshape(self.n, self.k // self.block, self.block) - 8
        return (codes.float() * self.scales.reshape(self.n, -1, 1)).reshape(self.n, self.k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.onnx.is_in_onnx_export():
            return F.linear(x, self.dequantized(), self.bias)
        y = torch.onnx.ops.symbolic(
            "com.microsoft::MatMulNBits", (x, self.packed, self.scales),
            {"K": self.k, "N": self.n, "bits": 4, "block_size": self.block},
            dtype=torch.float32, shape=(*x.shape[:-1], self.n), version=1)
        return y if self.bias is None else y + self.bias
