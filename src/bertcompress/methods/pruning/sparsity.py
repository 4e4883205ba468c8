"""What every weight-level pruning method shares (magnitude, movement, RPP): the config fields for the
pattern and schedule, choosing the Linears, planning the schedule, and finishing the model: masks
baked in, emptied FFN neurons removed, each pruned Linear stored compactly (SparseLinear)."""
from __future__ import annotations

from typing import Any, Literal

import torch.nn as nn
from pydantic import Field

from bertcompress.arch.spec import get_spec
from bertcompress.core.bytes import stored_bytes
from bertcompress.core.context import Context
from bertcompress.core.errors import BertCompressError
from bertcompress.core.report import StepReport
from bertcompress.core.targets import set_submodule
from bertcompress.methods.common import LinearTargets, chosen_linears
from bertcompress.methods.pruning.empty_units import empty_rows_and_columns, remove_empty_ffn_neurons
from bertcompress.methods.pruning.masks import MaskRule, bake_masks, sparsity_of
from bertcompress.methods.pruning.schedules import CubicSchedule, cubic_schedule
from bertcompress.methods.pruning.sparse_linear import SparseLinear
from bertcompress.training.finetune import finetune, planned_steps, step_config
from bertcompress.training.hooks import TrainingHook
from bertcompress.training.intermediate import IntermediateDistillation


class SparsityConfig(LinearTargets):
    """Fields shared by the weight-level pruning methods."""

    sparsity: float = Field(0.5, description="fraction of weights removed, in [0, 1); n:m fixes it at 1 - n/m")
    pattern: Literal["unstructured", "n:m", "block"] = Field("unstructured", description="what is removed")
    n: int = Field(2, ge=1, description="n:m: weights kept in every group of m (along the input dimension)")
    m: int = Field(4, ge=1, description="n:m: group size; must divide every pruned Linear's input dimension")
    block_size: int = Field(4, ge=1, description="block: side b of the square blocks; must divide the weights")
    scope: Literal["global", "layer"] = Field("global", description="one threshold for all Linears, or each")
    initial_sparsity: float = Field(0.0, description="gradual: sparsity when the ramp starts, in [0, sparsity]")
    warmup: float = Field(0.0, ge=0, description="gradual: steps (>= 1) or fraction (< 1) before the ramp")
    cooldown: float = Field(0.25, ge=0, description="gradual: steps or fraction at the end at full sparsity")
    prune_every: int = Field(10, ge=1, description="optimizer steps between mask updates (Δt)")
    epochs: float = Field(1.0, gt=0, description="training epochs")
    max_steps: int | None = Field(None, gt=0, description="exact optimizer steps (overrides epochs)")
    learning_rate: float = Field(3e-5, gt=0, lt=1, description="of the weights while training")
    distill: bool = Field(True, description="distil training from the context's unpruned teacher")
    label_weight: float | None = Field(
        None, ge=0, le=1, description="distill: weight of the label loss, the teacher's KL taking 1 - it; 0 trains "
        "on soft targets only; None keeps the run's training settings")
    hidden_distill_weight: float = Field(
        0.0, ge=0, description="distill: also MSE to the teacher's hidden states after every layer (pruning "
        "keeps the widths, so layer j matches teacher layer j)")
    remove_empty_neurons: bool = Field(True, description="physically remove FFN neurons pruning emptied")

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
        for name, unset in (("hidden_distill_weight", 0.0), ("label_weight", None)):
            if getattr(self, name) != unset and not self.distill:
                return f"{name}: weighs distillation losses; set distill: true or leave {name} at {unset}"
        if self.pattern == "n:m" and self.n > self.m:
            return f"n: must be <= m (got n={self.n}, m={self.m})"
        if not 0 <= self.sparsity < 1:
            return f"sparsity: must be in [0, 1) (got {self.sparsity})"
        if not 0 <= self.initial_sparsity <= self.sparsity:
            return f"initial_sparsity: must be in [0, {self.sparsity}] (got {self.initial_sparsity})"
        if self.pattern == "n:m" and abs(self.sparsity - (1 - self.n / self.m)) > 1e-9:
            return (f"sparsity: pattern {self.n}:{self.m} removes exactly {1 - self.n / self.m:g}; leave sparsity "
                    f"unset or set it to that (got {self.sparsity})")
        if self.trains_gradually() and self.warmup < 1 and self.cooldown < 1 and self.warmup + self.cooldown >= 1:
            return (f"schedule: warmup ({self.warmup}) + cooldown ({self.cooldown}) cover all of training, so "
                    "pruning would end before it starts; their fractions must sum below 1")
        return None

    def trains_gradually(self) -> bool:
        return True

    def rule(self) -> MaskRule:
        return MaskRule(self.pattern, self.n, self.m, self.block_size, getattr(self, "block_norm", "l2"))


