"""Importance of attention heads and FFN neurons: gradient of the loss w.r.t. a gate on each unit
(Michel et al.; transformers 5 has no head masks, so gates are applied by hooks), or weight magnitude."""
from __future__ import annotations

from contextlib import contextmanager

import torch
import torch.nn as nn

from bertcompress.arch.spec import get_spec
from bertcompress.core.task_types import task_type_of
from bertcompress.data.batching import Encoded, model_inputs
from bertcompress.surgery.heads import head_count
from bertcompress.training.objectives import importance_loss


def _gate_hook(gate: torch.Tensor, unit: int):
    """Pre-hook on a Linear whose input features come in blocks of `unit` (one block per gated unit)."""

    def hook(module, inputs):
        x = inputs[0]
        shaped = x.reshape(*x.shape[:-1], gate.numel(), unit) * gate[:, None]
        return (shaped.reshape(x.shape), *inputs[1:])

    return hook


@contextmanager
def unit_gates(model: nn.Module, kind: str):
    """Ones-valued gates (requires_grad) on every head ('heads') or FFN neuron ('ffn'), one tensor per layer."""
    spec = get_spec(model)
    gates, handles = [], []
    for index, layer in enumerate(spec.layer_list(model)):
        if kind == "heads":
            count, unit = head_count(model, index), layer.get_submodule(spec.self_attention).attention_head_size
            target = layer.get_submodule(spec.linears["attention_output"])
        else:
            target = layer.get_submodule(spec.linears["ffn_out"])
            count, unit = target.in_features, 1
        gate = torch.ones(count, requires_grad=True)
        gates.append(gate)
        handles.append(target.register_forward_pre_hook(_gate_hook(gate, unit)))
    try:
        yield gates
    finally:
        for handle in handles:
            handle.remove()


def gradient_importance(model: nn.Module, data: Encoded, kind: str, batch_size: int = 32) -> list[torch.Tensor]:
    """Accumulated |∂loss/∂gate| per unit over the data (per batch), each layer L2-normalised (Michel et al.)."""
    was_training = model.training
    model.eval()
    task_type, generator = task_type_of(model), torch.Generator().manual_seed(0)
    with unit_gates(model, kind) as gates:
        totals = [torch.zeros_like(g) for g in gates]
        for start in range(0, len(data), batch_size):
            batch = data.batch(list(range(start, min(start + batch_size, len(data)))))
            loss = importance_loss(task_type, model(**model_inputs(batch)), batch, generator)
            grads = torch.autograd.grad(loss, gates)
            for total, grad in zip(totals, grads):
                total += grad.abs()
    model.train(was_training)
    return [t / t.norm().clamp_min(1e-12) for t in totals]


def magnitude_importance(model: nn.Module, kind: str) -> list[torch.Tensor]:
    """L2 norm of each unit's weights (heads: its q/k/v rows and output columns), layer-normalised."""
    spec = get_spec(model)
    scores = []
    for index, layer in enumerate(spec.layer_list(model)):
        if kind == "heads":
            count = head_count(model, index)
            rows = [layer.get_submodule(spec.linears[r]).weight.reshape(count, -1) for r in ("query", "key", "value")]
            cols = layer.get_submodule(spec.linears["attention_output"]).weight.t().reshape(count, -1)
            score = torch.cat([*rows, cols], dim=1).norm(dim=1)
        else:
            first = layer.get_submodule(spec.linears["ffn_in"]).weight
            second = layer.get_submodule(spec.linears["ffn_out"]).weight
            score = torch.cat([first, second.t()], dim=1).norm(dim=1)
        scores.append((score / score.norm().clamp_min(1e-12)).detach())
    return scores


def lowest_units(scores: list[torch.Tensor], count: int, scope: str, keep_per_layer: int = 1) -> dict[int, list[int]]:
    """The `count` least important units, globally or spread evenly per layer, keeping `keep_per_layer` in each."""
    if scope == "layer":
        share = count / len(scores)
        plan, taken = {}, 0
        for layer, score in enumerate(scores):
            quota = min(round(share * (layer + 1)) - taken, score.numel() - keep_per_layer)
            plan[layer] = score.argsort()[:quota].tolist()
            taken += quota
        return plan
    ranked = sorted((float(s), layer, unit) for layer, score in enumerate(scores) for unit, s in enumerate(score))
    left = [s.numel() for s in scores]
    plan: dict[int, list[int]] = {layer: [] for layer in range(len(scores))}
    for _, layer, unit in ranked:
        if sum(len(v) for v in plan.values()) == count:
            break
        if left[layer] > keep_per_layer:
            plan[layer].append(unit)
            left[layer] -= 1
    return plan
