"""What a claim is: the variants and probes it needs, and a judge that turns their evidence into a figure and
a verdict by a stated rule. Budgets scale every claim's training and evaluation the same way."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from bertcompress.core.config import MethodConfig

HOLDS, PARTLY, DOES_NOT_HOLD, NOT_TESTABLE = "holds", "holds partly", "does not hold", "not testable here"


@dataclass(frozen=True)
class Budget:
    """How much each claim may spend. `epochs_scale` multiplies every training length a claim names."""

    name: str
    seeds: tuple[int, ...]
    epochs_scale: float
    eval_examples: int | None  # first N test examples (None: the whole split)
    analysis_examples: int  # examples for head ablations and attention statistics
    repeats: int  # interleaved latency rounds

    def epochs(self, full: float) -> float:
        return round(full * self.epochs_scale, 4)

    def describe(self) -> str:
        tested = f"first {self.eval_examples} test examples" if self.eval_examples else "whole test split"
        return (f"{self.name}: seeds {list(self.seeds)}, training x{self.epochs_scale:g} of each claim's epochs, "
                f"{tested}, {self.analysis_examples} examples for head analyses")


QUICK = Budget("quick", (0,), 0.1, 500, 200, 8)
FULL = Budget("full", (0, 1, 2), 1.0, None, 512, 20)


@dataclass(frozen=True)
class Spec:
    """A variant a claim measures: `steps` applied to a copy of the teacher, or, with `after`, to a copy of
    the variant of that name (applied in memory, not saved: for cheap cuts of a trained model)."""

    name: str
    steps: tuple[MethodConfig, ...]
    after: str | None = None
    timed: bool = False  # in the interleaved latency run


@dataclass(frozen=True)
class Finding:
    figure: str
    verdict: str
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Claim:
    id: str
    claim: str  # one line
    paper: str  # the paper's figure and setting
    rule: str  # how the verdict is decided
    differs: str  # what differs from the paper here
    specs: Callable[[Budget], list[Spec]]
    judge: Callable[["Evidence"], Finding]  # noqa: F821 (reproduce.evidence.Evidence)
    probes: tuple[str, ...] = field(default=())  # names in reproduce.probes.PROBES
    task_types: tuple[str, ...] = ("classification", "question_answering")
