"""The main job: check the recipes, fine-tune a teacher, build each variant (resumable), measure them all in
one run, write the report. Building and measuring go through `variants` and `measure`, as everywhere."""
from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch.nn as nn
from rich.console import Console

from bertcompress.core.context import Context
from bertcompress.core.errors import first_line
from bertcompress.data.tasks import Task
from bertcompress.files import check_name, check_output_path, write_atomically
from bertcompress.io import load, load_tokenizer
from bertcompress.measure import MeasureOptions, environment, measure
from bertcompress.recipe import Recipe
from bertcompress.reports.plots import write_plots
from bertcompress.reports.run_report import run_markdown
from bertcompress.runtimes import open_model, require_runtime
from bertcompress.training.loop import TrainConfig
from bertcompress.training.teacher import get_teacher
from bertcompress.variants import Variant, VariantCache, build_all, check_recipes, slug

TEACHER = "teacher (fp32)"


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
    runtimes: tuple[str, ...] = ("torch",)  # every model is also exported to each other runtime and timed there
    verify_examples: int = 256  # test texts each export is verified on before it is measured

    def run_name(self, task: Task) -> str:
        recipes = "+".join(r.name for r in self.recipes) or "teacher"
        return check_name(self.name) if self.name else slug(f"{task.name}-{recipes}-seed{self.train.seed}", "-_+.")

    def measuring(self) -> MeasureOptions:
        return MeasureOptions(self.batch_sizes, self.seq_len, self.train.max_length, self.repeats, self.threads,
                              self.measure_memory)


def export_all(saved: dict[str, Path], options: RunOptions, task: Task, root: Path, console: Console
               ) -> dict[tuple[str, str], nn.Module]:
    """Each model exported to each runtime but torch, verified on test texts before it is written, cached
    beside the teacher by the source's own cache name, and opened there (with the run's threads). One that
    a runtime cannot hold or that does not verify is left out with a line saying why; the others are
    measured."""
    from bertcompress.export import ExportSettings, export_model
    from bertcompress.runtimes import export_record

    formats = {"onnxruntime": "onnx", "openvino": "openvino"}
    examples = task.split("test")[: options.verify_examples]
    exported = {}
    for runtime in (r for r in options.runtimes if r != "torch"):
        for name, source in saved.items():
            target = root / f"{source.name}-{runtime}"
            try:
                if export_record(target) is None:
                    export_model(source, formats[runtime], target, examples,
                                 ExportSettings(max_length=options.train.max_length, overwrite=True))
                exported[(name, runtime)] = open_model(target, threads=options.threads)
            except Exception as error:  # noqa: BLE001 - a runtime's own tool failing must not lose the run
                console.print(f"[yellow]{name} in {runtime} left out:[/] {first_line(error)}")
    return exported


def run(task: Task, options: RunOptions, console: Console | None = None) -> Path:
    """Run the whole job; the run directory appears only when everything in it is written."""
    console = console or Console(stderr=True)
    started = time.perf_counter()
    target = check_output_path(Path(options.output) / options.run_name(task), options.overwrite)
    for runtime in options.runtimes:  # a runtime that is not installed fails before any training
        require_runtime(runtime)
    tokenizer = load_tokenizer(options.model)
    console.print(f"[bold]task[/] {task.name}: {task.counts()}  [bold]model[/] {options.model}")
    console.print(f"checking {len(options.recipes)} recipe(s) on the model before any training")
    start = load(options.model, num_labels=task.num_labels, task_type=task.type)
    check_recipes(options.recipes, start, task, tokenizer)
    teacher = get_teacher(options.model, task, tokenizer, options.train)
    console.print(f"teacher {'reused from cache' if teacher.cached else 'fine-tuned'}: {teacher.path}")

    ctx = Context(task=task, tokenizer=tokenizer, teacher=teacher.model, train=options.train, seed=options.train.seed)
    variants = [Variant(r.name, r, options.train.seed) for r in options.recipes]
    built = build_all(teacher.model, variants, ctx, VariantCache(teacher.path.name), tokenizer, console.print)

    console.print(f"measuring accuracy, size and CPU latency (batch {options.batch_sizes}, seq {options.seq_len}, "
                  "interleaved)")
    models = {TEACHER: teacher.model, **{name: b.model for name, b in built.items()}}
    saved = {TEACHER: teacher.path, **{name: b.path for name, b in built.items()}}
    exported = export_all(saved, options, task, teacher.path.parent.parent / "exports", console)
    sources = {name: (name, "torch") for name in saved}  # row name -> (the model it runs, runtime)
    for (name, runtime), model in exported.items():
        models[f"{name} [{runtime}]"], saved[f"{name} [{runtime}]"] = model, model.path.parent
        sources[f"{name} [{runtime}]"] = (name, runtime)
    rows, latency = measure(models, saved, task, tokenizer, options.measuring())
    for row in rows:
        source, row["runtime"] = sources[row["variant"]]
        row["is_teacher"] = row["variant"] == TEACHER
        row["steps"] = [] if source == TEACHER else built[source].reports
        row["saved_to"] = "teacher cache" if row["is_teacher"] else str(Path(
            "models" if row["runtime"] == "torch" else "exports") / slug(row["variant"], "-_+."))

    def fill(directory: Path) -> None:
        for name, variant in built.items():
            shutil.copytree(variant.path, directory / "models" / slug(name, "-_+."))
        for (name, runtime), model in exported.items():
            shutil.copytree(model.path.parent, directory / "exports" / slug(f"{name} [{runtime}]", "-_+."))
        results = {
            "task": {"name": task.name, "type": task.type, "counts": task.counts(), "labels": task.label_names,
                     "validation_is_test": bool(task.meta.get("validation_is_test"))},
            "model": options.model, "train": options.train.model_dump(),
            "teacher": {"path": str(teacher.path), "cached": teacher.cached,
                        "train_seconds": round(teacher.train_seconds, 1)},
            "recipes": [r.to_dict() for r in options.recipes],
            "environment": environment(latency[TEACHER]["threads"]),
            "variants": rows, "latency": latency,
            "wall_seconds": round(time.perf_counter() - started, 1),
        }
        plots = write_plots(rows, directory, task.type)
        (directory / "results.json").write_text(json.dumps(results, indent=2))
        (directory / "report.md").write_text(run_markdown(results, plots))

    target = write_atomically(target, fill, overwrite=options.overwrite, kind="run")
    console.print(f"[green]report written:[/] {target / 'report.md'}")
    return target
