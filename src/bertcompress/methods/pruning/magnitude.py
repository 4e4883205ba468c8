"""Magnitude pruning of encoder Linears (Gordon et al. 2020): unstructured, N:M or b×b blocks, one-shot
(optionally with recovery fine-tuning) or gradual with Zhu & Gupta's cubic schedule. Masks are
parametrizations while training; at the end they are baked in, FFN neurons left empty are removed,
and each pruned Linear is stored compactly (SparseLinear), so bytes on disk fall with sparsity."""
from __future__ import annotations

from typing import Any, Literal

import torch.nn as nn
from pydantic import Field

from bertcompress.arch.spec import get_spec
from bertcompress.core.config import MethodConfig
from bertcompress.core.context import Context
from bertcompress.core.errors import BertCompressError
from bertcompress.core.registry import register
from bertcompress.core.report import StepReport
from bertcompress.core.targets import select_modules, set_submodule
from bertcompress.evaluation.size import stored_bytes
from bertcompress.methods.pruning.empty_units import empty_rows_and_columns, remove_empty_ffn_neurons
from bertcompress.methods.pruning.masks import (MaskRule, attach_masks, bake_masks, compute_masks,
                                                magnitude_scores, sparsity_of, update_masks)
from bertcompress.methods.pruning.schedules import CubicSchedule, cubic_schedule
from bertcompress.methods.pruning.sparse_linear import SparseLinear
from bertcompress.training.finetune import finetune
from bertcompress.training.loop import TrainConfig, TrainingHook, total_steps


class MagnitudePruning(MethodConfig):
    """Remove the lowest-magnitude weights of the chosen Linears and store what is left compactly."""

    method_name = "magnitude_pruning"
    sparsity: float = Field(0.5, description="fraction of weights removed, in [0, 1); n:m fixes it at 1 - n/m")
    pattern: Literal["unstructured", "n:m", "block"] = Field("unstructured", description="what is removed")
    n: int = Field(2, ge=1, description="n:m: weights kept in every group of m (along the input dimension)")
    m: int = Field(4, ge=1, description="n:m: group size; must divide every pruned Linear's input dimension")
    block_size: int = Field(4, ge=1, description="block: side b of the square blocks; must divide the weights")
    block_norm: Literal["l2", "l1"] = Field("l2", description="block: how a block's weights are scored")
    scope: Literal["global", "layer"] = Field("global", description="one threshold for all Linears, or each")
    schedule: Literal["one_shot", "gradual"] = Field("one_shot", description="prune once, or ramp while training")
    initial_sparsity: float = Field(0.0, description="gradual: sparsity when the ramp starts, in [0, sparsity]")
    warmup: float = Field(0.0, ge=0, description="gradual: steps (>= 1) or fraction (< 1) before the ramp")
    cooldown: float = Field(0.25, ge=0, description="gradual: steps or fraction at the end at full sparsity")
    prune_every: int = Field(10, ge=1, description="gradual: optimizer steps between mask updates (Δt)")
    epochs: float = Field(1.0, gt=0, description="gradual: training epochs")
    max_steps: int | None = Field(None, gt=0, description="exact optimizer steps (gradual or recovery)")
    recovery_epochs: float = Field(0.0, ge=0, description="one_shot: fine-tuning with fixed masks (0 = none)")
    learning_rate: float = Field(3e-5, gt=0, lt=1, description="of gradual or recovery training")
    distill: bool = Field(True, description="distil training from the context's unpruned teacher")
    remove_empty_neurons: bool = Field(True, description="physically remove FFN neurons pruning emptied")
    targets: list[str] | None = Field(None, description="default: every encoder Linear")
    ignore: list[str] = Field(default_factory=lambda: ["re:.*classifier.*"])

    def __init__(self, **data: Any) -> None:
        n, m = data.get("n", 2), data.get("m", 4)
        if data.get("pattern") == "n:m" and "sparsity" not in data and isinstance(n, int) and isinstance(m, int) \
                and 0 < n <= m:
            data["sparsity"] = 1 - n / m  # what n:m removes; stored, so to_dict() round-trips
        super().__init__(**data)
        problem = self._cross_field_problem()
        if problem:
            raise BertCompressError(f"{type(self).__name__}.{problem}")

    def _cross_field_problem(self) -> str | None:
        if self.pattern == "n:m" and self.n > self.m:
            return f"n: must be <= m (got n={self.n}, m={self.m})"
        if not 0 <= self.sparsity < 1:
            return f"sparsity: must be in [0, 1) (got {self.sparsity})"
        if not 0 <= self.initial_sparsity <= self.sparsity:
            return f"initial_sparsity: must be in [0, {self.sparsity}] (got {self.initial_sparsity})"
        if self.pattern == "n:m" and abs(self.sparsity - (1 - self.n / self.m)) > 1e-9:
            return (f"sparsity: pattern {self.n}:{self.m} removes exactly {1 - self.n / self.m:g}; leave sparsity "
                    f"unset or set it to that (got {self.sparsity})")
        fractions = self.warmup < 1 and self.cooldown < 1
        if self.schedule == "gradual" and fractions and self.warmup + self.cooldown >= 1:
            return (f"schedule: warmup ({self.warmup}) + cooldown ({self.cooldown}) cover all of training, so "
                    "pruning would end before it starts; their fractions must sum below 1")
        return None

    def rule(self) -> MaskRule:
        return MaskRule(self.pattern, self.n, self.m, self.block_size, self.block_norm)


