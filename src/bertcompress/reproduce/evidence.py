"""What the judges read: per-example scores of every variant on every seed, sizes, speedups and probe
results, with paired comparisons that respect seed noise."""
from __future__ import annotations

import statistics
from dataclasses import dataclass, field

from bertcompress.evaluation.significance import Difference, compare
from bertcompress.reproduce.spec import Budget

TEACHER = "teacher"


@dataclass
class Evidence:
    budget: Budget
    task: str
    task_type: str
    results: dict[str, dict[int, dict]] = field(default_factory=dict)  # name -> seed -> scores, bytes, reports
    probes: dict[str, dict[int, dict]] = field(default_factory=dict)  # probe -> seed -> its result
    speed: dict[str, dict] = field(default_factory=dict)  # name -> {"b1": x, "b32": x} speedup vs the teacher
    threads: int = 1  # torch threads the speedups were measured with

    @property
    def seeds(self) -> list[int]:
        return sorted(self.results.get(TEACHER, {}))

    def scores(self, name: str, seed: int) -> list[float]:
        return self.results[name][seed]["scores"]

    def per_seed(self, name: str) -> list[float]:
        """The variant's score on each seed, in points."""
        return [100 * statistics.fmean(self.scores(name, s)) for s in self.seeds]

    def mean(self, name: str) -> float:
        return statistics.fmean(self.per_seed(name))

    def std(self, name: str) -> float:
        values = self.per_seed(name)
        return statistics.stdev(values) if len(values) > 1 else 0.0

    def shown(self, name: str) -> str:
        """'mean ± std' over seeds, or the one seed's figure."""
        return f"{self.mean(name):.2f} ± {self.std(name):.2f}" if len(self.seeds) > 1 else f"{self.mean(name):.2f}"

    def diff(self, name: str, base: str = TEACHER) -> Difference:
        """`name` minus `base`, paired over the same examples of every seed; it must also exceed the spread of
        the per-seed differences."""
        base_scores = [x for s in self.seeds for x in self.scores(base, s)]
        other_scores = [x for s in self.seeds for x in self.scores(name, s)]
        deltas = [o - b for o, b in zip(self.per_seed(name), self.per_seed(base))]
        spread = statistics.stdev(deltas) if len(deltas) > 1 else 0.0
        return compare(base_scores, other_scores, spread)

    def line(self, name: str, base: str = TEACHER) -> str:
        """'name 84.10 (-0.40 McNemar p=0.5: within noise)': its score and its difference from `base`."""
        return f"{name} {self.shown(name)} ({self.diff(name, base).describe()})"

    def retained(self, name: str) -> float:
        """The variant's score as a share of the teacher's (Sanh et al. and DistilBERT report this)."""
        return self.mean(name) / self.mean(TEACHER)

    def bytes(self, name: str) -> int:
        return self.results[name][self.seeds[0]]["bytes"]

    def smaller(self, name: str) -> float:
        """How many times smaller on disk than the teacher."""
        return self.bytes(TEACHER) / self.bytes(name)

    def metrics(self, name: str, step: int = -1) -> dict:
        """The first seed's step report metrics (sparsity, density, surviving heads)."""
        return self.results[name][self.seeds[0]]["reports"][step]["metrics"]

    def probe(self, name: str, seed: int | None = None) -> dict:
        return self.probes[name][self.seeds[0] if seed is None else seed]

    def to_dict(self) -> dict:
        """Everything but the per-example lists (those stay in the cache)."""
        return {"budget": self.budget.__dict__, "task": self.task, "task_type": self.task_type,
                "scores": {n: {"per_seed": [round(v, 3) for v in self.per_seed(n)], "bytes": self.bytes(n)}
                           for n in self.results},
                "speed": self.speed}
