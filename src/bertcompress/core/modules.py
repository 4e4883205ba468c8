"""Modules that replace stock layers (quantized, factorised, ...) and know how to rebuild their empty shell.

Saving records each replacement's `manifest_entry()`; loading calls `from_manifest(entry)` to recreate
the module with the right shapes and dtypes before the saved weights are loaded into it.
"""
from __future__ import annotations

from typing import Any, Protocol

import torch.nn as nn

from bertcompress.core.errors import BertCompressError

_REPLACEMENTS: dict[str, type] = {}


class Replacement(Protocol):
    def manifest_entry(self) -> dict[str, Any]: ...

    @classmethod
    def from_manifest(cls, entry: dict[str, Any]) -> nn.Module: ...


def replacement(cls: type) -> type:
    """Class decorator: make a replacement module loadable by name."""
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
