"""FLOP (Wang et al. 2020, "Structured Pruning of Large Language Models"): each Linear becomes
W = P · diag(z) · Q, initialised exactly by SVD (P = U√S, Q = √S Vᵀ), with a hard-concrete gate z_k per
rank component. An augmented Lagrangian, λ1·c + λ2·c² with c = expected size / dense size - target,
drives the expected parameter count to the target; λ1, λ2 are trained by gradient ascent (a reversed
gradient), the model by descent. At the end the closed ranks are removed and each Linear is stored as two
smaller Linears (LowRankLinear) wherever that is smaller than the dense weight."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from pydantic import Field

from bertcompress.core.bytes import stored_bytes
from bertcompress.core.context import Context
from bertcompress.core.registry import register
from bertcompress.core.report import StepReport
from bertcompress.core.targets import set_submodule
from bertcompress.methods.common import LinearTargets, chosen_linears
from bertcompress.methods.pruning.hard_concrete import HardConcreteGates
from bertcompress.surgery.linear import LowRankLinear
from bertcompress.training.finetune import finetune
from bertcompress.training.hooks import ParameterGroup, StepState, TrainingHook


class FLOP(LinearTargets):
    """Low-rank factorization with L0-gated ranks, trained to a parameter budget."""

    method_name = "flop"
    target_density: float = Field(0.5, gt=0, lt=1, description="parameters kept, as a fraction of the dense "
                                  "encoder Linears' weights")
    target_ramp: float = Field(0.5, ge=0, le=1, description="fraction of training over which the target falls "
                               "linearly from the full size to target_density")
    epochs: float = Field(1.0, gt=0)
    max_steps: int | None = Field(None, gt=0)
    learning_rate: float = Field(3e-5, gt=0, lt=1, description="of the factors P and Q")
    gate_learning_rate: float = Field(0.01, gt=0, lt=1, description="of the gates' log-alpha")
    lagrangian_learning_rate: float = Field(0.01, gt=0, lt=1, description="of λ1 and λ2 (gradient ascent)")
    distill: bool = Field(True, description="distil from the context's unpruned teacher")


class GatedLowRankLinear(nn.Module):
    """Training-time W = P · diag(z) · Q, with z from hard-concrete gates (sampled in training mode)."""

    def __init__(self, linear: nn.Linear):
        super().__init__()
        u, s, vh = torch.linalg.svd(linear.weight.detach().float(), full_matrices=False)
        root = s.sqrt()
        self.up = nn.Parameter(u * root)  # P: (out, r)
        self.down = nn.Parameter(root[:, None] * vh)  # Q: (r, in)
        self.bias = None if linear.bias is None else nn.Parameter(linear.bias.detach().clone())
        self.gates = HardConcreteGates(s.numel())

    @property
    def dense_size(self) -> int:
        return self.up.shape[0] * self.down.shape[1]

    def expected_size(self) -> torch.Tensor:
        return self.gates.open_probability().sum() * (self.up.shape[0] + self.down.shape[1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(F.linear(x, self.down) * self.gates(), self.up, self.bias)

    def finalize(self, keep: torch.Tensor) -> nn.Module:
        """The smaller of: two Linears over the kept ranks, or the dense product."""
        z = self.gates.deterministic().detach()
        up, down = self.up.detach() * z, self.down.detach()
        out_features, in_features = self.up.shape[0], self.down.shape[1]
        rank = int(keep.sum())
        if rank * (in_features + out_features) < in_features * out_features:
            module = LowRankLinear(in_features, out_features, rank, self.bias is not None)
            with torch.no_grad():
                module.down.weight.copy_(down[keep])
                module.up.weight.copy_(up[:, keep])
        else:
            module = nn.Linear(in_features, out_features, self.bias is not None)
            with torch.no_grad():
                module.weight.copy_(up[:, keep] @ down[keep])
        if self.bias is not None:
            (module.up if isinstance(module, LowRankLinear) else module).bias.data.copy_(self.bias.detach())
        return module


class _ReverseGradient(torch.autograd.Function):
    @staticmethod
    def forward(ctx, value):
        return value.view_as(value)

    @staticmethod
    def backward(ctx, grad):
        return -grad


class LagrangeMultipliers(nn.Module):
    """λ1, λ2 as a module, so that registered on the model the optimizer and checkpoints see them."""

    def __init__(self):
        super().__init__()
        self.values = nn.Parameter(torch.zeros(2))


class AugmentedLagrangian(TrainingHook):
    """λ1·c + λ2·c² on c = E[size]/dense - target_t; the λs ascend (reversed gradient) while c > 0. Gates
    and λs train at their own rates."""

    def __init__(self, layers: dict[str, GatedLowRankLinear], multipliers: LagrangeMultipliers, config: FLOP):
        self.names, self.multipliers, self.config = list(layers), multipliers, config
        self.gates = [layer.gates.log_alpha for layer in layers.values()]
        self.dense = sum(layer.dense_size for layer in layers.values())
        self.target, self.density = 1.0, 1.0

    def parameter_groups(self) -> list[ParameterGroup]:
        return [ParameterGroup(self.gates, self.config.gate_learning_rate),
                ParameterGroup([self.multipliers.values], self.config.lagrangian_learning_rate)]

    def extra_loss(self, model: nn.Module, state: StepState) -> torch.Tensor:
        expected = sum(model.get_submodule(name).expected_size() for name in self.names) / self.dense
        self.density = float(expected.detach())
        gap = expected - self.target
        lambda1, lambda2 = _ReverseGradient.apply(self.multipliers.values)
        return lambda1 * gap + lambda2 * gap * gap

    def after_step(self, model: nn.Module, state: StepState) -> None:
        ramp = max(1, round(self.config.target_ramp * state.total_steps))
        self.target = 1.0 - min(1.0, state.step / ramp) * (1.0 - self.config.target_density)

    def state_dict(self) -> dict:
        return {"target": self.target, "density": self.density}  # the λs are model state

    def load_state_dict(self, state: dict) -> None:
        self.target, self.density = state["target"], state["density"]


def _kept_ranks(layers: dict[str, GatedLowRankLinear], budget: float) -> dict[str, torch.Tensor]:
    """Ranks whose deterministic gate is open; if they still exceed the budget (training too short to
    close enough gates), the least open ones are dropped globally until it is met."""
    keep = {name: layer.gates.deterministic().detach() > 0 for name, layer in layers.items()}
    cost = {name: layer.up.shape[0] + layer.down.shape[1] for name, layer in layers.items()}
    size = sum(int(k.sum()) * cost[name] for name, k in keep.items())
    if size <= budget:
        return keep
    ranked = sorted(((float(layer.gates.log_alpha[i]), name, i) for name, layer in layers.items()
                     for i in keep[name].nonzero().flatten().tolist()))
    for _, name, index in ranked:
        if size <= budget:
            break
        if int(keep[name].sum()) > 1:  # a Linear keeps at least one rank
            keep[name][index] = False
            size -= cost[name]
    return keep


@register(FLOP)
def apply_flop(model: nn.Module, config: FLOP, ctx: Context) -> StepReport:
    report = StepReport()
    linears = chosen_linears(model, config)
    gated = {name: GatedLowRankLinear(linear) for name, linear in linears.items()}
    for name, layer in gated.items():
        set_submodule(model, name, layer)
    model.flop_multipliers = LagrangeMultipliers()
    lagrangian = AugmentedLagrangian(gated, model.flop_multipliers, config)
    try:
        result = finetune(model, ctx, config.method_name, epochs=config.epochs, learning_rate=config.learning_rate,
                          max_steps=config.max_steps, distill=config.distill, hooks=(lagrangian,))
    finally:
        del model.flop_multipliers
    dense = lagrangian.dense
    keep = _kept_ranks(gated, config.target_density * dense)
    for name, layer in gated.items():
        set_submodule(model, name, layer.finalize(keep[name]))
    kept = sum(stored_bytes(model.get_submodule(name)) for name in gated) / 4  # fp32 values
    report.modules_changed = len(gated)
    ranks = {name: int(k.sum()) for name, k in keep.items()}
    report.metrics.update({"train_steps": result.steps, "train_seconds": round(result.seconds, 1),
                           "expected_density_end_of_training": round(lagrangian.density, 4),
                           "density": round(kept / dense, 4), "ranks": ranks})
    report.notes.append(f"FLOP: ranks gated to an expected {lagrangian.density:.1%} of the dense weights after "
                        f"{result.steps} steps; stored {kept / dense:.1%} (target {config.target_density:.0%}) as "
                        f"{sum(isinstance(model.get_submodule(n), LowRankLinear) for n in gated)} factorized pairs")
    return report
