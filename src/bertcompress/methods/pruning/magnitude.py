"""Magnitude pruning of encoder Linears (Gordon et al. 2020): unstructured, N:M or b×b blocks, one-shot
(optionally with recovery fine-tuning) or gradual with Zhu & Gupta's cubic schedule. Masks are
parametrizations while training; at the end they are baked in, FFN neurons left empty are removed,
and each pruned Linear is stored compactly (SparseLinear), so bytes on disk fall with sparsity."""
from __future__ import annotations

from typing import Literal

import torch.nn as nn
from pydantic import Field

from bertcompress.core.context import Context
from bertcompress.core.registry import register
from bertcompress.core.report import StepReport
from bertcompress.methods.pruning.masks import (MaskRule, attach_masks, compute_masks, magnitude_scores,
                                                update_masks)
from bertcompress.methods.pruning.schedules import CubicSchedule
from bertcompress.methods.pruning.sparsity import (SparsityConfig, finish_sparse_model, planned_schedule,
                                                   prunable_linears, train_pruned)
from bertcompress.training.hooks import StepState, TrainingHook


class MagnitudePruning(SparsityConfig):
    """Remove the lowest-magnitude weights of the chosen Linears and store what is left compactly."""

    method_name = "magnitude_pruning"
    block_norm: Literal["l2", "l1"] = Field("l2", description="block: how a block's weights are scored")
    schedule: Literal["one_shot", "gradual"] = Field("one_shot", description="prune once, or ramp while training")
    recovery_epochs: float = Field(0.0, ge=0, description="one_shot: fine-tuning with fixed masks (0 = none)")

    def trains_gradually(self) -> bool:
        return self.schedule == "gradual"


class GradualMasking(TrainingHook):
    """After every optimizer step on the schedule, re-rank the (masked) weights and raise sparsity."""

    def __init__(self, names: list[str], rule: MaskRule, scope: str, schedule: CubicSchedule):
        self.names, self.rule, self.scope, self.schedule = names, rule, scope, schedule
        self.sparsity = schedule.initial_sparsity

    def after_step(self, model: nn.Module, state: StepState) -> None:
        if not self.schedule.updates_at(state.step):
            return
        modules = {name: model.get_submodule(name) for name in self.names}
        self.sparsity = self.schedule.sparsity_at(state.step)
        update_masks(modules, compute_masks(magnitude_scores(modules), self.sparsity, self.rule, self.scope))

    def state_dict(self) -> dict:
        return {"sparsity": self.sparsity}  # the masks themselves are model buffers, checkpointed with it

    def load_state_dict(self, state: dict) -> None:
        self.sparsity = state["sparsity"]


def _prune_gradually(model: nn.Module, linears: dict, config: MagnitudePruning, ctx: Context,
                     report: StepReport) -> None:
    schedule, _ = planned_schedule(config, ctx)
    rule = config.rule()
    attach_masks(linears, compute_masks(magnitude_scores(linears), schedule.initial_sparsity, rule, config.scope))
    hook = GradualMasking(list(linears), rule, config.scope, schedule)
    train_pruned(model, config, ctx, report, (hook,))
    report.metrics["ramp_steps"] = [schedule.begin_step, schedule.end_step]


def _prune_once(model: nn.Module, linears: dict, config: MagnitudePruning, ctx: Context,
                report: StepReport) -> None:
    masks = compute_masks(magnitude_scores(linears), config.sparsity, config.rule(), config.scope)
    attach_masks(linears, masks)
    if config.recovery_epochs > 0:
        train_pruned(model, config, ctx, report, epochs=config.recovery_epochs)


@register(MagnitudePruning)
def apply_magnitude_pruning(model: nn.Module, config: MagnitudePruning, ctx: Context) -> StepReport:
    report = StepReport()
    linears = prunable_linears(model, config)
    (_prune_gradually if config.schedule == "gradual" else _prune_once)(model, linears, config, ctx, report)
    finish_sparse_model(model, linears, config, report, f"{config.schedule} magnitude pruning")
    return report
