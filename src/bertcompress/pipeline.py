"""The main job: fine-tune a teacher, apply each recipe to a copy, evaluate every variant, write the report."""
from __future__ import annotations

import copy
import json
import platform
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn as nn
from rich.console import Console

from bertcompress.core.context import Context
from bertcompress.data.assets import cache_dir
from bertcompress.data.batching import encode
from bertcompress.data.tasks import Task
from bertcompress.evaluation.latency import benchmark_many, peak_memory
from bertcompress.evaluation.metrics import score
from bertcompress.evaluation.size import counts_by_component, encoder_linear_bytes
from bertcompress.files import check_name, check_output_path, write_atomically
from bertcompress.io import WEIGHTS, directory_bytes_of, load_tokenizer, save
from bertcompress.recipe import Recipe
from bertcompress.reports.plots import write_plots
from bertcompress.reports.tables import variant_table
from bertcompress.training.loop import TrainConfig
from bertcompress.training.teacher import get_teacher

TEACHER = "teacher (fp32)"
MB = 1e6


@dataclass
class RunOptions:
    model: str = "minilm"
    recipes: list[Recipe] = field(default_factory=list)
    output: Path = Path("runs")
    name: str | None = None
    train: TrainConfig = field(default_factory=TrainConfig)
    batch_sizes: tuple[int, ...] = (1, 32)
    seq_len: int = 64
    repeats: int = 20
    threads: int | None = None
    measure_memory: bool = True
    overwrite: bool = False

    def run_name(self, task: Task) -> str:
        recipes = "+".join(r.name for r in self.recipes) or "teacher"
        return check_name(self.name) if self.name else _slug(f"{task.name}-{recipes}-seed{self.train.seed}", keep="-_+.")


def _evaluate_variant(model: nn.Module, valid, test, task: Task, reference: list[int] | None) -> tuple[dict, list]:
    validation, _ = score(model, valid, task.num_labels)
    tested, predictions = score(model, test, task.num_labels, reference)
    counts = counts_by_component(model)
    return {
        "validation_accuracy": validation["accuracy"],
        "test_accuracy": tested["accuracy"],
        "test_macro_f1": tested["macro_f1"],
        "agreement": tested.get("agreement"),
        "parameters_m": counts["parameters"]["total"] / MB,
        "components": counts,
        "encoder_linear_mb": encoder_linear_bytes(model) / MB,
    }, predictions


