"""The hard-concrete distribution (Louizos et al. 2018): stochastic gates in [0, 1] with exact 0s and 1s
whose probability of being non-zero is differentiable, so an L0 penalty can be trained by gradient descent."""
from __future__ import annotations

import math

import torch
import torch.nn as nn

_EPS = 1e-6  # keeps log(u) and log(1 - u) finite


def hard_concrete_sample(log_alpha: torch.Tensor, temperature: float, low: float, high: float) -> torch.Tensor:
    """One reparametrised sample per entry: a stretched binary concrete, clipped to [0, 1]."""
    u = torch.rand_like(log_alpha).clamp(_EPS, 1 - _EPS)
    s = torch.sigmoid((torch.log(u) - torch.log1p(-u) + log_alpha) / temperature)
    return (s * (high - low) + low).clamp(0.0, 1.0)


def hard_concrete_deterministic(log_alpha: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """The test-time gate (Louizos et al., eq. 13): the stretched sigmoid of log-alpha, clipped to [0, 1]."""
    return (torch.sigmoid(log_alpha) * (high - low) + low).clamp(0.0, 1.0)


def hard_concrete_open_probability(log_alpha: torch.Tensor, temperature: float, low: float,
                                   high: float) -> torch.Tensor:
    """P(gate != 0): the L0 norm's expectation, differentiable in log-alpha (Louizos et al., eq. 12)."""
    return torch.sigmoid(log_alpha - temperature * math.log(-low / high))


class HardConcreteGates(nn.Module):
    """One trainable log-alpha per unit; sampled gates in training mode, deterministic ones in eval mode.

    A module (not a bare tensor) so that its parameter is part of the model and the shared loop's
    optimizer, checkpoints and device moves all see it.
    """

    def __init__(self, count: int, temperature: float = 2 / 3, low: float = -0.1, high: float = 1.1,
                 initial_log_alpha: float = 3.0):
        super().__init__()
        self.temperature, self.low, self.high = temperature, low, high
        self.log_alpha = nn.Parameter(torch.full((count,), float(initial_log_alpha)))

    def forward(self) -> torch.Tensor:
        if self.training:
            return hard_concrete_sample(self.log_alpha, self.temperature, self.low, self.high)
        return self.deterministic()

    def deterministic(self) -> torch.Tensor:
        return hard_concrete_deterministic(self.log_alpha, self.low, self.high)

    def open_probability(self) -> torch.Tensor:
        return hard_concrete_open_probability(self.log_alpha, self.temperature, self.low, self.high)

    def extra_repr(self) -> str:
        return f"count={self.log_alpha.numel()}, temperature={self.temperature:.3g}, stretch=({self.low}, {self.high})"
