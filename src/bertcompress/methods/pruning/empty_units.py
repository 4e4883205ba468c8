"""Rows and columns that pruning emptied completely: counted for the report, and for FFN neurons removed
physically (surgery), since an empty neuron costs compute that no sparse format saves."""
from __future__ import annotations

from collections.abc import Collection, Mapping

import torch
import torch.nn as nn

from bertcompress.arch.spec import get_spec
from bertcompress.surgery import prune_ffn_neurons


def empty_rows_and_columns(modules: Mapping[str, nn.Module]) -> dict[str, tuple[int, int]]:
    """(all-zero rows, all-zero columns) of each module's weight, for those that have any."""
    found = {}
    for name, module in modules.items():
        nonzero = module.weight.detach() != 0
        rows, cols = int((~nonzero.any(dim=1)).sum()), int((~nonzero.any(dim=0)).sum())
        if rows or cols:
            found[name] = (rows, cols)
    return found


def _activation(layer: nn.Module, ffn_in_path: str):
    """The FFN's activation function (BERT-like: intermediate_act_fn; DistilBERT: activation)."""
    parent = layer.get_submodule(ffn_in_path.rpartition(".")[0])
    for attribute in ("intermediate_act_fn", "activation"):
        function = getattr(parent, attribute, None)
        if callable(function):
            return function
    return None


def _empty_neurons(first: nn.Linear, second: nn.Linear, activation) -> tuple[list[int], torch.Tensor]:
    """Neurons that add nothing input-dependent, and the constant they add to the second bias.

    A neuron whose output column is zero adds exactly nothing. One whose input row is zero outputs the
    constant act(b1), so its effect act(b1)·W2[:, j] moves into the second bias."""
    dead_out = (second.weight.detach() == 0).all(dim=0)
    dead_in = (first.weight.detach() == 0).all(dim=1) if activation is not None else torch.zeros_like(dead_out)
    removable = dead_out | dead_in
    if removable.all():
        removable[0] = False  # surgery keeps at least one neuron per layer
    fold = removable & ~dead_out
    if not fold.any():
        return removable.nonzero().flatten().tolist(), torch.zeros(second.out_features)
    bias = first.bias.detach() if first.bias is not None else torch.zeros(first.out_features)
    shift = second.weight.detach()[:, fold] @ activation(bias[fold])
    return removable.nonzero().flatten().tolist(), shift


def remove_empty_ffn_neurons(model: nn.Module, pruned: Collection[str] | None = None) -> dict[int, int]:
    """Remove FFN neurons left empty, per layer (only layers with an FFN Linear in `pruned`, when given);
    returns {layer: neurons removed}."""
    spec = get_spec(model)
    root = f"{spec.prefix(model)}{spec.layers}"
    removed = {}
    for index, layer in enumerate(spec.layer_list(model)):
        ffn_names = {f"{root}.{index}.{spec.linears[role]}" for role in ("ffn_in", "ffn_out")}
        if pruned is not None and not ffn_names & set(pruned):
            continue
        first = layer.get_submodule(spec.linears["ffn_in"])
        second = layer.get_submodule(spec.linears["ffn_out"])
        if type(first) is not nn.Linear or type(second) is not nn.Linear:
            continue  # surgery needs plain float Linears
        neurons, shift = _empty_neurons(first, second, _activation(layer, spec.linears["ffn_in"]))
        if not neurons:
            continue
        if shift.abs().sum() > 0:
            if second.bias is None:
                continue  # nowhere to put the folded constant: keep the neurons
            with torch.no_grad():
                second.bias.add_(shift)
        prune_ffn_neurons(model, {index: neurons})
        removed[index] = len(neurons)
    return removed
