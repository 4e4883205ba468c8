"""Modules that store int8 weights and compute with them: a dynamic-int8 Linear and an int8 Embedding."""
from __future__ import annotations

import warnings
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from bertcompress.core.modules import ExportOptions, frozen_embedding, frozen_linear, replacement
from bertcompress.methods.quantization.int8_export import OnnxInt8Linear


def quantize_rows(weight: torch.Tensor, scale: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric per-row int8: values in [-127, 127] and one fp32 scale per row (error <= scale / 2).
    A given `scale` (e.g. the grid a model was trained on) is used as is."""
    if scale is None:
        scale = weight.detach().abs().amax(dim=1).clamp_min(1e-12) / 127.0
    values = torch.round(weight.detach() / scale[:, None]).clamp_(-127, 127).to(torch.int8)
    return values, scale.float()


def quantized_engine() -> str:
    engines = torch.backends.quantized.supported_engines
    for engine in ("x86", "fbgemm", "qnnpack"):
        if engine in engines:
            return engine
    raise RuntimeError(f"this torch build has no int8 GEMM engine (found {engines})")


@replacement
class DynamicInt8Linear(nn.Module):
    """int8 weights (per output channel), activations quantized per batch at run time, int32 accumulation.

    Runs torch's `quantized::linear_dynamic` (FBGEMM on x86, QNNPACK on ARM): the kernel behind the
    deprecated `quantize_dynamic`, called directly so that the int8 weights are ours to save and reload.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, reduce_range: bool = True):
        super().__init__()
        self.in_features, self.out_features, self.reduce_range = in_features, out_features, reduce_range
        self.register_buffer("weight_int8", torch.zeros(out_features, in_features, dtype=torch.int8))
        self.register_buffer("weight_scale", torch.ones(out_features))
        self.bias = nn.Parameter(torch.zeros(out_features), requires_grad=False) if bias else None
        self._packed = None

    @classmethod
    def from_linear(cls, linear: nn.Linear, reduce_range: bool = True,
                    scale: torch.Tensor | None = None) -> "DynamicInt8Linear":
        module = cls(linear.in_features, linear.out_features, linear.bias is not None, reduce_range)
        values, scale = quantize_rows(linear.weight, scale)
        module.weight_int8.copy_(values)
        module.weight_scale.copy_(scale)
        if linear.bias is not None:
            module.bias.data.copy_(linear.bias.detach())
        return module

    def dequantized_weight(self) -> torch.Tensor:
        return self.weight_int8.float() * self.weight_scale[:, None]

    def _pack(self):
        torch.backends.quantized.engine = quantized_engine()
        with warnings.catch_warnings():  # the qint8 tensor only carries our int8 weights into the packer
            warnings.simplefilter("ignore")
            qweight = torch._make_per_channel_quantized_tensor(
                self.weight_int8, self.weight_scale.double(),
                torch.zeros(self.out_features, dtype=torch.long), 0)
        bias = None if self.bias is None else self.bias.detach().float()
        return torch.ops.quantized.linear_prepack(qweight, bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._packed is None:
            self._packed = self._pack()
        return torch.ops.quantized.linear_dynamic(x.float().contiguous(), self._packed, self.reduce_range)

    def _load_from_state_dict(self, *args, **kwargs):
        self._packed = None  # repack from the newly loaded int8 weights
        super()._load_from_state_dict(*args, **kwargs)

    def __getstate__(self):
        state = super().__getstate__() if hasattr(super(), "__getstate__") else self.__dict__.copy()
        state = dict(state)
        state["_packed"] = None  # packed kernels are not copyable; rebuilt on first use
        return state

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int8 per-channel"

    def manifest_entry(self) -> dict[str, Any]:
        return {"class": type(self).__name__, "in_features": self.in_features,
                "out_features": self.out_features, "bias": self.bias is not None,
                "reduce_range": self.reduce_range}

    @classmethod
    def from_manifest(cls, entry: dict[str, Any]) -> "DynamicInt8Linear":
        return cls(entry["in_features"], entry["out_features"], entry["bias"], entry["reduce_range"])

    def export_standin(self, options: ExportOptions) -> nn.Module:
        if options.plain or options.float_weights:
            return frozen_linear(self.dequantized_weight(), None if self.bias is None else self.bias.detach())
        return OnnxInt8Linear(self, options.signed_int8, options.dequantize_weights)

    def standin_is_exact(self, options: ExportOptions) -> bool:
        return False  # activations are rounded at run time, by another kernel (or not at all when plain)


@replacement
class Int8Embedding(nn.Module):
    """Embedding table stored as int8 rows with one scale per row; rows are dequantized after the lookup.
    Exports as itself (the default stand-in): a Gather on the int8 table times the gathered row scales."""

    def __init__(self, num_embeddings: int, embedding_dim: int, padding_idx: int | None = None):
        super().__init__()
        self.num_embeddings, self.embedding_dim, self.padding_idx = num_embeddings, embedding_dim, padding_idx
        self.register_buffer("weight_int8", torch.zeros(num_embeddings, embedding_dim, dtype=torch.int8))
        self.register_buffer("weight_scale", torch.ones(num_embeddings))

    @classmethod
    def from_embedding(cls, embedding: nn.Embedding, scale: torch.Tensor | None = None) -> "Int8Embedding":
        module = cls(embedding.num_embeddings, embedding.embedding_dim, embedding.padding_idx)
        values, scale = quantize_rows(embedding.weight, scale)
        module.weight_int8.copy_(values)
        module.weight_scale.copy_(scale)
        return module

    @property
    def weight(self) -> torch.Tensor:
        return self.weight_int8.float() * self.weight_scale[:, None]

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return F.embedding(ids, self.weight_int8).float() * F.embedding(ids, self.weight_scale[:, None])

    def extra_repr(self) -> str:
        return f"{self.num_embeddings}, {self.embedding_dim}, int8 per-row"

    def manifest_entry(self) -> dict[str, Any]:
        return {"class": type(self).__name__, "num_embeddings": self.num_embeddings,
                "embedding_dim": self.embedding_dim, "padding_idx": self.padding_idx}

    @classmethod
    def from_manifest(cls, entry: dict[str, Any]) -> "Int8Embedding":
        return cls(entry["num_embeddings"], entry["embedding_dim"], entry["padding_idx"])

    def export_standin(self, options: ExportOptions) -> nn.Module:
        return frozen_embedding(self.weight, self.padding_idx) if options.plain else self
