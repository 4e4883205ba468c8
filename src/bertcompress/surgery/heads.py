"""Remove attention heads: their query/key/value rows and their attention-output columns."""
from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn as nn

from bertcompress.arch.spec import HEAD_COUNT_ATTRIBUTES, get_spec, head_count_of
from bertcompress.core.errors import BertCompressError
from bertcompress.surgery.linear import _require_linear, keep_columns, keep_rows


HEAD_LINEARS = ("query", "key", "value", "attention_output")  # rows of the first three, columns of the last


def _attention(model: nn.Module, layer: int) -> nn.Module:
    spec = get_spec(model)
    return spec.layer_list(model)[layer].get_submodule(spec.self_attention)


def head_count(model: nn.Module, layer: int) -> int:
    return head_count_of(_attention(model, layer))


def _validate(model: nn.Module, layer: int, heads: set[int]) -> int:
    layers = len(get_spec(model).layer_list(model))
    if not 0 <= layer < layers:
        raise BertCompressError(f"heads: layer {layer} out of range 0..{layers - 1}")
    count = head_count(model, layer)
    bad = sorted(h for h in heads if not 0 <= h < count)
    if bad:
        raise BertCompressError(f"heads: layer {layer} has heads 0..{count - 1}; got {bad}")
    if len(heads) == count:
        raise BertCompressError(f"heads: removing all {count} heads of layer {layer} is not allowed; "
                                "remove the layer instead (prune_layers)")
    return count


def prune_heads(model: nn.Module, heads_by_layer: dict[int, Iterable[int]]) -> None:
    """Physically remove heads (indices as they are now, per layer); layers may end with different counts."""
    spec = get_spec(model)
    plan = {layer: set(heads) for layer, heads in heads_by_layer.items() if heads}
    counts = {layer: _validate(model, layer, heads) for layer, heads in plan.items()}
    for layer in plan:  # every Linear checked before any is cut: a refused plan leaves the model whole
        block = spec.layer_list(model)[layer]
        for role in HEAD_LINEARS:
            _require_linear(block.get_submodule(spec.linears[role]), spec.linears[role])
    for layer, heads in plan.items():
        block = spec.layer_list(model)[layer]
        attention = _attention(model, layer)
        size = attention.attention_head_size
        keep = [h for h in range(counts[layer]) if h not in heads]
        index = torch.cat([torch.arange(h * size, (h + 1) * size) for h in keep])
        for role in HEAD_LINEARS:
            path = spec.linears[role]
            cut = keep_columns if role == "attention_output" else keep_rows
            _set(block, path, cut(block.get_submodule(path), index))
        for attribute in HEAD_COUNT_ATTRIBUTES:
            if hasattr(attention, attribute):
                setattr(attention, attribute, len(keep))
        if hasattr(attention, "all_head_size"):
            attention.all_head_size = len(keep) * size


def _set(root: nn.Module, path: str, module: nn.Module) -> None:
    parent, _, child = path.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, child, module)
