"""The ONNX stand-in of an 8-bit PackedLinear with a fixed input range (static int8: naive_ptq with 8-bit
activations, Q8BERT with EMA ranges): QuantizeLinear -> DequantizeLinear on the input and DequantizeLinear on
the int8 weights, the QDQ pattern that ONNX Runtime fuses into int8 GEMMs and OpenVINO turns into int8
kernels; and the QDQ stand-in of an activation quantizer with a fixed range (trained attention-product
inputs). Outside export, forward computes the same arithmetic in floats (a reference).

The graph is written the way ONNX Runtime's x86 QDQ fusion needs it: activations as uint8 (its int8 x int8
kernels are ARM-only; a symmetric int8 grid is the same values as uint8 with zero point 128), and weights
stored (in, out) so their DequantizeLinear feeds the MatMul directly, with no Transpose between."""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn as nn

if TYPE_CHECKING:
    from bertcompress.methods.quantization.packed import PackedLinear


def qdq_possible(source: "PackedLinear") -> bool:
    """8-bit symmetric weights per row or tensor, and an 8-bit input range: what QDQ int8 kernels take."""
    spec, inputs = source.spec, source.input_spec
    return (spec.bits == 8 and spec.symmetric and spec.granularity in ("channel", "tensor") and inputs is not None
            and inputs.bits == 8)


SYMMETRIC_ZERO = 128  # the uint8 zero point of a symmetric int8 grid


def uint8_zero(zero: torch.Tensor, symmetric: bool) -> torch.Tensor:
    """The uint8 zero point of an 8-bit activation grid (a symmetric grid moved up by 128: the same values)."""
    return (zero.reshape(()).round() + (SYMMETRIC_ZERO if symmetric else 0)).to(torch.uint8)


class QdqLinear(nn.Module):
    def __init__(self, source: "PackedLinear"):
        super().__init__()
        self.register_buffer("weight_int8_t", source.codes().to(torch.int8).t().contiguous())
        self.register_buffer("weight_scale", source.scale.float().expand(source.out_features).contiguous())
        self.register_buffer("input_scale", source.input_scale.float().reshape(()).clone())
        self.register_buffer("input_zero", uint8_zero(source.input_zero, source.input_spec.symmetric))
        self.bias = None if source.bias is None else nn.Parameter(source.bias.detach().clone(), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = quantize_dequantize(x, self.input_scale, self.input_zero)
        if torch.onnx.is_in_onnx_export():  # per output column: axis 1 of the (in, out) weight
            weight = torch.onnx.ops.symbolic("DequantizeLinear", (self.weight_int8_t, self.weight_scale),
                                             {"axis": 1}, dtype=torch.float32, shape=self.weight_int8_t.shape,
                                             version=13)
        else:
            weight = self.weight_int8_t.float() * self.weight_scale
        out = torch.matmul(x, weight)
        return out if self.bias is None else out + self.bias


class QdqQuantizer(nn.Module):
    """The stand-in of an activation quantizer with a fixed range: a QuantizeLinear/DequantizeLinear pair."""

    def __init__(self, scale: torch.Tensor, zero: torch.Tensor, symmetric: bool):
        super().__init__()
        self.register_buffer("scale", scale.float().reshape(()).clone())
        self.register_buffer("zero", uint8_zero(zero, symmetric))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return quantize_dequantize(x, self.scale, self.zero)


def quantize_dequantize(x: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor) -> torch.Tensor:
    """QuantizeLinear -> DequantizeLinear (uint8, one scale) in an ONNX export; the same rounding and
    saturation in floats otherwise."""
    if torch.onnx.is_in_onnx_export():
        q = torch.onnx.ops.symbolic("QuantizeLinear", (x, scale, zero), dtype=torch.uint8, shape=x.shape,
                                    version=13)
        return torch.onnx.ops.symbolic("DequantizeLinear", (q, scale, zero), dtype=torch.float32, shape=x.shape,
                                       version=13)
    return ((torch.round(x / scale) + zero.float()).clamp(0, 255) - zero.float()) * scale
