"""Benchmarks as tables: named rows of recipe steps and seeds, built through the variants API against each
seed's teacher (cached, so an interrupted benchmark resumes row by row), timed together in one run, and
written as a section of BENCHMARKS.md plus `bench/results/<section>.json`.

A benchmark script is a `Table` and, where it needs one, a function that adds its own prose or figures."""
from __future__ import annotations

import argparse
import json
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch.nn as nn

from bertcompress.core.config import MethodConfig
from bertcompress.core.context import Context
from bertcompress.data import tasks
from bertcompress.io import load_tokenizer
from bertcompress.measure import MeasureOptions, accuracy_rows, environment, measure
from bertcompress.recipe import Recipe
from bertcompress.training.loop import TrainConfig
from bertcompress.training.teacher import get_teacher
from bertcompress.variants import Variant, VariantCache, build_all

ROOT = Path(__file__).resolve().parents[2]
BENCHMARKS = ROOT / "BENCHMARKS.md"
RESULTS = ROOT / "bench" / "results"
SMOKE = ROOT / "bench" / "work" / "smoke"
TEACHER = "teacher"


@dataclass(frozen=True)
class Row:
    """One variant of the table; no steps means the teacher itself."""

    name: str
    steps: tuple[MethodConfig, ...] = ()
    seeds: tuple[int, ...] = (0,)
    timed: bool = True  # in the one-run latency measurement (its first seed's model)


@dataclass
class Table:
    section: str
    title: str
    description: str
    rows: list[Row]
    task: str = "rotten_tomatoes"
    model: str = "minilm"
    teacher_train: dict = field(default_factory=dict)  # TrainConfig fields besides the seed
    extra: Callable[[list[dict]], str] | None = None  # more markdown from the result rows

    def seeds(self) -> list[int]:
        return sorted({seed for row in self.rows for seed in row.seeds})


@dataclass
class Settings:
    repeats: int = 20
    threads: int | None = None
    smoke: bool = False  # a small slice and a few steps: checks the table runs, writes under bench/work/smoke

    @classmethod
    def from_command_line(cls, description: str) -> "Settings":
        parser = argparse.ArgumentParser(description=description)
        parser.add_argument("--repeats", type=int, default=20, help="interleaved latency rounds")
        parser.add_argument("--threads", type=int, default=None)
        parser.add_argument("--smoke", action="store_true", help="tiny slice and budgets; BENCHMARKS.md untouched")
        args = parser.parse_args()
        return cls(args.repeats, args.threads, args.smoke)


def run_table(table: Table, settings: Settings, log=print) -> list[dict]:
    """Build every row on every one of its seeds, score each on the test split, time the first seeds'
    models in one run, and write the section. Returns the result rows."""
    task = tasks.get(table.task, seed=0)  # one split; seeds vary head initialisation, data order, methods
    if settings.smoke:
        task = task.sliced(64, 32)
    tokenizer = load_tokenizer(table.model)
    scores: dict[str, dict[int, dict]] = {row.name: {} for row in table.rows}
    timed: dict[str, nn.Module] = {}
    saved: dict[str, Path] = {}
    for seed in table.seeds():
        train = TrainConfig(seed=seed, **({"max_steps": 4} if settings.smoke else table.teacher_train))
        teacher = get_teacher(table.model, task, tokenizer, train)
        ctx = Context(task=task, tokenizer=tokenizer, teacher=teacher.model, train=train, seed=seed)
        rows = [row for row in table.rows if seed in row.seeds]
        variants = [Variant(row.name, Recipe(row.name, list(row.steps)), seed) for row in rows if row.steps]
        built = build_all(teacher.model, variants, ctx, VariantCache(teacher.path.name), tokenizer, log)
        for row in rows:
            model, path = (built[row.name].model, built[row.name].path) if row.steps else (teacher.model, teacher.path)
            scores[row.name][seed] = accuracy_rows({row.name: model}, task, tokenizer, train.max_length)[0]
            log(f"{row.name} seed {seed}: test {100 * scores[row.name][seed]['test_accuracy']:.2f}")
            if row.timed and seed == row.seeds[0]:
                timed[row.name], saved[row.name] = model, path
    options = MeasureOptions(repeats=2 if settings.smoke else settings.repeats, threads=settings.threads,
                             memory=False)
    measured, latency = measure(timed, saved, task, tokenizer, options) if timed else ([], {})
    results = _result_rows(table, scores, {m["variant"]: m for m in measured})
    threads = next(iter(latency.values()))["threads"] if latency else 0
    write_section(table, results, environment(threads), settings)
    return results


