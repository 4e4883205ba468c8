"""The ONNX stand-in of DynamicInt8Linear: the same int8 weights and scales, as ONNX integer ops.

Exported as DynamicQuantizeLinear + MatMulInteger over the stored int8 weights, which onnxruntime fuses
into its int8 GEMM ops (DynamicQuantizeMatMul / MatMulIntegerToFloat)."""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn as nn
import torch.nn.functional as F

if TYPE_CHECKING:
    from bertcompress.methods.quantization.int8_modules import DynamicInt8Linear


class OnnxInt8Linear(nn.Module):
    """Export-only stand-in for DynamicInt8Linear.

    Activations are quantized per call to uint8 with a zero point (DynamicQuantizeLinear, full 8 bits);
    DynamicInt8Linear's FBGEMM kernel uses 7 bits (reduce_range), so the two differ by rounding noise.
    By default weights are stored as uint8 = int8 + 128 with zero point 128 (same bytes, same values):
    ORT's u8s8 kernel on AVX2 CPUs without VNNI saturates int16 pair sums once activations pass 127,
    while its u8u8 kernel is exact everywhere. `signed=True` keeps int8 (u8s8: faster, exact only on
    VNNI or ARM CPUs). Outside export, forward computes the same arithmetic in float64: a reference.
    `dequantize=True` exports DequantizeLinear(int8 weights) -> MatMul instead, for OpenVINO (which keeps
    those weights int8 and quantizes activations in its own kernel)."""

    def __init__(self, source: "DynamicInt8Linear", signed: bool = False, dequantize: bool = False):
        super().__init__()
        self.dequantize = dequantize
        if dequantize:
            self.register_buffer("weight_int8", source.weight_int8.detach().clone())
        # MatMulInteger computes x @ B, so B is the [in, out] transpose of our [out, in] rows
        weight_t = source.weight_int8.t().contiguous()
        if not signed:
            weight_t = (weight_t.to(torch.int16) + 128).to(torch.uint8)
        self.register_buffer("weight_t", weight_t)
        self.register_buffer("weight_zero", torch.tensor(0 if signed else 128, dtype=weight_t.dtype))
        self.register_buffer("weight_scale", source.weight_scale.detach().clone())
        self.bias = None if source.bias is None else nn.Parameter(source.bias.detach().clone(), requires_grad=False)

    def _integer_matmul(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out_shape = (*x.shape[:-1], self.weight_t.shape[1])
        if torch.onnx.is_in_onnx_export():
            q, scale, zero = torch.onnx.ops.symbolic_multi_out(
                "DynamicQuantizeLinear", (x,), dtypes=(torch.uint8, torch.float32, torch.uint8),
                shapes=(x.shape, [], []), version=11)
            acc = torch.onnx.ops.symbolic("MatMulInteger", (q, self.weight_t, zero, self.weight_zero),
                                          dtype=torch.int32, shape=out_shape, version=10)
            return acc, scale
        low, high = x.min().clamp(max=0), x.max().clamp(min=0)  # the ONNX DynamicQuantizeLinear rule
        scale = ((high - low) / 255).clamp_min(1e-30)
        zero = torch.round(-low / scale).clamp(0, 255)
        q = (torch.round(x / scale) + zero).clamp(0, 255)
        weight = self.weight_t.double() - self.weight_zero.double()
        return (q - zero).double() @ weight, scale

    def _dequantized_weight(self) -> torch.Tensor:
        if torch.onnx.is_in_onnx_export():
            return torch.onnx.ops.symbolic("DequantizeLinear", (self.weight_int8, self.weight_scale), attrs={"axis": 0},
                                           dtype=torch.float32, shape=self.weight_int8.shape, version=13)
        return self.weight_int8.float() * self.weight_scale[:, None]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.dequantize:
            return F.linear(x, self._dequantized_weight(), self.bias)
        acc, scale = self._integer_matmul(x)
        # Cast -> Mul(x_scale * w_scale) -> Add(bias): the exact pattern ORT fuses into one int8 op
        y = acc.float() * (scale * self.weight_scale)
        return y if self.bias is None else y + self.bias
