"""Benchmarks as tables: named rows of recipe steps and seeds, built through the variants API against each
seed's teacher (cached, so an interrupted benchmark resumes row by row), timed together in one run, and
written as a section of BENCHMARKS.md plus `bench/results/<section>.json`.

A benchmark script is a `Table` and, where it needs one, a function that adds its own prose or figures.
Peer tools (torch.ao, ONNX Runtime) are rows too: a function makes their model from the teacher."""
from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn as nn

from bertcompress.core.config import MethodConfig
from bertcompress.core.context import Context
from bertcompress.data import tasks
from bertcompress.data.batching import encode
from bertcompress.data.tasks import Task
from bertcompress.evaluation.latency import benchmark_many
from bertcompress.evaluation.metrics import score
from bertcompress.io import directory_bytes_of, load_tokenizer
from bertcompress.measure import MB, MeasureOptions, accuracy_rows, environment, latency_fields
from bertcompress.recipe import Recipe
from bertcompress.runtimes.peers import onnx_runtime, torch_dynamic_int8  # noqa: F401  (bench scripts' peers)
from bertcompress.training.loop import TrainConfig
from bertcompress.training.teacher import Teacher, get_teacher
from bertcompress.variants import Variant, VariantCache, build_all, slug

ROOT = Path(__file__).resolve().parents[2]
BENCHMARKS = ROOT / "BENCHMARKS.md"
RESULTS = ROOT / "bench" / "results"
WORK = ROOT / "bench" / "work"
SMOKE = WORK / "smoke"
TEACHER = "teacher"

Peer = Callable[[nn.Module, Path], tuple[nn.Module, Path]]  # (start model, where to save) -> (model, saved at)


@dataclass(frozen=True)
class Row:
    """One variant of the table: recipe steps applied to a copy of the teacher (or of the row named `start`,
    same seed), or a model a peer tool makes from it, or, with neither, the teacher itself."""

    name: str
    steps: tuple[MethodConfig, ...] = ()
    seeds: tuple[int, ...] = (0,)
    timed: bool = True  # in the one-run latency measurement (its first seed's model)
    start: str | None = None
    peer: Peer | None = None
    train: dict = field(default_factory=dict)  # TrainConfig fields for this row's training steps (loss weights)
    info: dict = field(default_factory=dict)  # kept in the result row (bits, a note)


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
    columns: tuple[tuple[str, Callable[[dict], str]], ...] = ()  # (header, cell from a result row) after the name
    metric: str = "test accuracy"  # what `accuracy` holds for the task type (QA: F1, tags: entity F1)
    sliced: tuple[int | None, int | None] = (None, None)  # first N training / evaluation examples (CPU budget)
    seq_len: int = 64  # latency shape

    def seeds(self) -> list[int]:
        return sorted({seed for row in self.rows for seed in row.seeds})


@dataclass
class Settings:
    repeats: int = 20
    threads: int | None = None
    smoke: bool = False  # a small slice and a few steps: checks the table runs, writes under bench/work/smoke
    options: dict = field(default_factory=dict)  # a script's own command-line options

    @classmethod
    def from_command_line(cls, description: str, repeats: int = 20, options: dict | None = None) -> "Settings":
        """`options`: {"--flag": argparse keyword arguments}, parsed into `Settings.options`."""
        parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawTextHelpFormatter)
        parser.add_argument("--repeats", type=int, default=repeats, help="interleaved latency rounds")
        parser.add_argument("--threads", type=int, default=None)
        parser.add_argument("--smoke", action="store_true", help="tiny slice and budgets; BENCHMARKS.md untouched")
        for flag, keywords in (options or {}).items():
            parser.add_argument(flag, **keywords)
        args = vars(parser.parse_args())
        return cls(args.pop("repeats"), args.pop("threads"), args.pop("smoke"), args)


def task_and_tokenizer(settings: Settings, task: str = "rotten_tomatoes", model: str = "minilm"):
    data = tasks.get(task, seed=0)  # one split; seeds vary head initialisation, data order, methods
    return (data.sliced(64, 32) if settings.smoke else data), load_tokenizer(model)


def teacher_context(model: str, task: Task, tokenizer, seed: int, settings: Settings,
                    teacher_train: dict | None = None) -> tuple[Teacher, Context]:
    """The seed's fine-tuned teacher (cached) and a context that distils from it."""
    train = TrainConfig(seed=seed, **({"max_steps": 4} if settings.smoke else teacher_train or {}))
    teacher = get_teacher(model, task, tokenizer, train)
    return teacher, Context(task=task, tokenizer=tokenizer, teacher=teacher.model, train=train, seed=seed)