def run(task: Task, options: RunOptions, console: Console | None = None) -> Path:
    """Run the whole job; the run directory appears only when everything in it is written."""
    console = console or Console(stderr=True)
    started = time.perf_counter()
    target = check_output_path(Path(options.output) / options.run_name(task), options.overwrite)
    tokenizer = load_tokenizer(options.model)
    console.print(f"[bold]task[/] {task.name}: {task.counts()}  [bold]model[/] {options.model}")
    teacher = get_teacher(options.model, task, tokenizer, options.train)
    console.print(f"teacher {'reused from cache' if teacher.cached else 'fine-tuned'}: {teacher.path}")
    valid = encode(task.split("validation"), tokenizer, options.train.max_length)
    test = encode(task.split("test"), tokenizer, options.train.max_length)
    ctx = Context(task=task, tokenizer=tokenizer, teacher=teacher.model, train=options.train, seed=options.train.seed)

    variants: dict[str, nn.Module] = {TEACHER: teacher.model}
    steps: dict[str, list[dict]] = {TEACHER: []}
    for recipe in options.recipes:
        console.print(f"applying recipe [bold]{recipe.name}[/] ({len(recipe.steps)} step(s))")
        model = copy.deepcopy(teacher.model)
        # training steps checkpoint here, so rerunning an interrupted job resumes them
        ctx.workdir = cache_dir() / "checkpoints" / f"{teacher.path.name}-{_slug(recipe.name)}"
        _, reports = recipe.apply(model, ctx)
        shutil.rmtree(ctx.workdir, ignore_errors=True)
        variants[recipe.name], steps[recipe.name] = model, [r.to_dict() for r in reports]

    console.print("evaluating accuracy and size")
    rows, teacher_predictions = [], None
    for name, model in variants.items():
        row, predictions = _evaluate_variant(model, valid, test, task, teacher_predictions)
        teacher_predictions = teacher_predictions or predictions
        rows.append({"variant": name, "is_teacher": name == TEACHER, "steps": steps[name], **row})

    console.print(f"measuring CPU latency (batch {options.batch_sizes}, seq {options.seq_len}, interleaved)")
    latency = benchmark_many(variants, options.batch_sizes, options.seq_len, options.repeats,
                             threads=options.threads)

    def fill(directory: Path) -> None:
        for row in rows:
            variant = row["variant"]
            saved = teacher.path if row["is_teacher"] else save(
                variants[variant], directory / "models" / _slug(variant), tokenizer,
                extra={"task": task.name, "label_names": task.label_names})
            row["size_mb"] = directory_bytes_of(saved, exclude_tokenizer=True) / MB
            row["weights_mb"] = (saved / WEIGHTS).stat().st_size / MB
            row["saved_to"] = "teacher cache" if row["is_teacher"] else str(Path("models") / _slug(variant))
            _add_latency(row, latency[variant], latency[TEACHER], options.batch_sizes)
            if options.measure_memory:
                row.update(peak_memory(saved, batch_size=max(options.batch_sizes), seq_len=options.seq_len,
                                       threads=latency[variant]["threads"]))
        results = {
            "task": {"name": task.name, "counts": task.counts(), "labels": task.label_names},
            "model": options.model, "train": options.train.model_dump(),
            "teacher": {"path": str(teacher.path), "cached": teacher.cached,
                        "train_seconds": round(teacher.train_seconds, 1)},
            "recipes": [r.to_dict() for r in options.recipes],
            "environment": _environment(latency[TEACHER]["threads"]),
            "variants": rows, "latency": latency,
            "wall_seconds": round(time.perf_counter() - started, 1),
        }
        plots = write_plots(rows, directory)
        (directory / "results.json").write_text(json.dumps(results, indent=2))
        (directory / "report.md").write_text(_markdown(results, plots))

    target = write_atomically(target, fill, overwrite=options.overwrite, kind="run")
    console.print(f"[green]report written:[/] {target / 'report.md'}")
    return target


def _slug(name: str, keep: str = "-_") -> str:
    """A single safe path component made from a name."""
    return "".join(c if c.isalnum() or c in keep else "-" for c in name).strip("-.") or "run"


def _add_latency(row: dict, own: dict, teacher: dict, batch_sizes: tuple[int, ...]) -> None:
    for b in batch_sizes:
        row[f"latency_b{b}_ms"] = own[f"batch_{b}"]["median_ms"]
        row[f"throughput_b{b}"] = own[f"batch_{b}"]["throughput"]
        row[f"speedup_b{b}"] = teacher[f"batch_{b}"]["median_ms"] / own[f"batch_{b}"]["median_ms"]


def _environment(threads: int) -> dict:
    return {"torch": torch.__version__, "python": platform.python_version(), "cpu": platform.processor()
            or platform.machine(), "threads": threads, "quantized_engine": torch.backends.quantized.engine}


def _markdown(results: dict, plots: list[str]) -> str:
    task, env = results["task"], results["environment"]
    lines = [
        f"# bertcompress report: {task['name']}",
        "",
        f"- model: `{results['model']}`; task splits: {task['counts']}; labels: {task['labels']}",
        f"- teacher: {'reused from cache' if results['teacher']['cached'] else 'fine-tuned in this run'}"
        f" ({results['teacher']['train_seconds']} s of training); hyperparameters: `{json.dumps(results['train'])}`",
        f"- latency: CPU, {env['threads']} thread(s), torch {env['torch']}, sequence length "
        f"{next(iter(results['latency'].values()))['seq_len']}, median of interleaved repeats; "
        "speedups are ratios to the teacher measured in the same run",
        f"- wall time: {results['wall_seconds']} s",
        "",
        variant_table(results["variants"]),
        "",
    ]
    for row in results["variants"]:
        for step in row["steps"]:
            lines.append(f"- **{row['variant']}** / `{step['method']}`: {step['modules_changed']} modules changed, "
                         f"{step['bytes_before'] / MB:.1f} MB -> {step['bytes_after'] / MB:.1f} MB of their weights. "
                         + " ".join(step["notes"]))
    lines += ["", *[f"![{p}]({p})" for p in plots], ""]
    return "\n".join(lines)
