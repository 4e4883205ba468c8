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
    spec = get_spec(model)
    layers = spec.layer_list(model)
    for layer, neurons in neurons_by_layer.items():
        if not 0 <= layer < len(layers):
            raise BertCompressError(f"neurons: layer {layer} out of range 0..{len(layers) - 1}")
        block = layers[layer]
        first = _require_linear(block.get_submodule(spec.linears["ffn_in"]), spec.linears["ffn_in"])
        drop = set(neurons)
        bad = sorted(n for n in drop if not 0 <= n < first.out_features)
        if bad:
            raise BertCompressError(f"neurons: layer {layer} has neurons 0..{first.out_features - 1}; got {bad[:5]}")
        if len(drop) == first.out_features:
            raise BertCompressError(f"neurons: removing every FFN neuron of layer {layer} is not allowed")
        index = torch.tensor([n for n in range(first.out_features) if n not in drop])
        second_path = spec.linears["ffn_out"]
        _set(block, spec.linears["ffn_in"], keep_rows(first, index))
        _set(block, second_path, keep_columns(_require_linear(block.get_submodule(second_path), second_path), index))
