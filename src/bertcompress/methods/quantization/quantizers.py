"""Uniform quantizers: 2-8 bits, symmetric or asymmetric, per tensor / channel / group, round-to-nearest,
a straight-through fake-quant, and bit packing so that b-bit weights take b bits on disk."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from bertcompress.core.errors import BertCompressError

Granularity = Literal["tensor", "channel", "group"]


@dataclass(frozen=True)
class QuantSpec:
    bits: int = 8
    symmetric: bool = True
    granularity: Granularity = "channel"
    group_size: int = 128

    def __post_init__(self) -> None:
        if not 2 <= self.bits <= 8:
            raise BertCompressError(f"bits: {self.bits} is outside the allowed range 2..8")
        if self.granularity not in ("tensor", "channel", "group"):
            raise BertCompressError(f"granularity: {self.granularity!r}; allowed: tensor, channel, group")
        if self.granularity == "group" and self.group_size < 1:
            raise BertCompressError(f"group_size: {self.group_size} must be >= 1")

    @property
    def qmin(self) -> int:
        return -(2 ** (self.bits - 1) - 1) if self.symmetric else 0

    @property
    def qmax(self) -> int:
        return 2 ** (self.bits - 1) - 1 if self.symmetric else 2**self.bits - 1

    def check_shape(self, shape: torch.Size, name: str = "weight") -> None:
        if self.granularity == "group" and shape[-1] % self.group_size:
            raise BertCompressError(f"group_size: {self.group_size} does not divide {name}'s last dimension "
                                    f"{shape[-1]}; choose a divisor of {shape[-1]}")


def _grouped(x: torch.Tensor, spec: QuantSpec) -> torch.Tensor:
    """View in which the quantization parameters are shared along the last dimension."""
    if spec.granularity == "tensor":
        return x.reshape(1, -1)
    if spec.granularity == "channel":
        return x.reshape(x.shape[0], -1)
    spec.check_shape(x.shape)
    return x.reshape(-1, spec.group_size)


def qparams_from_range(low: torch.Tensor, high: torch.Tensor, spec: QuantSpec) -> tuple[torch.Tensor, torch.Tensor]:
    """Scale and zero point that map [low, high] (per group) onto the integer grid."""
    if spec.symmetric:
        scale = torch.maximum(low.abs(), high.abs()) / spec.qmax
        return scale.clamp_min(1e-12), torch.zeros_like(scale)
    low, high = low.clamp(max=0), high.clamp(min=0)  # zero must be representable exactly
    scale = ((high - low) / (spec.qmax - spec.qmin)).clamp_min(1e-12)
    zero = (spec.qmin - torch.round(low / scale)).clamp(spec.qmin, spec.qmax)
    return scale, zero


def qparams(x: torch.Tensor, spec: QuantSpec) -> tuple[torch.Tensor, torch.Tensor]:
    grouped = _grouped(x.detach(), spec)
    return qparams_from_range(grouped.amin(dim=1), grouped.amax(dim=1), spec)


def quantize(x: torch.Tensor, spec: QuantSpec) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Integer codes (int16 holding qmin..qmax), scale and zero point, one pair per group."""
    scale, zero = qparams(x, spec)
    grouped = _grouped(x.detach(), spec)
    codes = torch.clamp(torch.round(grouped / scale[:, None]) + zero[:, None], spec.qmin, spec.qmax)
    return codes.to(torch.int16).reshape(x.shape), scale, zero


def dequantize(codes: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor, spec: QuantSpec) -> torch.Tensor:
    grouped = _grouped(codes.float(), spec)
    return ((grouped - zero[:, None]) * scale[:, None]).reshape(codes.shape)


class _RoundSTE(torch.autograd.Function):
    """Fake quantization whose backward is the straight-through estimator: identity inside the clipping
    range, zero outside it."""

    @staticmethod
    def forward(ctx, grouped, scale, zero, qmin, qmax):
        codes = torch.round(grouped / scale) + zero
        ctx.save_for_backward((codes >= qmin) & (codes <= qmax))
        return (codes.clamp(qmin, qmax) - zero) * scale

    @staticmethod
    def backward(ctx, grad):
        (inside,) = ctx.saved_tensors
        return grad * inside, None, None, None, None


def fake_quantize(x: torch.Tensor, spec: QuantSpec, scale: torch.Tensor | None = None,
                  zero: torch.Tensor | None = None) -> torch.Tensor:
    """Quantize-dequantize with STE gradients; ranges from `x` itself unless given (e.g. EMA ranges)."""
    if scale is None:
        scale, zero = qparams(x, spec)
    grouped = _grouped(x, spec)
    out = _RoundSTE.apply(grouped, scale.reshape(-1, 1), zero.reshape(-1, 1), spec.qmin, spec.qmax)
    return out.reshape(x.shape)


def pack_bits(codes: torch.Tensor, spec: QuantSpec) -> torch.Tensor:
    """b-bit codes -> a uint8 stream of ceil(n * b / 8) bytes (bit i of code k at stream bit k * b + i)."""
    unsigned = (codes.reshape(-1).to(torch.int16) - spec.qmin).to(torch.uint8)
    bits = torch.stack([(unsigned >> i) & 1 for i in range(spec.bits)], dim=1).reshape(-1)
    bits = torch.cat([bits, bits.new_zeros((-bits.numel()) % 8)]).reshape(-1, 8)
    packed = torch.zeros(bits.shape[0], dtype=torch.uint8)
    for i in range(8):
        packed |= bits[:, i] << i
    return packed


def unpack_bits(packed: torch.Tensor, shape: torch.Size | tuple, spec: QuantSpec) -> torch.Tensor:
    count = int(torch.Size(shape).numel())
    bits = torch.stack([(packed >> i) & 1 for i in range(8)], dim=1).reshape(-1)[: count * spec.bits]
    bits = bits.reshape(count, spec.bits)
    unsigned = torch.zeros(count, dtype=torch.int16)
    for i in range(spec.bits):
        unsigned |= bits[:, i].to(torch.int16) << i
    return (unsigned + spec.qmin).reshape(shape)
