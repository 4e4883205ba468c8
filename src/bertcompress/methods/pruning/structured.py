"""Head pruning and FFN-neuron pruning by importance: one-shot or iterative, with optional recovery
fine-tuning (distilled from the unpruned teacher); every step ends in surgery that removes the units."""
from __future__ import annotations

from typing import Literal

import torch.nn as nn
from pydantic import Field

from bertcompress.arch.spec import get_spec
from bertcompress.core.config import MethodConfig
from bertcompress.core.context import Context
from bertcompress.core.errors import BertCompressError
from bertcompress.core.registry import register
from bertcompress.core.report import StepReport
from bertcompress.data.batching import encode
from bertcompress.methods.pruning.importance import gradient_importance, lowest_units, magnitude_importance
from bertcompress.surgery import head_count, prune_ffn_neurons, prune_heads
from bertcompress.training.finetune import finetune


class _StructuredPruning(MethodConfig):
    fraction: float = Field(0.5, ge=0, lt=1, description="fraction of units to remove, in [0, 1)")
    importance: Literal["gradient", "magnitude"] = Field("gradient", description="how units are scored")
    scope: Literal["global", "layer"] = Field("global", description="rank units across layers or per layer")
    iterations: int = Field(1, ge=1, description="1 = one-shot; n = remove fraction/n at a time, re-scoring")
    calibration_examples: int = Field(512, ge=1, description="training examples for gradient importance")
    recovery_epochs: float = Field(0.0, ge=0, description="fine-tuning after each removal (0 = none)")
    learning_rate: float = Field(3e-5, gt=0, lt=1)
    distill: bool = Field(True, description="distil recovery from the context's unpruned teacher")


class HeadPruning(_StructuredPruning):
    """Remove attention heads by importance (Michel et al. 2019); at least one head stays in every layer."""

    method_name = "head_pruning"


class FFNPruning(_StructuredPruning):
    """Remove FFN neurons by importance; at least one neuron stays in every layer."""

    method_name = "ffn_pruning"


def _units(model: nn.Module, kind: str) -> list[int]:
    spec = get_spec(model)
    if kind == "heads":
        return [head_count(model, i) for i in range(len(spec.layer_list(model)))]
    return [layer.get_submodule(spec.linears["ffn_in"]).out_features for layer in spec.layer_list(model)]


def _scores(model: nn.Module, config: _StructuredPruning, ctx: Context, kind: str):
    if config.importance == "magnitude":
        return magnitude_importance(model, kind)
    if ctx.task is None or ctx.tokenizer is None:
        raise BertCompressError(f"{config.method_name}.importance: 'gradient' needs data; pass a Context with a "
                                "task and a tokenizer, or use importance: magnitude")
    data = encode(ctx.task.split("train")[: config.calibration_examples], ctx.tokenizer,
                  ctx.train.max_length if ctx.train else 64)
    return gradient_importance(model, data, kind)


def prune_structured(model: nn.Module, config: _StructuredPruning, ctx: Context, kind: str) -> StepReport:
    report = StepReport()
    original = sum(_units(model, kind))
    target = round(config.fraction * original)
    removed_total = 0
    for iteration in range(1, config.iterations + 1):
        goal = round(target * iteration / config.iterations) - removed_total
        if goal <= 0:
            continue
        plan = lowest_units(_scores(model, config, ctx, kind), goal, config.scope)
        (prune_heads if kind == "heads" else prune_ffn_neurons)(model, plan)
        removed_total += sum(len(v) for v in plan.values())
        if config.recovery_epochs > 0:
            finetune(model, ctx, f"{config.method_name}-{iteration}", epochs=config.recovery_epochs,
                     learning_rate=config.learning_rate, distill=config.distill)
    report.modules_changed = removed_total
    remaining = _units(model, kind)
    report.metrics.update({f"{kind}_per_layer": remaining, f"{kind}_removed": removed_total,
                           f"{kind}_total_before": original})
    report.notes.append(f"removed {removed_total} of {original} {'heads' if kind == 'heads' else 'FFN neurons'} "
                        f"({config.importance} importance, {config.scope}, {config.iterations} step(s)); now per "
                        f"layer: {remaining}")
    return report


@register(HeadPruning)
def apply_head_pruning(model: nn.Module, config: HeadPruning, ctx: Context) -> StepReport:
    return prune_structured(model, config, ctx, "heads")


@register(FFNPruning)
def apply_ffn_pruning(model: nn.Module, config: FFNPruning, ctx: Context) -> StepReport:
    return prune_structured(model, config, ctx, "ffn")