def _mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.mean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def _result_rows(table: Table, scores: dict[str, dict[int, dict]], measured: dict[str, dict]) -> list[dict]:
    teacher = next((row.name for row in table.rows if not row.steps), None)
    results = []
    for row in table.rows:
        per_seed = scores[row.name]
        mean, std = _mean_std([s["test_accuracy"] for s in per_seed.values()])
        base = [scores[teacher][seed]["test_accuracy"] for seed in per_seed if teacher and seed in scores[teacher]]
        result = {"name": row.name, "recipe": [s.to_dict() for s in row.steps], "seeds": sorted(per_seed),
                  "test_accuracy": {str(k): v["test_accuracy"] for k, v in per_seed.items()},
                  "validation_accuracy": {str(k): v["validation_accuracy"] for k, v in per_seed.items()},
                  "test_accuracy_mean": mean, "test_accuracy_std": std,
                  "delta_points": 100 * (mean - statistics.mean(base)) if base else None}
        timing = measured.get(row.name, {})
        for key in ("size_mb", "encoder_linear_mb", "latency_b1_ms", "latency_b32_ms", "speedup_b1",
                    "speedup_b1_q1", "speedup_b1_q3", "speedup_b32", "speedup_b32_q1", "speedup_b32_q3"):
            if key in timing:
                result[key] = timing[key]
        results.append(result)
    return results


def _cell_accuracy(result: dict) -> str:
    if len(result["seeds"]) == 1:
        return f"{100 * result['test_accuracy_mean']:.2f}"
    return f"{100 * result['test_accuracy_mean']:.2f} ± {100 * result['test_accuracy_std']:.2f}"


def _cell_speedup(result: dict, batch: int) -> str:
    if f"speedup_b{batch}" not in result:
        return "–"
    return (f"{result[f'speedup_b{batch}']:.2f}x ({result[f'speedup_b{batch}_q1']:.2f}–"
            f"{result[f'speedup_b{batch}_q3']:.2f})")


def markdown(table: Table, results: list[dict], env: dict, settings: Settings) -> str:
    base_size = next((r["size_mb"] for r in results if not r["recipe"] and "size_mb" in r), None)
    lines = [f"## {table.title}", "", table.description, "",
             f"Timed in one run: {env['cpu']}, {env['threads']} thread(s), torch {env['torch']}, seq 64, "
             f"{settings.repeats} interleaved rounds; a speedup is the median teacher/variant time ratio over the "
             "rounds (interquartile range in brackets). Accuracy: test split, mean ± std over the seeds listed.",
             "", "| variant | seeds | test accuracy | Δ (points) | size on disk MB | smaller | speedup b1 | speedup b32 |",
             "|---|---|---|---|---|---|---|---|"]
    for r in results:
        size = f"{r['size_mb']:.1f}" if "size_mb" in r else "–"
        smaller = f"{base_size / r['size_mb']:.2f}x" if base_size and "size_mb" in r else "–"
        delta = "–" if r["delta_points"] is None else f"{r['delta_points']:+.2f}"
        lines.append(f"| {r['name']} | {','.join(map(str, r['seeds']))} | {_cell_accuracy(r)} | {delta} | {size} | "
                     f"{smaller} | {_cell_speedup(r, 1)} | {_cell_speedup(r, 32)} |")
    if table.extra:
        lines += ["", table.extra(results)]
    return "\n".join(lines)


def write_section(table: Table, results: list[dict], env: dict, settings: Settings) -> None:
    """Replace the table's section of BENCHMARKS.md (or append it) and keep the rows as JSON."""
    text = markdown(table, results, env, settings)
    data = {"environment": env, "rows": results}
    if settings.smoke:
        SMOKE.mkdir(parents=True, exist_ok=True)
        (SMOKE / f"{table.section}.md").write_text(text + "\n")
        (SMOKE / f"{table.section}.json").write_text(json.dumps(data, indent=2))
        return
    replace_section(table.section, text, data)


def replace_section(name: str, text: str, data: dict | list) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(data, indent=2))
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    block = f"{start}\n{text.strip()}\n{end}"
    document = BENCHMARKS.read_text() if BENCHMARKS.exists() else "# Benchmarks\n"
    if start in document:
        before, rest = document.split(start, 1)
        document = before + block + rest.split(end, 1)[1]
    else:
        document = document.rstrip() + "\n\n" + block + "\n"
    BENCHMARKS.write_text(document)
