"""Modules that replace stock layers (quantized, factorised, sparse, ...): the replacement protocol.

A replacement module knows how to
- describe and rebuild its empty shell: saving records `manifest_entry()`; loading calls
  `from_manifest(entry)` to recreate the module with the right shapes and dtypes before the weights load;
- stand in for itself in an exported graph: `export_standin(options)` returns an ONNX-traceable module
  with the same outputs (e.g. integer ONNX ops, or a dequantized fp32 Linear), or with `options.plain` a
  stock torch module (nn.Linear, nn.Embedding) for a checkpoint that loads without bertcompress, raising
  BertCompressError when it cannot be one. Exporters ask every replacement for it and never need to know
  the module's type. By default (a module that defines none) the stand-in is the module itself, which then
  must export as is (only traceable ops in `forward`) and cannot be plain;
- say whether that stand-in computes exactly what it does (`standin_is_exact(options)`, default true): an
  exporter verifies exact stand-ins by their logits and approximate ones (run-time activation rounding)
  by their predictions.
Its stored bytes need no method: `core.bytes.stored_bytes` counts what its state dict saves.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import torch
import torch.nn as nn

from bertcompress.core.errors import BertCompressError

_REPLACEMENTS: dict[str, type] = {}


@dataclass(frozen=True)
class ExportOptions:
    """Choices an exporter passes to every stand-in; each module reads those that concern it.

    signed_int8: int8 weights as int8 (u8s8 kernels: faster, exact only on VNNI/ARM CPUs) rather than
    as uint8 with zero point 128 (u8u8: exact everywhere).

    plain: whether every stand-in must be a stock torch module (a plain Transformers checkpoint).
    dequantize_weights: int8 weights as DequantizeLinear -> MatMul rather than integer MatMul ops: OpenVINO
    keeps such weights int8 and picks its own int8 kernel, while it folds integer MatMuls to fp32.
    float_weights: int8 Linear weights as fp32 values, for a quantizer that quantizes the graph again; layers
    with fixed input ranges stay QuantizeLinear/DequantizeLinear under `qdq`, which that quantizer keeps.
    packed_nbits: 4-bit weights as ONNX Runtime's weight-only MatMulNBits (stays 4-bit) rather than dequantized.
    qdq: static 8-bit layers (fixed input ranges) as QuantizeLinear/DequantizeLinear pairs, which runtimes
    run as int8 kernels, rather than as float arithmetic that simulates them.
    """

    signed_int8: bool = False
    plain: bool = False
    dequantize_weights: bool = False
    float_weights: bool = False
    packed_nbits: bool = False
    qdq: bool = False


class Replacement(Protocol):
    def manifest_entry(self) -> dict[str, Any]: ...

    @classmethod
    def from_manifest(cls, entry: dict[str, Any]) -> nn.Module: ...

    def export_standin(self, options: ExportOptions) -> nn.Module: ...

    def standin_is_exact(self, options: ExportOptions) -> bool: ...


def _itself(self: nn.Module, options: ExportOptions) -> nn.Module:
    if options.plain:
        raise BertCompressError(f"{type(self).__name__} has no stock torch equivalent")
    return self


def _exact(self: nn.Module, options: ExportOptions) -> bool:
    return True


def replacement(cls: type) -> type:
    """Class decorator: make a replacement module loadable by name (and give it the default stand-in)."""
    known = _REPLACEMENTS.get(cls.__name__)
    if known is not None and known is not cls:
        raise ValueError(f"a replacement module named {cls.__name__} is already registered "
                         f"({known.__module__}); manifests name modules by class, so names must be unique")
    if not hasattr(cls, "export_standin"):
        cls.export_standin = _itself
    if not hasattr(cls, "standin_is_exact"):
        cls.standin_is_exact = _exact
    _REPLACEMENTS[cls.__name__] = cls
    return cls


def is_replacement(module: nn.Module) -> bool:
    return type(module).__name__ in _REPLACEMENTS and type(module) is _REPLACEMENTS[type(module).__name__]


def rebuild(entry: dict[str, Any]) -> nn.Module:
    kind = entry.get("class")
    if kind == "Linear":
        return nn.Linear(entry["in_features"], entry["out_features"], bias=entry["bias"])
    if kind not in _REPLACEMENTS:
        raise BertCompressError(f"manifest names module class {kind!r}, which this bertcompress does not know")
    return _REPLACEMENTS[kind].from_manifest(entry)


def linear_entry(module: nn.Linear) -> dict[str, Any]:
    return {"class": "Linear", "in_features": module.in_features, "out_features": module.out_features,
            "bias": module.bias is not None}


def frozen_linear(weight: torch.Tensor, bias: torch.Tensor | None) -> nn.Linear:
    """A plain fp32 Linear holding a copy of these values: the stand-in of a Linear stored in another form."""
    out_features, in_features = weight.shape
    linear = nn.Linear(in_features, out_features, bias=bias is not None).requires_grad_(False)
    with torch.no_grad():
        linear.weight.copy_(weight)
        if bias is not None:
            linear.bias.copy_(bias)
    return linear


def frozen_embedding(weight: torch.Tensor, padding_idx: int | None) -> nn.Embedding:
    """A plain fp32 Embedding holding a copy of this table: the stand-in of a table stored in another form."""
    return nn.Embedding.from_pretrained(weight.detach().float().clone(), freeze=True, padding_idx=padding_idx)


def standins(model: nn.Module, options: ExportOptions) -> dict[str, tuple[nn.Module, nn.Module]]:
    """{name: (replacement, its stand-in)} for every replacement module that traces as another module;
    a replaced module's children go with it, so they are not visited."""
    swaps: dict[str, tuple[nn.Module, nn.Module]] = {}
    for name, module in model.named_modules():
        if not is_replacement(module) or any(name.startswith(f"{outer}.") for outer in swaps):
            continue
        try:
            standin = module.export_standin(options)
        except BertCompressError as error:
            raise BertCompressError(f"{name}: {error}") from None
        if standin is not module:
            swaps[name] = (module, standin)
    return swaps


def standins_are_exact(model: nn.Module, options: ExportOptions) -> bool:
    """Whether every replacement that an export traces (those not inside a swapped one, as in `standins`)
    computes exactly what it does: a container that stands in as itself leaves its children to theirs."""
    swapped = standins(model, options)
    for name, module in model.named_modules():
        if is_replacement(module) and not any(name.startswith(f"{outer}.") for outer in swapped) \
                and not module.standin_is_exact(options):
            return False
    return True


@contextlib.contextmanager
def standin_view(model: nn.Module, options: ExportOptions) -> Iterator[nn.Module]:
    """The model in eval mode with each replacement swapped for its stand-in; all is restored on exit."""
    from bertcompress.core.targets import set_submodule

    swaps = standins(model, options)
    training = model.training
    try:
        for name, (_, standin) in swaps.items():
            set_submodule(model, name, standin)
        yield model.eval()
    finally:
        for name, (original, _) in swaps.items():
            set_submodule(model, name, original)
        model.train(training)