class GradualMasking(TrainingHook):
    """After every optimizer step on the schedule, re-rank the (masked) weights and raise sparsity."""

    def __init__(self, names: list[str], rule: MaskRule, scope: str, schedule: CubicSchedule):
        self.names, self.rule, self.scope, self.schedule = names, rule, scope, schedule
        self.sparsity = schedule.initial_sparsity

    def after_step(self, model: nn.Module, step: int, total_steps: int) -> None:
        if not self.schedule.updates_at(step):
            return
        modules = {name: model.get_submodule(name) for name in self.names}
        self.sparsity = self.schedule.sparsity_at(step)
        update_masks(modules, compute_masks(magnitude_scores(modules), self.sparsity, self.rule, self.scope))

    def state_dict(self) -> dict:
        return {"sparsity": self.sparsity}  # the masks themselves are model buffers, checkpointed with it

    def load_state_dict(self, state: dict) -> None:
        self.sparsity = state["sparsity"]


def _planned_steps(config: MagnitudePruning, ctx: Context) -> int:
    """Optimizer steps finetune will run, to place the schedule before training starts."""
    if ctx.task is None or ctx.tokenizer is None:
        raise BertCompressError("magnitude_pruning: gradual pruning trains; pass a Context with a task and a "
                                "tokenizer, or use schedule: one_shot")
    train = (ctx.train or TrainConfig()).model_copy(update={"epochs": config.epochs, "max_steps": config.max_steps})
    return total_steps(len(ctx.task.split("train")), train)


def _prune_gradually(model: nn.Module, linears: dict, config: MagnitudePruning, ctx: Context,
                     report: StepReport) -> None:
    steps = _planned_steps(config, ctx)
    schedule = cubic_schedule(steps, config.sparsity, config.warmup, config.cooldown,
                              config.initial_sparsity, config.prune_every)
    rule = config.rule()
    attach_masks(linears, compute_masks(magnitude_scores(linears), schedule.initial_sparsity, rule, config.scope))
    hook = GradualMasking(list(linears), rule, config.scope, schedule)
    result = finetune(model, ctx, config.method_name, epochs=config.epochs, learning_rate=config.learning_rate,
                      max_steps=config.max_steps, distill=config.distill, hooks=(hook,))
    report.metrics.update({"train_steps": result.steps, "train_seconds": round(result.seconds, 1),
                           "ramp_steps": [schedule.begin_step, schedule.end_step]})


def _prune_once(model: nn.Module, linears: dict, config: MagnitudePruning, ctx: Context,
                report: StepReport) -> None:
    masks = compute_masks(magnitude_scores(linears), config.sparsity, config.rule(), config.scope)
    attach_masks(linears, masks)
    if config.recovery_epochs > 0:
        result = finetune(model, ctx, config.method_name, epochs=config.recovery_epochs,
                          learning_rate=config.learning_rate, max_steps=config.max_steps, distill=config.distill)
        report.metrics.update({"train_steps": result.steps, "train_seconds": round(result.seconds, 1)})


def _store_compactly(model: nn.Module, names: list[str], block_size: int) -> dict[str, str]:
    """Replace each pruned Linear by a SparseLinear where that stores fewer bytes; {name: storage/kernel}."""
    stored = {}
    for name in names:
        linear = model.get_submodule(name)
        sparse = SparseLinear.from_linear(linear, block_size)
        if stored_bytes(sparse) < stored_bytes(linear):
            set_submodule(model, name, sparse)
            stored[name] = f"{sparse.storage}/{sparse.resolved_kernel()}"
    return stored


def _summary(stored: dict[str, str]) -> str:
    kinds: dict[str, int] = {}
    for kind in stored.values():
        kinds[kind] = kinds.get(kind, 0) + 1
    return ", ".join(f"{count} {kind}" for kind, count in sorted(kinds.items())) or "none"


@register(MagnitudePruning)
def apply_magnitude_pruning(model: nn.Module, config: MagnitudePruning, ctx: Context) -> StepReport:
    report = StepReport(method=config.method_name, config=config.to_dict(), bytes_before=stored_bytes(model))
    linears = select_modules(model, config.targets or get_spec(model).linear_names(model), config.ignore,
                             kinds=(nn.Linear,))
    for name, linear in linears.items():
        config.rule().check_shape(tuple(linear.weight.shape), name)
    (_prune_gradually if config.schedule == "gradual" else _prune_once)(model, linears, config, ctx, report)
    bake_masks(linears)
    achieved = sparsity_of({n: m.weight for n, m in linears.items()})
    empty = empty_rows_and_columns(linears)
    neurons = remove_empty_ffn_neurons(model, list(linears)) if config.remove_empty_neurons else {}
    stored = _store_compactly(model, list(linears), config.block_size if config.pattern == "block" else 0)
    report.bytes_after = stored_bytes(model)
    report.modules_changed = len(stored)
    report.metrics.update({"sparsity": round(achieved, 4), "empty_rows_columns": empty,
                           "ffn_neurons_removed": neurons, "stored_as": stored})
    report.notes.append(
        f"{config.pattern} {config.schedule} magnitude pruning ({config.scope}): {achieved:.1%} of "
        f"{len(linears)} Linears' weights removed; {sum(neurons.values())} empty FFN neurons removed; "
        f"stored as {_summary(stored)} (storage/kernel; sparse kernels only at >= 95% sparsity, where "
        "they measured faster than dense on CPU)")
    return report