def build_rows(rows: list[Row], teacher: Teacher, ctx: Context, tokenizer, workdir: Path,
               log=print) -> dict[str, tuple[nn.Module, Path, list[dict]]]:
    """Every row of one seed, in order, as (model, where it is saved, step reports): variants through the
    cache (keyed also by their start row and training fields), peers made afresh under `workdir`."""
    made: dict[str, tuple[nn.Module, Path, list[dict]]] = {}
    for row in rows:
        model, path = (made[row.start][:2]) if row.start else (teacher.model, teacher.path)
        if row.peer:
            made[row.name] = (*row.peer(model, workdir / f"{slug(row.name)}-seed{ctx.seed}"), [])
        elif row.steps:
            keys = [path.name] if row.start else []
            keys += [json.dumps(row.train, sort_keys=True)] if row.train else []
            cache = VariantCache("+".join([teacher.path.name, *keys]))
            row_ctx = dataclasses.replace(ctx, train=ctx.train.model_copy(update=row.train))
            variant = Variant(row.name, Recipe(row.name, list(row.steps)), ctx.seed)
            built = build_all(model, [variant], row_ctx, cache, tokenizer, log)[row.name]
            made[row.name] = (built.model, built.path, built.reports)
        else:
            made[row.name] = (model, path, [])
    return made


def accuracy(model: nn.Module, task: Task, tokenizer, max_length: int, peer: bool = False) -> dict:
    """Validation and test accuracy (and what accuracy_rows adds); a peer's model (an ONNX Runtime session,
    torch.ao modules) lacks our module layout, so it gets the two accuracies only."""
    if not peer:
        return accuracy_rows({"model": model}, task, tokenizer, max_length)[0]
    return {f"{split}_accuracy": score(model, encode(task.split(split), tokenizer, max_length), task.num_labels,
                                       label_names=task.label_names)[0]
            ["accuracy"] for split in ("validation", "test")}


def bytes_on_disk(path: Path) -> int:
    """A saved model directory's weights, config and manifest, or a peer's one file."""
    return directory_bytes_of(path, exclude_tokenizer=True) if path.is_dir() else path.stat().st_size


def run_table(table: Table, settings: Settings, log=print) -> list[dict]:
    """Build every row on every one of its seeds, score each on the test split, time the first seeds'
    models in one run, and write the section. Returns the result rows."""
    task, tokenizer = task_and_tokenizer(settings, table.task, table.model)
    task = task.sliced(*table.sliced) if any(table.sliced) and not settings.smoke else task
    scores: dict[str, dict[int, dict]] = {row.name: {} for row in table.rows}
    reports: dict[str, dict[int, list]] = {row.name: {} for row in table.rows}
    timed, sizes = {}, {}
    for seed in table.seeds():
        teacher, ctx = teacher_context(table.model, task, tokenizer, seed, settings, table.teacher_train)
        rows = [row for row in table.rows if seed in row.seeds]
        made = build_rows(rows, teacher, ctx, tokenizer, (SMOKE if settings.smoke else WORK) / table.section, log)
        for row in rows:
            model, path, reports[row.name][seed] = made[row.name]
            scores[row.name][seed] = accuracy(model, task, tokenizer, ctx.train.max_length, row.peer is not None)
            log(f"{row.name} seed {seed}: test {100 * scores[row.name][seed]['test_accuracy']:.2f}")
            if seed == row.seeds[0]:
                sizes[row.name] = bytes_on_disk(path)
                if row.timed:
                    timed[row.name] = model
    options = MeasureOptions(seq_len=table.seq_len, repeats=2 if settings.smoke else settings.repeats,
                             threads=settings.threads)
    latency = benchmark_many(timed, options.batch_sizes, options.seq_len, options.repeats,
                             threads=options.threads) if timed else {}
    results = _result_rows(table, scores, reports, sizes, latency, options.batch_sizes)
    threads = next(iter(latency.values()))["threads"] if latency else torch.get_num_threads()
    write_section(table, results, environment(threads), settings)
    return results


