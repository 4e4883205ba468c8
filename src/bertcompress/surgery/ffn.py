"""Remove FFN neurons: rows of the first FFN Linear and columns of the second."""
from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn as nn

from bertcompress.arch.spec import get_spec
from bertcompress.core.errors import BertCompressError
from bertcompress.surgery.heads import _set
from bertcompress.surgery.linear import _require_linear, keep_columns, keep_rows


def prune_ffn_neurons(model: nn.Module, neurons_by_layer: dict[int, Iterable[int]]) -> None:
    """Physically remove FFN neurons (indices as they are now, per layer). The whole plan is checked before
    any Linear is cut, so a refused plan leaves the model whole."""
    spec = get_spec(model)
    layers = spec.layer_list(model)
    first_path, second_path = spec.linears["ffn_in"], spec.linears["ffn_out"]
    kept = {layer: _kept_neurons(layers, layer, set(neurons), first_path, second_path)
            for layer, neurons in neurons_by_layer.items()}
    for layer, index in kept.items():
        block = layers[layer]
        _set(block, first_path, keep_rows(block.get_submodule(first_path), index))
        _set(block, second_path, keep_columns(block.get_submodule(second_path), index))


def _kept_neurons(layers: nn.ModuleList, layer: int, drop: set[int], first_path: str, second_path: str
                  ) -> torch.Tensor:
    if not 0 <= layer < len(layers):
        raise BertCompressError(f"neurons: layer {layer} out of range 0..{len(layers) - 1}")
    first = _require_linear(layers[layer].get_submodule(first_path), first_path)
    _require_linear(layers[layer].get_submodule(second_path), second_path)
    bad = sorted(n for n in drop if not 0 <= n < first.out_features)
    if bad:
        raise BertCompressError(f"neurons: layer {layer} has neurons 0..{first.out_features - 1}; got {bad[:5]}")
    if len(drop) == first.out_features:
        raise BertCompressError(f"neurons: removing every FFN neuron of layer {layer} is not allowed")
    return torch.tensor([n for n in range(first.out_features) if n not in drop])
