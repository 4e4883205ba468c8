"""A Linear whose b-bit weights are stored bit-packed, plus an optional fixed-range input quantizer.

CPUs have no 2-7 bit GEMM kernels in torch, so the weights are dequantized once, on first use, into an
fp32 cache: the model is small on disk and in transit, not faster. Reports say so."""
from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from bertcompress.core.modules import ExportOptions, frozen_embedding, frozen_linear, replacement
from bertcompress.methods.quantization.nbits_export import NBitsLinear, nbits_block
from bertcompress.methods.quantization.qdq_export import QdqLinear, qdq_possible
from bertcompress.methods.quantization.quantizers import (QuantSpec, dequantize, fake_quantize, pack_bits,
                                                          quantize, unpack_bits)


def spec_to_dict(spec: QuantSpec | None) -> dict | None:
    return None if spec is None else {"bits": spec.bits, "symmetric": spec.symmetric,
                                      "granularity": spec.granularity, "group_size": spec.group_size}


def spec_from_dict(data: dict | None) -> QuantSpec | None:
    return None if data is None else QuantSpec(**data)


def _group_count(shape: tuple[int, int], spec: QuantSpec) -> int:
    if spec.granularity == "tensor":
        return 1
    if spec.granularity == "channel":
        return shape[0]
    return shape[0] * shape[1] // spec.group_size