def _mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.mean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def _result_rows(table: Table, scores: dict[str, dict[int, dict]], reports: dict[str, dict[int, list]],
                 sizes: dict[str, int], latency: dict[str, dict], batch_sizes: tuple[int, ...]) -> list[dict]:
    teacher = next((row.name for row in table.rows if not row.steps and not row.peer), None)
    baseline = latency.get(next(iter(latency), ""))
    results = []
    for row in table.rows:
        per_seed = scores[row.name]
        mean, std = _mean_std([s["test_accuracy"] for s in per_seed.values()])
        base = [scores[teacher][seed]["test_accuracy"] for seed in per_seed if teacher and seed in scores[teacher]]
        first = per_seed[row.seeds[0]]
        result = {"name": row.name, "recipe": [s.to_dict() for s in row.steps], "seeds": sorted(per_seed),
                  "test_accuracy": {str(k): v["test_accuracy"] for k, v in per_seed.items()},
                  "validation_accuracy": {str(k): v["validation_accuracy"] for k, v in per_seed.items()},
                  "test_accuracy_mean": mean, "test_accuracy_std": std,
                  "delta_points": 100 * (mean - statistics.mean(base)) if base else None,
                  "size_mb": sizes[row.name] / MB, "timed": row.timed, "peer": row.peer is not None,
                  "notes": [note for report in reports[row.name][row.seeds[0]] for note in report.get("notes", [])],
                  "reports": {str(k): v for k, v in reports[row.name].items() if v}}
        result |= {key: value for key, value in (("start", row.start), ("train", row.train), ("info", row.info),
                                                 ("encoder_linear_mb", first.get("encoder_linear_mb"))) if value}
        result |= {key: value for key, value in first.items() if key.startswith("test_") and key not in result}
        if row.name in latency:
            result |= latency_fields(latency[row.name], baseline, batch_sizes)
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
    base_size = next((r["size_mb"] for r in results if not r["recipe"] and not r["peer"]), None)
    extra = "".join(f" {header} |" for header, _ in table.columns)
    lines = [f"## {table.title}", "", table.description, "",
             f"Timed in one run: {env['cpu']} ({', '.join(env.get('cpu_features', [])) or 'no AVX2/AVX-512/VNNI'}), "
             f"{env['threads']} thread(s), torch {env['torch']}, seq {table.seq_len}, "
             f"{settings.repeats} interleaved rounds; a speedup is the median teacher/variant time ratio over the "
             f"rounds (interquartile range in brackets). {table.metric[0].upper()}{table.metric[1:]}: test split, mean ± std over "
             "the seeds listed.",
             "", f"| variant |{extra} seeds | {table.metric} | Δ (points) | size on disk MB | smaller | speedup b1 | "
             "speedup b32 |", "|---|" + "---|" * (len(table.columns) + 7)]
    for r in results:
        smaller = f"{base_size / r['size_mb']:.2f}x" if base_size else "–"
        delta = "–" if r["delta_points"] is None else f"{r['delta_points']:+.2f}"
        cells = "".join(f" {cell(r)} |" for _, cell in table.columns)
        lines.append(f"| {r['name']} |{cells} {','.join(map(str, r['seeds']))} | {_cell_accuracy(r)} | {delta} | "
                     f"{r['size_mb']:.1f} | {smaller} | {_cell_speedup(r, 1)} | {_cell_speedup(r, 32)} |")
    if table.extra:
        lines += ["", table.extra(results)]
    return "\n".join(lines)


def write_section(table: Table, results: list[dict], env: dict, settings: Settings) -> None:
    """Replace the table's section of BENCHMARKS.md (or append it) and keep the rows as JSON."""
    publish(table.section, markdown(table, results, env, settings), {"environment": env, "rows": results}, settings)


def publish(name: str, text: str, data: dict | list, settings: Settings) -> None:
    """Section `name` of BENCHMARKS.md and its JSON; a smoke run writes both under bench/work/smoke instead."""
    if not settings.smoke:
        return replace_section(name, text, data)
    write_json(name, data, settings)
    (SMOKE / f"{name}.md").write_text(text + "\n")


def write_json(name: str, data: dict | list, settings: Settings) -> Path:
    """`bench/results/<name>.json`, or under bench/work/smoke for a smoke run."""
    path = (SMOKE if settings.smoke else RESULTS) / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2))
    return path


def read_results(name: str, settings: Settings) -> dict:
    """What `write_json` or a table wrote under `name` ({} if that benchmark has not run)."""
    path = (SMOKE if settings.smoke else RESULTS) / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else {}


def replace_section(name: str, text: str, data: dict | list) -> None:
    write_json(name, data, Settings())
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    block = f"{start}\n{text.strip()}\n{end}"
    document = BENCHMARKS.read_text() if BENCHMARKS.exists() else "# Benchmarks\n"
    if start in document:
        before, rest = document.split(start, 1)
        document = before + block + rest.split(end, 1)[1]
    else:
        document = document.rstrip() + "\n\n" + block + "\n"
    BENCHMARKS.write_text(document)
