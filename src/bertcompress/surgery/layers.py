"""Remove whole transformer layers."""
from __future__ import annotations

from collections.abc import Iterable

import torch.nn as nn

from bertcompress.arch.spec import get_spec
from bertcompress.core.errors import BertCompressError


def prune_layers(model: nn.Module, remove: Iterable[int]) -> None:
    spec = get_spec(model)
    layers = spec.layer_list(model)
    drop = set(remove)
    bad = sorted(i for i in drop if not 0 <= i < len(layers))
    if bad:
        raise BertCompressError(f"layers: indices {bad} out of range 0..{len(layers) - 1}")
    if len(drop) == len(layers):
        raise BertCompressError("layers: cannot remove every layer")
    kept = nn.ModuleList([layer for i, layer in enumerate(layers) if i not in drop])
    for index, layer in enumerate(kept):  # attention caches key on the layer index
        for module in layer.modules():
            if hasattr(module, "layer_idx"):
                module.layer_idx = index
    parent, _, child = spec.layers.rpartition(".")
    base = spec.base_model(model)
    setattr(base.get_submodule(parent) if parent else base, child, kept)
    setattr(model.config, spec.layers_key, len(kept))
