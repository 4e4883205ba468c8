"""The ONNX stand-in of an 8-bit PackedLinear with a fixed input range (static int8: naive_ptq with 8-bit
activations, Q8BERT with EMA ranges): QuantizeLinear -> DequantizeLinear on the input and DequantizeLinear on
the int8 weights, the QDQ pattern that ONNX Runtime fuses into int8 GEMMs and OpenVINO turns into int8
kernels; and the QDQ stand-in of an activation quantizer with a fixed range (trained attention-product
inputs). Outside export, forward computes the same arithmetic in floats (a reference)."""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn as nn
import torch.nn.functional as F

if TYPE_CHECKING:
    from bertcompress.methods.quantization.packed import PackedLinear


def qdq_possible(source: "PackedLinear") -> bool:
    """8-bit symmetric weights per row or tensor, and an 8-bit input range: what QDQ int8 kernels take."""
    spec, inputs = source.spec, source.input_spec
    return (spec.bits == 8 and spec.symmetric and spec.granularity in ("channel", "tensor") and inputs is not None
            and inputs.bits == 8)


class QdqLinear(nn.Module):
    def __init__(self, source: "PackedLinear"):
        super().__init__()
        self.register_buffer("weight_int8", source.codes().to(torch.int8))
        rows = source.out_features
        self.register_buffer("weight_scale", source.scale.float().expand(rows).contiguous())
        self.input_dtype = torch.int8 if source.input_spec.symmetric else torch.uint8
        self.register_buffer("input_scale", source.input_scale.float().reshape(()).clone())
        self.register_buffer("input_zero", source.input_zero.reshape(()).round().to(self.input_dtype))
        self.bias = None if source.bias is None else nn.Parameter(source.bias.detach().clone(), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = quantize_dequantize(x, self.input_scale, self.input_zero, self.input_dtype)
        if torch.onnx.is_in_onnx_export():
            weight = torch.onnx.ops.symbolic("DequantizeLinear", (self.weight_int8, self.weight_scale),
                                             {"axis": 0}, dtype=torch.float32, shape=self.weight_int8.shape,
                                             version=13)
        else:
            weight = self.weight_int8.float() * self.weight_scale[:, None]
        return F.linear(x, weight, self.bias)


class QdqQuantizer(nn.Module):
    """The stand-in of an activation quantizer with a fixed range: a QuantizeLinear/DequantizeLinear pair."""

    def __init__(self, scale: torch.Tensor, zero: torch.Tensor, dtype: torch.dtype):
        super().__init__()
        self.dtype = dtype
        self.register_buffer("scale", scale.float().reshape(()).clone())
        self.register_buffer("zero", zero.reshape(()).round().to(dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return quantize_dequantize(x, self.scale, self.zero, self.dtype)


def quantize_dequantize(x: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """QuantizeLinear -> DequantizeLinear (int8 or uint8, one scale) in an ONNX export; the same rounding and
    saturation in floats otherwise."""
    if torch.onnx.is_in_onnx_export():
        q = torch.onnx.ops.symbolic("QuantizeLinear", (x, scale, zero), dtype=dtype, shape=x.shape, version=13)
        return torch.onnx.ops.symbolic("DequantizeLinear", (q, scale, zero), dtype=torch.float32, shape=x.shape,
                                       version=13)
    info = torch.iinfo(dtype)
    offset = zero.float()
    return ((torch.round(x / scale) + offset).clamp(info.min, info.max) - offset) * scale
