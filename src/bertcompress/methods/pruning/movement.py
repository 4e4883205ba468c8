"""Movement pruning (Sanh et al. 2020): each pruned weight gets a learned score S, trained with the
straight-through estimator, so a weight is kept for moving away from zero during fine-tuning rather
than for being large. W' = W ⊙ M(S); the mask M is treated as identity in the backward pass, so
∂L/∂S = ∂L/∂W' ⊙ W: scores grow for weights whose gradient pushes them away from zero.

- hard: M keeps the top (1 - s_t) of the scores, s_t on the cubic schedule (unstructured, n:m or blocks;
  a block's score is the sum of its weights' scores, since movement adds up).
- soft: M = 1[σ(S) > τ_t], τ_t on the cubic schedule, plus λ·mean σ(S) (an L1 penalty on the squashed
  scores) that pushes scores of weights the loss does not need below the threshold; the sparsity is
  found by training, not set."""
from __future__ import annotations

from typing import Literal

import torch
import torch.nn as nn
import torch.nn.utils.parametrize as parametrize
from pydantic import Field

from bertcompress.core.context import Context
from bertcompress.core.registry import register
from bertcompress.core.report import StepReport
from bertcompress.methods.pruning.masks import FixedMask, MaskRule, compute_masks, sparsity_of
from bertcompress.methods.pruning.schedules import CubicSchedule
from bertcompress.methods.pruning.sparsity import (SparsityConfig, finish_sparse_model, planned_schedule,
                                                   prunable_linears, train_pruned)
from bertcompress.training.hooks import ParameterGroup, StepState, TrainingHook


class MovementPruning(SparsityConfig):
    """Prune the weights that move towards zero while fine-tuning (learned scores, straight-through)."""

    method_name = "movement_pruning"
    variant: Literal["hard", "soft"] = Field("hard", description="hard: top-k of scores to `sparsity`; "
                                             "soft: threshold on σ(scores) with an L1 penalty")
    score_learning_rate: float = Field(1e-2, gt=0, lt=1, description="of the scores (Sanh et al. use 1e-2)")
    score_init: Literal["zeros", "magnitude"] = Field(
        "zeros", description="zeros (Sanh et al.) or |W| / mean |W| per Linear: a magnitude prior that movement "
        "then revises, for budgets too short to learn scores from nothing")
    final_threshold: float = Field(0.1, gt=0, lt=1, description="soft: τ reached at the end of the ramp")
    l1_weight: float = Field(1.0, ge=0, description="soft: λ of the penalty mean σ(scores), ramped with τ")

    def _cross_field_problem(self) -> str | None:
        if self.variant == "soft" and self.pattern != "unstructured":
            return (f"pattern: the soft variant thresholds single weights; use pattern: unstructured "
                    f"(got {self.pattern!r}) or variant: hard")
        return super()._cross_field_problem()

    def rule(self) -> MaskRule:
        return MaskRule(self.pattern, self.n, self.m, self.block_size, "sum")


class MovementMask(FixedMask):
    """Parametrization weight -> weight · mask with learned scores: the forward uses the (binary) mask
    buffer; the backward treats it as the scores, so scores receive ∂L/∂W' ⊙ W."""

    def __init__(self, shape: torch.Size):
        super().__init__(torch.ones(shape, dtype=torch.bool))
        self.scores = nn.Parameter(torch.zeros(shape))

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return weight * (self.mask + (self.scores - self.scores.detach()))


def attach_movement_masks(modules: dict[str, nn.Module], score_init: str = "zeros") -> dict[str, MovementMask]:
    attached = {}
    for name, module in modules.items():
        mask = MovementMask(module.weight.shape).to(module.weight.device)
        if score_init == "magnitude":
            with torch.no_grad():
                magnitude = module.weight.detach().abs()
                mask.scores.copy_(magnitude / magnitude.mean().clamp_min(1e-12))
        parametrize.register_parametrization(module, "weight", mask)
        attached[name] = mask
    return attached


class MovementMasking(TrainingHook):
    """Recompute the masks from the scores every Δt steps once the warm-up is over (weights may come back
    while their scores rise); add the soft variant's penalty to the loss. Scores train at their own rate."""

    def __init__(self, masks: dict[str, MovementMask], config: MovementPruning, schedule: CubicSchedule):
        self.masks, self.config, self.schedule, self.rule = masks, config, schedule, config.rule()
        self.level = 0.0  # sparsity (hard) or threshold (soft) now in force

    def _progress(self, step: int) -> float:
        """0 -> 1 along the cubic ramp."""
        final = self.schedule.final_sparsity
        return self.schedule.sparsity_at(step) / final if final else 1.0

    def parameter_groups(self) -> list[ParameterGroup]:
        return [ParameterGroup([m.scores for m in self.masks.values()], self.config.score_learning_rate)]

    def extra_loss(self, model: nn.Module, state: StepState) -> torch.Tensor | None:
        if self.config.variant != "soft" or self.config.l1_weight == 0:
            return None
        squashed = torch.cat([torch.sigmoid(m.scores).flatten() for m in self.masks.values()])
        return self.config.l1_weight * self.level / self.config.final_threshold * squashed.mean()

    def after_step(self, model: nn.Module, state: StepState) -> None:
        step = state.step
        due = step % self.config.prune_every == 0 or step in (self.schedule.end_step, state.total_steps)
        if step <= self.schedule.begin_step or not due:
            return
        scores = {name: m.scores.detach() for name, m in self.masks.items()}
        if self.config.variant == "hard":
            self.level = self.schedule.sparsity_at(step)
            keep = compute_masks(scores, self.level, self.rule, self.config.scope)
        else:
            self.level = self.config.final_threshold * self._progress(step)
            keep = {name: torch.sigmoid(s) > self.level for name, s in scores.items()}
        for name, mask in self.masks.items():
            mask.set_mask(keep[name])

    def state_dict(self) -> dict:
        return {"level": self.level}  # masks and scores are model state, checkpointed with it

    def load_state_dict(self, state: dict) -> None:
        self.level = state["level"]


@register(MovementPruning)
def apply_movement_pruning(model: nn.Module, config: MovementPruning, ctx: Context) -> StepReport:
    report = StepReport()
    linears = prunable_linears(model, config)
    # soft: τ ramps from 0 to final_threshold along the same cubic curve (its sparsity only sets the shape)
    schedule, _ = planned_schedule(config.model_copy(update={"sparsity": config.sparsity or 0.5})
                                   if config.variant == "soft" else config, ctx)
    masks = attach_movement_masks(linears, config.score_init)
    hook = MovementMasking(masks, config, schedule)
    train_pruned(model, config, ctx, report, (hook,))
    report.metrics.update({"ramp_steps": [schedule.begin_step, schedule.end_step],
                           "mask_sparsity": round(sparsity_of({n: m.mask for n, m in masks.items()}), 4)})
    finish_sparse_model(model, linears, config, report, f"{config.variant} movement pruning")
    return report
