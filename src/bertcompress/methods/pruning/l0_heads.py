"""L0-gated attention heads (Voita et al. 2019): fine-tune with a hard-concrete gate on every head and an
L0 penalty on how many are open, then remove the closed heads and fold the open gates into the weights."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn as nn
from pydantic import Field

from bertcompress.arch.spec import get_spec
from bertcompress.core.config import MethodConfig
from bertcompress.core.context import Context
from bertcompress.core.errors import BertCompressError
from bertcompress.core.registry import register
from bertcompress.core.report import StepReport
from bertcompress.methods.pruning.checks import require_stock_attention
from bertcompress.methods.pruning.hard_concrete import HardConcreteGates
from bertcompress.surgery import head_count, prune_heads
from bertcompress.training.finetune import finetune
from bertcompress.training.hooks import ParameterGroup, StepState, TrainingHook

GATES_ATTRIBUTE = "head_gates"  # where each layer's gates live on its self-attention module while training


class L0HeadGates(MethodConfig):
    """Learn which heads to keep with hard-concrete gates and an L0 penalty; remove the closed ones."""

    method_name = "l0_heads"
    l0_penalty: float = Field(0.05, ge=0, description="λ: weight of the expected number of open heads in the loss")
    target_heads: int | None = Field(None, ge=1, description="instead: pull the expected open heads towards this "
                                     "many (penalty λ·|E[open] − target|) and keep exactly this many at the end")
    temperature: float = Field(2 / 3, gt=0, description="hard-concrete temperature β")
    stretch_low: float = Field(-0.1, lt=0, description="hard-concrete stretch γ (< 0)")
    stretch_high: float = Field(1.1, gt=1, description="hard-concrete stretch ζ (> 1)")
    initial_log_alpha: float = Field(3.0, ge=-10, le=10, description="starting log-alpha (3 = all gates open)")
    epochs: float = Field(1.0, gt=0)
    max_steps: int | None = Field(None, gt=0)
    learning_rate: float = Field(3e-5, gt=0, lt=1, description="learning rate of the model's weights")
    gate_learning_rate: float = Field(0.05, gt=0, le=10, description="learning rate of the log-alphas")
    distill: bool = Field(True, description="distil from the context's teacher while training the gates")
    threshold: float = Field(0.0, ge=0, lt=1, description="a head closes when its deterministic gate is at most "
                             "this (0: only gates that are exactly 0, so removing them changes nothing)")


@contextmanager
def head_gates(model: nn.Module, config: L0HeadGates) -> Iterator[list[HardConcreteGates]]:
    """Attach a gate module to every layer's self-attention and gate each head's context before the
    attention-output Linear; everything is detached again on exit."""
    spec = get_spec(model)
    owners, handles, gates = [], [], []
    try:
        for index, layer in enumerate(spec.layer_list(model)):
            attention = layer.get_submodule(spec.self_attention)
            output = layer.get_submodule(spec.linears["attention_output"])
            gate = HardConcreteGates(head_count(model, index), config.temperature, config.stretch_low,
                                     config.stretch_high, config.initial_log_alpha).to(output.weight.device)
            setattr(attention, GATES_ATTRIBUTE, gate)  # a submodule, so the optimizer trains its log-alphas
            owners.append(attention)
            gates.append(gate)
            handles.append(output.register_forward_pre_hook(_gating_hook(gate, attention.attention_head_size)))
        yield gates
    finally:
        for handle in handles:
            handle.remove()
        for attention in owners:
            delattr(attention, GATES_ATTRIBUTE)


def _gating_hook(gates: HardConcreteGates, head_size: int):
    """Pre-hook: a fresh gate sample per forward in training mode, the deterministic gate in eval mode."""

    def hook(module: nn.Module, inputs: tuple) -> tuple:
        x = inputs[0]
        gate = gates().to(x.dtype)
        shaped = x.reshape(*x.shape[:-1], gate.numel(), head_size) * gate[:, None]
        return (shaped.reshape(x.shape), *inputs[1:])

    return hook


class L0Penalty(TrainingHook):
    """Adds λ · E[number of open gates] (or λ · |E[open] − target|) to the loss; the log-alphas train at
    their own rate."""

    def __init__(self, gates: list[HardConcreteGates], penalty: float, target: int | None = None,
                 gate_learning_rate: float = 0.05):
        self.gates, self.penalty, self.target, self.gate_learning_rate = gates, penalty, target, gate_learning_rate

    def parameter_groups(self) -> list[ParameterGroup]:
        return [ParameterGroup([gate.log_alpha for gate in self.gates], self.gate_learning_rate)]

    def expected_open(self) -> torch.Tensor:
        return sum(gate.open_probability().sum() for gate in self.gates)

    def extra_loss(self, model: nn.Module, state: StepState) -> torch.Tensor:
        expected = self.expected_open()
        return self.penalty * (expected if self.target is None else (expected - self.target).abs())


def heads_to_remove(scores: list[torch.Tensor], values: list[torch.Tensor], threshold: float,
                    target: int | None = None) -> dict[int, list[int]]:
    """Per layer, the heads to remove: closed gates (value <= threshold), or all but the `target` highest
    scores; the highest-scoring head of every layer always stays (a layer needs one head)."""
    best = [int(score.argmax()) for score in scores]
    if target is None:
        kept = [{h for h in range(len(v)) if v[h] > threshold} or {best[i]} for i, v in enumerate(values)]
    else:
        kept = [{head} for head in best]
        ranked = sorted(((float(s[h]), layer, h) for layer, s in enumerate(scores) for h in range(len(s))
                         if h != best[layer]), reverse=True)
        for _, layer, head in ranked[: max(0, target - len(scores))]:
            kept[layer].add(head)
    return {layer: [h for h in range(len(s)) if h not in kept[layer]] for layer, s in enumerate(scores)}


def fold_gates(model: nn.Module, values: list[torch.Tensor]) -> int:
    """Scale each head's columns of the attention-output weight by its gate, so the ungated model computes
    what the gated one did; returns how many layers changed."""
    spec = get_spec(model)
    changed = 0
    for layer, gate in zip(spec.layer_list(model), values):
        if torch.all(gate == 1):
            continue
        output = layer.get_submodule(spec.linears["attention_output"])
        size = layer.get_submodule(spec.self_attention).attention_head_size
        with torch.no_grad():
            output.weight.mul_(gate.to(output.weight).repeat_interleave(size)[None, :])
        changed += 1
    return changed


def finalize_gates(model: nn.Module, gates: list[HardConcreteGates], config: L0HeadGates) -> dict:
    """Read the trained gates; once they are detached, call `apply_gate_plan` with the result."""
    with torch.no_grad():
        scores = [gate.log_alpha.detach().cpu() for gate in gates]
        values = [gate.deterministic().detach().cpu() for gate in gates]
        expected = float(sum(gate.open_probability().sum() for gate in gates))
    return {"scores": scores, "values": values, "expected_open": expected,
            "remove": heads_to_remove(scores, values, config.threshold, config.target_heads)}


def apply_gate_plan(model: nn.Module, plan: dict) -> tuple[int, list[list[int]]]:
    """Fold the gates, then remove the closed heads; returns (layers changed, surviving original heads)."""
    folded = fold_gates(model, plan["values"])
    remove = plan["remove"]
    prune_heads(model, remove)
    survivors = [[h for h in range(len(v)) if h not in remove[i]] for i, v in enumerate(plan["values"])]
    pruned = sum(1 for heads in remove.values() if heads)
    return max(folded, pruned), survivors


def _check_target(model: nn.Module, config: L0HeadGates) -> None:
    if config.target_heads is None:
        return
    counts = [head_count(model, i) for i in range(len(get_spec(model).layer_list(model)))]
    if not len(counts) <= config.target_heads <= sum(counts):
        raise BertCompressError(f"l0_heads.target_heads: {config.target_heads} is outside {len(counts)}..."
                                f"{sum(counts)} (one head per layer up to all {sum(counts)} heads)")


@register(L0HeadGates)
def apply_l0_heads(model: nn.Module, config: L0HeadGates, ctx: Context) -> StepReport:
    report = StepReport()
    require_stock_attention(model, config.method_name)
    _check_target(model, config)
    before = sum(head_count(model, i) for i in range(len(get_spec(model).layer_list(model))))
    with head_gates(model, config) as gates:
        hooks = (L0Penalty(gates, config.l0_penalty, config.target_heads, config.gate_learning_rate),)
        result = finetune(model, ctx, config.method_name, epochs=config.epochs, learning_rate=config.learning_rate,
                          max_steps=config.max_steps, distill=config.distill, hooks=hooks)
        plan = finalize_gates(model, gates, config)
    report.modules_changed, survivors = apply_gate_plan(model, plan)
    removed = sum(len(heads) for heads in plan["remove"].values())
    report.metrics.update({
        "surviving_heads": survivors, "heads_per_layer": [len(s) for s in survivors], "heads_removed": removed,
        "heads_total_before": before, "expected_open_heads": round(plan["expected_open"], 4),
        "gate_values": [[round(float(v), 4) for v in values] for values in plan["values"]],
        "train_steps": result.steps,
    })
    report.notes.append(f"L0 gates ({result.steps} steps): removed {removed} of {before} heads; surviving heads "
                        f"per layer: {survivors}")
    return report