@replacement
class PackedLinear(nn.Module):
    def __init__(self, in_features: int, out_features: int, bias: bool, spec: QuantSpec,
                 input_spec: QuantSpec | None = None):
        super().__init__()
        self.in_features, self.out_features, self.spec, self.input_spec = in_features, out_features, spec, input_spec
        groups = _group_count((out_features, in_features), spec)
        self.register_buffer("packed", torch.zeros((out_features * in_features * spec.bits + 7) // 8, dtype=torch.uint8))
        self.register_buffer("scale", torch.ones(groups))
        self.register_buffer("zero", torch.zeros(groups, dtype=torch.int16) if not spec.symmetric else torch.zeros(0))
        if input_spec is not None:  # fixed activation range from calibration (static quantization)
            self.register_buffer("input_scale", torch.ones(1))
            self.register_buffer("input_zero", torch.zeros(1))
        self.bias = nn.Parameter(torch.zeros(out_features), requires_grad=False) if bias else None
        self._weight: torch.Tensor | None = None

    @classmethod
    def from_linear(cls, linear: nn.Linear, spec: QuantSpec, input_spec: QuantSpec | None = None,
                    input_range: tuple[float, float] | None = None) -> "PackedLinear":
        spec.check_shape(linear.weight.shape)
        module = cls(linear.in_features, linear.out_features, linear.bias is not None, spec, input_spec)
        codes, scale, zero = quantize(linear.weight, spec)
        module.packed.copy_(pack_bits(codes, spec))
        module.scale.copy_(scale)
        if not spec.symmetric:
            module.zero.copy_(zero.to(torch.int16))
        if linear.bias is not None:
            module.bias.data.copy_(linear.bias.detach())
        if input_spec is not None:
            from bertcompress.methods.quantization.quantizers import qparams_from_range

            low, high = (torch.tensor([v]) for v in input_range)
            input_scale, input_zero = qparams_from_range(low, high, input_spec)
            module.input_scale.copy_(input_scale)
            module.input_zero.copy_(input_zero)
        return module

    def codes(self) -> torch.Tensor:
        return unpack_bits(self.packed, (self.out_features, self.in_features), self.spec)

    def dequantized_weight(self) -> torch.Tensor:
        zero = self.zero.float() if not self.spec.symmetric else torch.zeros_like(self.scale)
        return dequantize(self.codes(), self.scale, zero, self.spec)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._weight is None:
            self._weight = self.dequantized_weight()
        if self.input_spec is not None:
            x = fake_quantize(x, QuantSpec(self.input_spec.bits, self.input_spec.symmetric, "tensor"),
                              self.input_scale, self.input_zero)
        return F.linear(x, self._weight, self.bias)

    def _load_from_state_dict(self, *args, **kwargs):
        self._weight = None
        super()._load_from_state_dict(*args, **kwargs)

    def extra_repr(self) -> str:
        act = f", input {self.input_spec.bits}-bit" if self.input_spec else ""
        return (f"in_features={self.in_features}, out_features={self.out_features}, {self.spec.bits}-bit "
                f"{self.spec.granularity}{act} (dequantized for compute)")

    def manifest_entry(self) -> dict[str, Any]:
        return {"class": type(self).__name__, "in_features": self.in_features, "out_features": self.out_features,
                "bias": self.bias is not None, "spec": spec_to_dict(self.spec),
                "input_spec": spec_to_dict(self.input_spec)}

    @classmethod
    def from_manifest(cls, entry: dict[str, Any]) -> "PackedLinear":
        return cls(entry["in_features"], entry["out_features"], entry["bias"], spec_from_dict(entry["spec"]),
                   spec_from_dict(entry["input_spec"]))

    def export_standin(self, options: ExportOptions) -> nn.Module:
        """4-bit symmetric weights as MatMulNBits where asked and possible; otherwise fp32 dequantized weights
        (ORT has no 2-7 bit GEMM), after the fixed-range input quantizer if any."""
        if options.qdq and not options.plain and qdq_possible(self):
            return QdqLinear(self)  # even for a quantizer that quantizes again: it keeps what has QDQ ranges
        kept_compact = not (options.plain or options.float_weights)
        block = nbits_block(self) if options.packed_nbits and kept_compact else None
        if block is not None:
            return NBitsLinear(self, block)
        linear = frozen_linear(self.dequantized_weight().float(), None if self.bias is None else self.bias.detach())
        if self.input_spec is None or options.plain:
            return linear
        return nn.Sequential(FixedRangeQuantizer(self.input_scale, self.input_zero, self.input_spec), linear)

    def standin_is_exact(self, options: ExportOptions) -> bool:
        if options.qdq and qdq_possible(self):
            return False  # int8 kernels: the same grid, other rounding of the sums and at the -128 edge
        return self.input_spec is None or not options.plain  # a plain Linear drops the input quantizer


class FixedRangeQuantizer(nn.Module):
    """Export stand-in of a fixed-range input fake quantizer: round to the grid and back, in plain ops."""

    def __init__(self, scale: torch.Tensor, zero: torch.Tensor, spec: QuantSpec):
        super().__init__()
        self.qmin, self.qmax = spec.qmin, spec.qmax
        self.register_buffer("scale", scale.detach().clone())
        self.register_buffer("zero", zero.detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        codes = (torch.round(x / self.scale) + self.zero).clamp(self.qmin, self.qmax)
        return (codes - self.zero) * self.scale


@replacement
class PackedEmbedding(nn.Module):
    """An embedding table stored as b-bit codes, packed; rows dequantized once on first use."""

    def __init__(self, num_embeddings: int, embedding_dim: int, padding_idx: int | None, spec: QuantSpec):
        super().__init__()
        self.num_embeddings, self.embedding_dim, self.padding_idx, self.spec = (
            num_embeddings, embedding_dim, padding_idx, spec)
        groups = _group_count((num_embeddings, embedding_dim), spec)
        self.register_buffer("packed", torch.zeros((num_embeddings * embedding_dim * spec.bits + 7) // 8,
                                                   dtype=torch.uint8))
        self.register_buffer("scale", torch.ones(groups))
        self.register_buffer("zero", torch.zeros(groups, dtype=torch.int16) if not spec.symmetric else torch.zeros(0))
        self._table: torch.Tensor | None = None

    @classmethod
    def from_embedding(cls, embedding: nn.Embedding, spec: QuantSpec) -> "PackedEmbedding":
        spec.check_shape(embedding.weight.shape, "embedding")
        module = cls(embedding.num_embeddings, embedding.embedding_dim, embedding.padding_idx, spec)
        codes, scale, zero = quantize(embedding.weight, spec)
        module.packed.copy_(pack_bits(codes, spec))
        module.scale.copy_(scale)
        if not spec.symmetric:
            module.zero.copy_(zero.to(torch.int16))
        return module

    @property
    def weight(self) -> torch.Tensor:
        if self._table is None:
            codes = unpack_bits(self.packed, (self.num_embeddings, self.embedding_dim), self.spec)
            zero = self.zero.float() if not self.spec.symmetric else torch.zeros_like(self.scale)
            self._table = dequantize(codes, self.scale, zero, self.spec)
        return self._table

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return F.embedding(ids, self.weight, self.padding_idx)

    def _load_from_state_dict(self, *args, **kwargs):
        self._table = None
        super()._load_from_state_dict(*args, **kwargs)

    def manifest_entry(self) -> dict[str, Any]:
        return {"class": type(self).__name__, "num_embeddings": self.num_embeddings,
                "embedding_dim": self.embedding_dim, "padding_idx": self.padding_idx, "spec": spec_to_dict(self.spec)}

    @classmethod
    def from_manifest(cls, entry: dict[str, Any]) -> "PackedEmbedding":
        return cls(entry["num_embeddings"], entry["embedding_dim"], entry["padding_idx"], spec_from_dict(entry["spec"]))

    def export_standin(self, options: ExportOptions) -> nn.Module:
        return frozen_embedding(self.weight, self.padding_idx)