def prunable_linears(model: nn.Module, config: SparsityConfig) -> dict[str, nn.Linear]:
    linears = chosen_linears(model, config)
    rule = config.rule()
    for name, linear in linears.items():
        rule.check_shape(tuple(linear.weight.shape), name)
    return linears


def train_pruned(model: nn.Module, config: SparsityConfig, ctx: Context, report: StepReport | None,
                 hooks: tuple[TrainingHook, ...] = (), epochs: float | None = None, label: str | None = None) -> int:
    """The method's fine-tuning (its rate and distillation; its epochs unless `epochs` is given), with steps
    and time in the report (if given); returns the steps. `label` names a second run (its own checkpoints)."""
    if config.hidden_distill_weight > 0:
        depth = len(get_spec(model).layer_list(model))
        hidden = IntermediateDistillation({"hidden_mse": config.hidden_distill_weight}, list(range(1, depth + 1)),
                                          nn.ModuleDict())
        hooks = (*hooks, hidden)
    losses = {} if config.label_weight is None or not config.distill else {
        "hard_weight": config.label_weight, "distill_weight": 1 - config.label_weight}
    result = finetune(model, ctx, label or config.method_name, epochs=epochs or config.epochs,
                      learning_rate=config.learning_rate, max_steps=config.max_steps, distill=config.distill,
                      hooks=hooks, **losses)
    if report is not None:
        report.metrics.update({"train_steps": result.steps, "train_seconds": round(result.seconds, 1)})
    return result.steps


def planned_schedule(config: SparsityConfig, ctx: Context) -> tuple[CubicSchedule, int]:
    """The cubic ramp inside the optimizer steps finetune will run, placed before training starts."""
    train = step_config(ctx, config.method_name, epochs=config.epochs, learning_rate=config.learning_rate,
                        max_steps=config.max_steps)
    steps = planned_steps(ctx, train)
    schedule = cubic_schedule(steps, config.sparsity, config.warmup, config.cooldown, config.initial_sparsity,
                              config.prune_every)
    return schedule, steps


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


def finish_sparse_model(model: nn.Module, linears: dict[str, nn.Module], config: SparsityConfig,
                        report: StepReport, how: str) -> None:
    """Bake the masks, remove emptied FFN neurons, store compactly, and fill in the report."""
    bake_masks(linears)
    achieved = sparsity_of({n: m.weight for n, m in linears.items()})
    empty = empty_rows_and_columns(linears)
    neurons = remove_empty_ffn_neurons(model, list(linears)) if config.remove_empty_neurons else {}
    stored = _store_compactly(model, list(linears), config.block_size if config.pattern == "block" else 0)
    report.modules_changed = len(stored)
    report.metrics.update({"sparsity": round(achieved, 4), "empty_rows_columns": empty,
                           "ffn_neurons_removed": neurons, "stored_as": stored})
    report.notes.append(
        f"{config.pattern} {how} ({config.scope}): {achieved:.1%} of {len(linears)} Linears' weights removed; "
        f"{sum(neurons.values())} empty FFN neurons removed; stored as {_summary(stored)} (storage/kernel; "
        "sparse kernels only at >= 95% sparsity, where they measured faster than dense on CPU)")
