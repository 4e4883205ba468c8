"""Reweighted Proximal Pruning (Guo et al. 2019): fine-tune with a reweighted L1 penalty applied as a
proximal step after each optimizer step, decoupled from AdamW (whose adaptive steps would otherwise
undo an L1 gradient):

    w <- sign(w) · max(|w| - η_t · λ_i, 0),   λ_i = λ / (|w_i| + ε), reweighted every k steps

so small weights are driven to exactly zero while large ones are barely shrunk. The model is then
thresholded to the target sparsity (magnitude ranking), optionally recovered with fixed masks, and
stored compactly like every weight-pruned model."""
from __future__ import annotations

import torch
import torch.nn as nn
from pydantic import Field

from bertcompress.core.context import Context
from bertcompress.core.registry import register
from bertcompress.core.report import StepReport
from bertcompress.methods.pruning.masks import attach_masks, compute_masks, magnitude_scores, sparsity_of
from bertcompress.methods.pruning.sparsity import (SparsityConfig, finish_sparse_model, prunable_linears,
                                                   train_pruned)
from bertcompress.training.hooks import StepState, TrainingHook


class ReweightedProximalPruning(SparsityConfig):
    """Reweighted L1 by proximal steps while fine-tuning, then threshold to `sparsity`."""

    method_name = "rpp"
    penalty: float = Field(0.05, gt=0, description="λ: strength of the reweighted L1 penalty")
    epsilon: float = Field(1e-3, gt=0, description="ε in λ / (|w| + ε): caps the penalty on tiny weights")
    reweight_every: int = Field(50, ge=1, description="k: optimizer steps between reweightings")
    recovery_epochs: float = Field(0.0, ge=0, description="fine-tuning with fixed masks after thresholding")

    def trains_gradually(self) -> bool:
        return False  # no cubic ramp: the penalty does the gradual part


class ProximalL1(TrainingHook):
    """The proximal operator of Σ λ_i |w_i| after each step, with η_t the weights' current learning rate."""

    def __init__(self, names: list[str], config: ReweightedProximalPruning):
        self.names, self.config = names, config
        self.penalties: dict[str, torch.Tensor] = {}

    def _reweight(self, modules: dict[str, nn.Module]) -> None:
        self.penalties = {name: self.config.penalty / (m.weight.detach().abs() + self.config.epsilon)
                          for name, m in modules.items()}

    @torch.no_grad()
    def after_step(self, model: nn.Module, state: StepState) -> None:
        modules = {name: model.get_submodule(name) for name in self.names}
        if not self.penalties or (state.step - 1) % self.config.reweight_every == 0:
            self._reweight(modules)
        for name, module in modules.items():
            shrunk = module.weight.abs() - state.learning_rate * self.penalties[name]
            module.weight.copy_(module.weight.sign() * shrunk.clamp_min(0))

    def state_dict(self) -> dict:
        return {"penalties": self.penalties}

    def load_state_dict(self, state: dict) -> None:
        self.penalties = state["penalties"]


def proximal_training(model: nn.Module, linears: dict[str, nn.Module], config: ReweightedProximalPruning,
                      ctx: Context, report: StepReport) -> float:
    """Fine-tune with the proximal steps; returns the fraction of the linears' weights now exactly zero."""
    train_pruned(model, config, ctx, report, (ProximalL1(list(linears), config),))
    return sparsity_of({n: m.weight for n, m in linears.items()})


@register(ReweightedProximalPruning)
def apply_rpp(model: nn.Module, config: ReweightedProximalPruning, ctx: Context) -> StepReport:
    report = StepReport()
    linears = prunable_linears(model, config)
    exact_zeros = proximal_training(model, linears, config, ctx, report)
    attach_masks(linears, compute_masks(magnitude_scores(linears), config.sparsity, config.rule(), config.scope))
    report.metrics["zeros_after_proximal_training"] = round(exact_zeros, 4)
    if config.recovery_epochs > 0:
        report.metrics["recovery_steps"] = train_pruned(model, config, ctx, None, epochs=config.recovery_epochs,
                                                        label=f"{config.method_name}-recovery")
    finish_sparse_model(model, linears, config, report, "reweighted proximal pruning")
    report.notes.append(f"proximal training alone left {exact_zeros:.1%} of the weights exactly zero")
    return report
