"""LayerDrop (Fan et al. 2019): structured dropout of whole layers while fine-tuning, so any subset of
layers can be kept at inference without retraining; and plain layer removal by a chosen strategy."""
from __future__ import annotations

from typing import Literal

import torch
import torch.nn as nn
from pydantic import Field

from bertcompress.arch.spec import get_spec
from bertcompress.core.config import MethodConfig
from bertcompress.core.context import Context
from bertcompress.core.errors import BertCompressError
from bertcompress.core.registry import register
from bertcompress.core.report import StepReport
from bertcompress.surgery import prune_layers
from bertcompress.training.finetune import finetune

Strategy = Literal["every_other", "first", "last"]


class LayerRemoval(MethodConfig):
    """Keep `keep` layers (evenly spaced, the first or the last ones) and remove the rest."""

    method_name = "layer_removal"
    keep: int = Field(3, ge=1, description="number of layers to keep")
    strategy: Strategy = Field("every_other", description="which layers to keep")


class LayerDrop(MethodConfig):
    """Fine-tune with LayerDrop; optionally cut to `keep` layers at the end."""

    method_name = "layerdrop"
    p: float = Field(0.2, gt=0, lt=1, description="probability of skipping each layer at each training step")
    epochs: float = Field(1.0, gt=0)
    max_steps: int | None = Field(None, gt=0)
    learning_rate: float = Field(3e-5, gt=0, lt=1)
    distill: bool = Field(False, description="distil from the context's teacher")
    keep: int | None = Field(None, ge=1, description="layers kept after training (none = all)")
    strategy: Strategy = Field("every_other")


def kept_layers(total: int, keep: int, strategy: str) -> list[int]:
    if keep > total:
        raise BertCompressError(f"keep: {keep} is more than the model's {total} layers")
    if strategy == "first":
        return list(range(keep))
    if strategy == "last":
        return list(range(total - keep, total))
    # evenly spaced from the second layer on, ending with the last: 6 -> 3 keeps 1, 3, 5 (Fan et al.)
    step = total / keep
    return sorted({min(total - 1, int(round(step * (i + 1))) - 1) for i in range(keep)})


def _cut(model: nn.Module, keep: int, strategy: str, report: StepReport) -> None:
    total = len(get_spec(model).layer_list(model))
    kept = kept_layers(total, keep, strategy)
    prune_layers(model, [i for i in range(total) if i not in kept])
    report.metrics["kept_layers"] = kept
    report.modules_changed = total - len(kept)
    report.notes.append(f"kept layers {kept} of {total} ({strategy})")


class LayerDropList(nn.ModuleList):
    """A ModuleList that, in training, yields each layer with probability 1 - p (at least one)."""

    p: float = 0.0

    def __iter__(self):
        layers = list(super().__iter__())
        if not self.training or self.p == 0:
            return iter(layers)
        kept = [layer for layer in layers if torch.rand(()) >= self.p] or [layers[int(torch.randint(len(layers), ()))]]
        return iter(kept)


@register(LayerRemoval)
def apply_layer_removal(model: nn.Module, config: LayerRemoval, ctx: Context) -> StepReport:
    report = StepReport()
    _cut(model, config.keep, config.strategy, report)
    return report


@register(LayerDrop)
def apply_layerdrop(model: nn.Module, config: LayerDrop, ctx: Context) -> StepReport:
    report = StepReport()
    layers = get_spec(model).layer_list(model)
    if config.keep is not None:
        kept_layers(len(layers), config.keep, config.strategy)  # fail before training, not after
    layers.__class__, layers.p = LayerDropList, config.p  # same children, same parameter names
    try:
        result = finetune(model, ctx, "layerdrop", epochs=config.epochs, learning_rate=config.learning_rate,
                          max_steps=config.max_steps, distill=config.distill)
    finally:
        layers.__class__ = nn.ModuleList
        del layers.p
    report.metrics["train_steps"] = result.steps
    report.notes.append(f"LayerDrop p={config.p} for {result.steps} steps")
    if config.keep is not None:
        _cut(model, config.keep, config.strategy, report)
    return report
