"""Is a difference between two models real? Paired tests on the same examples, and a rule that also asks
the difference to exceed the spread of the baseline over seeds. Knows no method: it reads per-example scores."""
from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

import torch

ALPHA = 0.05
BOOTSTRAP_ROUNDS = 2000


def mcnemar_p(base: Sequence[float], other: Sequence[float]) -> float:
    """Exact two-sided McNemar test on paired right/wrong outcomes: a binomial test on the discordant pairs."""
    _check_paired(base, other)
    only_base = sum(1 for b, o in zip(base, other) if b and not o)
    only_other = sum(1 for b, o in zip(base, other) if o and not b)
    discordant = only_base + only_other
    if discordant == 0:
        return 1.0
    tail = sum(math.comb(discordant, k) for k in range(min(only_base, only_other) + 1)) / 2 ** discordant
    return min(1.0, 2 * tail)


def paired_bootstrap_p(base: Sequence[float], other: Sequence[float], rounds: int = BOOTSTRAP_ROUNDS,
                       seed: int = 0) -> float:
    """Two-sided p of the mean paired difference: how often examples resampled with replacement give a
    difference of the opposite sign (or zero), doubled."""
    _check_paired(base, other)
    differences = [o - b for b, o in zip(base, other)]
    if not any(differences):
        return 1.0
    values = torch.tensor(differences, dtype=torch.float64)
    generator = torch.Generator().manual_seed(seed)
    resampled = values[torch.randint(len(values), (rounds, len(values)), generator=generator)].sum(dim=1)
    opposite = int((resampled * values.sum() <= 0).sum())
    return min(1.0, 2 * (opposite + 1) / (rounds + 1))


def _check_paired(base: Sequence[float], other: Sequence[float]) -> None:
    if len(base) != len(other):
        raise ValueError(f"paired scores need the same examples: {len(base)} vs {len(other)}")


def is_binary(scores: Sequence[float]) -> bool:
    return all(s in (0, 1) for s in scores)


@dataclass(frozen=True)
class Difference:
    """`other` minus `base` in points (mean per-example score x 100), its paired p-value, and the seed spread
    it must exceed. `real` only when both hold; otherwise the difference is 'within noise'."""

    delta: float
    p: float
    test: str
    spread: float = 0.0
    alpha: float = ALPHA

    @property
    def real(self) -> bool:
        return self.p < self.alpha and abs(self.delta) > self.spread

    @property
    def worse(self) -> bool:
        return self.real and self.delta < 0

    @property
    def better(self) -> bool:
        return self.real and self.delta > 0

    def describe(self) -> str:
        verdict = "real" if self.real else "within noise"
        spread = f", seed spread {self.spread:.2f}" if self.spread else ""
        return f"{self.delta:+.2f} ({self.test} p={self.p:.3g}{spread}: {verdict})"

    def to_dict(self) -> dict:
        return {"delta": round(self.delta, 3), "p": round(self.p, 5), "test": self.test,
                "spread": round(self.spread, 3), "real": self.real}


def compare(base: Sequence[float], other: Sequence[float], spread: float = 0.0, seed: int = 0) -> Difference:
    """Paired comparison of per-example scores (1/0 correct, or a per-example F1): McNemar for right/wrong
    outcomes, a paired bootstrap otherwise. `spread`: the baseline's std over seeds, in points."""
    delta = 100 * (statistics.fmean(other) - statistics.fmean(base)) if base else 0.0
    if is_binary(base) and is_binary(other):
        return Difference(delta, mcnemar_p(base, other), "McNemar", spread)
    return Difference(delta, paired_bootstrap_p(base, other, seed=seed), "paired bootstrap", spread)
