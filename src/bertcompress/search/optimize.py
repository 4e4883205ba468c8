"""`bertcompress optimize`: search compositions of methods for the fastest (or smallest) model within an
accuracy budget, on validation data, measured on this CPU; write the frontier and save its models.

Trials live in an Optuna study (see study.py): an interrupted search resumes, and `workers` processes share
the study. Each trial's model is cached by its recipe (variants.VariantCache)."""
from __future__ import annotations

import json
import math
import multiprocessing
import os
import shutil
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
from rich.console import Console

from bertcompress.core.context import Context
from bertcompress.core.errors import BertCompressError, first_line
from bertcompress.data.tasks import Task
from bertcompress.evaluation.latency import benchmark_many
from bertcompress.data.batching import encode
from bertcompress.files import check_output_path, write_atomically
from bertcompress.hardware import cpu_features, cpu_name
from bertcompress.io import load, load_tokenizer
from bertcompress.measure import latency_fields
from bertcompress.reports.plots import scatter
from bertcompress.runtimes import model_bytes, peers
from bertcompress.search import frontier as fr
from bertcompress.search.space import OBJECTIVES, SearchSpace, describe, parse_overrides, recipe_for
from bertcompress.search.study import open_storage, open_study, study_key
from bertcompress.search.trials import (TrialContext, evaluate, hopeless, measure_shape, objective_key,
                                        objective_value, score_name)
from bertcompress.training.loop import TrainConfig
from bertcompress.training.teacher import get_teacher
from bertcompress.variants import VariantCache, check_recipes, slug

TEACHER = "teacher (fp32, torch)"
PEER_NNCF = "peer: OpenVINO + NNCF int8 (teacher)"
# the other paths a user would pick instead of searching, on the same teacher, no training: (name, runtime, builder)
PEERS = (("peer: torch bf16", "torch-bf16", peers.torch_bf16),
         ("peer: torch quantize_dynamic int8", "torch-dynamic-int8", peers.torch_dynamic_int8),
         ("peer: ONNX Runtime quantize_dynamic int8", "onnxruntime-dynamic-int8", peers.ort_dynamic_int8),
         ("peer: OpenVINO bf16", "openvino-bf16", peers.openvino("bf16")))


@dataclass
class OptimizeOptions:
    model: str = "minilm"
    max_drop: float = 1.0  # accuracy points below the teacher, on validation
    objective: str = "latency"
    batch_size: int = 32
    time_budget: float | None = None  # seconds of search, all workers together
    trials: int | None = None
    workers: int = 1
    storage: str | None = None
    output: Path = Path("runs")
    name: str | None = None
    overwrite: bool = False
    train: TrainConfig = field(default_factory=TrainConfig)
    space: SearchSpace | None = None
    quick: bool = False  # SearchSpace.quick instead of the full space
    space_overrides: tuple[str, ...] = ()  # 'knob=v1,v2' texts replacing knobs of the full or quick space
    trial_repeats: int = 5
    repeats: int = 20  # the final measurement of the frontier
    peers: bool = True
    unlabelled: bool = False  # distillation steps also learn from the task's unlabelled text (teacher-labelled)

    def check(self) -> None:
        if not self.max_drop >= 0:
            raise BertCompressError(f"--max-drop {self.max_drop:g} must be zero or more (accuracy points)")
        if self.objective not in OBJECTIVES:
            raise BertCompressError(f"--objective {self.objective!r} is not offered; use one of "
                                    f"{', '.join(OBJECTIVES)}")
        if self.time_budget is not None and self.time_budget <= 0:
            raise BertCompressError("--time-budget must be positive")
        if self.workers < 1:
            raise BertCompressError("--workers must be at least 1")
        if self.trials is None and self.time_budget is None:
            raise BertCompressError("give --trials, --time-budget or both, so the search knows when to stop")
        parse_overrides(self.space_overrides)

    def run_name(self, task: Task) -> str:
        return self.name or slug(f"optimize-{task.name}-{self.objective}-drop{self.max_drop:g}-seed{self.train.seed}",
                                 "-_.")

    def key(self, task: Task, space: SearchSpace) -> str:
        return study_key({"model": self.model, "task": task.fingerprint(), "train": self.train.model_dump(
            exclude={"checkpoint_every"}), "space": space.__dict__, "objective": self.objective,
            "batch": self.batch_size, "unlabelled": unlabelled_key(task) if self.unlabelled else None})


def optimize(task: Task, options: OptimizeOptions, console: Console | None = None) -> Path:
    """Search, then measure the frontier and write `runs/<name>/` (appears only when complete)."""
    console = console or Console(stderr=True)
    options.check()
    if options.unlabelled and not task.unlabelled:
        raise BertCompressError(f"--unlabelled: task {task.name!r} has no unlabelled text; give --unlabelled-file")
    target = check_output_path(Path(options.output) / options.run_name(task), options.overwrite)
    tokenizer = load_tokenizer(options.model)
    base = load(options.model, num_labels=task.num_labels, task_type=task.type)
    depth = model_depth(base)
    space = default_space(options, depth)
    space.check(base)
    key = options.key(task, space)
    storage = open_storage(options.storage, key)  # an unreachable database fails before any training
    check_recipes([recipe_for(p, depth) for p in corners(space, depth)], base, task, tokenizer)
    teacher = get_teacher(options.model, task, tokenizer, options.train)
    trials = trial_context(task, options, space, teacher, tokenizer, depth)
    teacher_val = trials.teacher_score
    _check_budget(options, trials.validation_seconds)
    console.print(f"teacher validation {score_name(task)} {100 * teacher_val:.2f}; searching {space.choices(depth)}")
    study = open_study(storage, key, options.train.seed)
    if not study.trials:
        for params in corners(space, depth):
            study.enqueue_trial(params)
    started = time.perf_counter()
    _search(study, trials, options, key, task, teacher_val, console)
    results = [t.user_attrs["result"] for t in study.trials if "result" in t.user_attrs]
    if not results:
        raise BertCompressError("no trial completed within the budget; give more --time-budget or --trials")
    hopeless_count = sum(t.user_attrs.get("error", "").startswith("hopeless") for t in study.trials)
    return _write(target, task, options, trials, results, teacher_val, time.perf_counter() - started, console,
                  hopeless_count)


def default_space(options: OptimizeOptions, depth: int) -> SearchSpace:
    if options.space is not None:
        return options.space
    base = (SearchSpace.quick if options.quick else SearchSpace.for_objective)(options.objective, depth)
    return base.overridden(options.space_overrides)


def model_depth(model) -> int:
    from bertcompress.arch.spec import get_spec

    return len(get_spec(model).layer_list(model))


def corners(space: SearchSpace, depth: int) -> list[dict]:
    """Trials every search starts with, the ends a user would try by hand: the teacher's depth unpruned with
    each quantization (no training: cheap), then the shallowest student unpruned with the first."""
    choices = space.choices(depth)
    first = {name: values[0] for name, values in choices.items()}
    shallow = {**first, "layers": min(choices["layers"]), "head_fractions": min(choices["head_fractions"]),
               "ffn_fractions": min(choices["ffn_fractions"])}
    deep = [{**shallow, "layers": max(choices["layers"]), "quantization": q} for q in choices["quantization"]]
    return deep + ([shallow] if shallow not in deep else [])


def unlabelled_key(task: Task) -> str:
    return study_key({"texts": [e.text for e in task.unlabelled]})


def trial_context(task: Task, options: OptimizeOptions, space: SearchSpace, teacher, tokenizer,
                  depth: int) -> TrialContext:
    unlabelled = task.unlabelled if options.unlabelled else []
    ctx = Context(task=task, tokenizer=tokenizer, teacher=teacher.model, train=options.train,
                  seed=options.train.seed, unlabelled=unlabelled)
    # variants trained with the extra text are other models: cached apart
    cache_id = teacher.path.name + (f"+unlabelled-{unlabelled_key(task)}" if unlabelled else "")
    return TrialContext(task=task, tokenizer=tokenizer, teacher=teacher.model, teacher_path=teacher.path, ctx=ctx,
                        cache=VariantCache(cache_id), space=space, depth=depth, objective=options.objective,
                        batch_size=options.batch_size, seq_len=options.train.max_length,
                        repeats=options.trial_repeats, max_drop=options.max_drop,
                        exports=teacher.path.parent.parent / "exports")


def _check_budget(options: OptimizeOptions, evaluation_seconds: float) -> None:
    """A trial at least evaluates a model on the validation split (and times it): refuse a budget below."""
    least = 2 * evaluation_seconds
    if options.time_budget is not None and options.time_budget < least:
        raise BertCompressError(f"--time-budget {options.time_budget:g}s is too small for one trial here "
                                f"(at least {least:.0f}s: one validation pass takes {evaluation_seconds:.0f}s)")


def _objective(trials: TrialContext):
    import optuna

    def not_a_candidate(trial, reason: str):
        trial.set_user_attr("error", reason)
        return optuna.TrialPruned(reason)

    def objective(trial):
        trial.set_user_attr("worker", os.getpid())
        params = trials.space.suggest(trial, trials.depth)
        earlier = _result_of_same_choice(trial, params)
        if earlier is not None:  # the sampler repeated a choice: its model and figures are already known
            earlier = {**earlier, "worker": os.getpid(), "reused": True}
            trial.set_user_attr("result", earlier)
            return earlier["val_accuracy"], objective_value(earlier, trials.objective)
        others = trial.study.get_trials(deepcopy=False)
        try:
            # cheap signal first: the shape's speed and size, measured once per shape, before any training
            shape = _shape_measured(others, describe(params)) or measure_shape(trials, params)
            trial.set_user_attr("shape", shape)
            reason = hopeless(trials, shape, [t.user_attrs["result"] for t in others if "result" in t.user_attrs])
            if reason:
                raise not_a_candidate(trial, reason)
            result = evaluate(trials, params, shape)
        except BertCompressError as error:  # e.g. a static int8 export that does not verify: not a candidate
            raise not_a_candidate(trial, str(error)) from None
        trial.set_user_attr("result", result)
        return result["val_accuracy"], objective_value(result, trials.objective)
    return objective


def _result_of_same_choice(trial, params: dict) -> dict | None:
    for other in trial.study.get_trials(deepcopy=False):
        if other.number != trial.number and other.user_attrs.get("result", {}).get("params") == params:
            return other.user_attrs["result"]
    return None


def _shape_measured(trials: list, shape: str) -> dict | None:
    """A shape's figures measured by an earlier trial of this study (any worker)."""
    return next((t.user_attrs["shape"] for t in trials if t.user_attrs.get("shape", {}).get("shape") == shape), None)


def _stop_when_explored(trials: TrialContext):
    """Stop the study once every choice of the space is settled: finished with a result or refused, or stopped
    as hopeless and still hopeless under this run's budget (a study resumed with a stricter --max-drop
    trains the choices a looser one stopped). The sampler would only repeat them."""
    total = math.prod(len(values) for values in trials.space.choices(trials.depth).values())

    def callback(study, trial) -> None:
        finished = [t for t in study.get_trials(deepcopy=False) if t.state.is_finished() and t.params]
        results = [t.user_attrs["result"] for t in finished if "result" in t.user_attrs]

        def settled(t) -> bool:
            if not t.user_attrs.get("error", "").startswith("hopeless"):
                return True
            return hopeless(trials, t.user_attrs["shape"], results) is not None

        if len({tuple(sorted(t.params.items())) for t in finished if settled(t)}) >= total:
            study.stop()
    return callback


def _search(study, trials: TrialContext, options: OptimizeOptions, key: str, task: Task, teacher_val: float,
            console: Console) -> None:
    """Run the main worker here and the others as processes on the same study, until the budget ends."""
    from optuna.study import MaxTrialsCallback
    from optuna.trial import TrialState

    callbacks = [_progress(console, teacher_val, options, score_name(task)),
                 _stop_when_explored(trials)]
    if options.trials is not None:
        callbacks.append(MaxTrialsCallback(options.trials, states=(TrialState.COMPLETE, TrialState.PRUNED)))
    threads = max(1, (os.cpu_count() or 1) // options.workers)
    helpers = [multiprocessing.get_context("spawn").Process(
        target=worker, args=(task, replace(options, workers=1), key, threads)) for _ in range(options.workers - 1)]
    for process in helpers:
        process.start()
    torch.set_num_threads(threads)
    try:
        study.optimize(_objective(trials), n_trials=None if options.time_budget else options.trials,
                       timeout=options.time_budget, callbacks=callbacks, catch=())
    finally:
        for process in helpers:
            process.join()


def worker(task: Task, options: OptimizeOptions, key: str, threads: int) -> None:
    """A helper process: the same study, its own share of the trials (spawned, so it rebuilds its context)."""
    from optuna.study import MaxTrialsCallback
    from optuna.trial import TrialState

    os.environ["BERTCOMPRESS_QUIET"] = "1"
    torch.set_num_threads(threads)
    tokenizer = load_tokenizer(options.model)
    teacher = get_teacher(options.model, task, tokenizer, options.train)
    space = default_space(options, model_depth(teacher.model))
    trials = trial_context(task, options, space, teacher, tokenizer, model_depth(teacher.model))
    study = open_study(open_storage(options.storage, key), key, options.train.seed + 1)
    callbacks = [MaxTrialsCallback(options.trials, states=(TrialState.COMPLETE, TrialState.PRUNED))] \
        if options.trials is not None else []
    callbacks.append(_stop_when_explored(trials))
    study.optimize(_objective(trials), n_trials=None if options.time_budget else options.trials,
                   timeout=options.time_budget, callbacks=callbacks)


def _progress(console: Console, teacher_val: float, options: OptimizeOptions, scored_by: str):
    started = time.perf_counter()
    key = objective_key(options.objective)

    def report(study, trial) -> None:
        results = [t.user_attrs["result"] for t in study.trials if "result" in t.user_attrs]
        best = fr.chosen(results, key, teacher_val, options.max_drop)
        left = "" if options.time_budget is None else \
            f", {max(options.time_budget - (time.perf_counter() - started), 0) / 60:.0f} min left"
        best_text = f"{best['name']} ({best[key]:.2f}x)" if best else "none within the budget yet"
        result = trial.user_attrs.get("result")
        found = (f"{result['name']} val {scored_by} {100 * result['val_accuracy']:.2f} {key} {result[key]:.2f}x"
                 if result
                 else f"not a candidate ({trial.user_attrs.get('error', trial.state.name.lower())})")
        console.print(f"trial {trial.number + 1}: {found}; best within {options.max_drop:g} points: {best_text}{left}")
    return report


def _write(target: Path, task: Task, options: OptimizeOptions, trials: TrialContext, results: list[dict],
           teacher_val: float, search_seconds: float, console: Console, hopeless_count: int = 0) -> Path:
    key = objective_key(options.objective)
    front = fr.pareto(results, key)
    pick = fr.chosen(results, key, teacher_val, options.max_drop)
    console.print(f"measuring the frontier ({len(front)} models) beside the teacher"
                  f"{' and the peers' if options.peers else ''} in one run")
    rows, saved = _measure_frontier(front, trials, options, console)
    summary = {"task": task.name, "objective": options.objective, "max_drop": options.max_drop,
               "trials": len(results), "stopped_before_training": hopeless_count, "search_seconds": search_seconds,
               "chosen": pick["name"] if pick else None,
               "cpu": rows[0]["cpu"], "score": score_name(task), "space": trials.space.choices(trials.depth),
               "unlabelled": options.unlabelled}

    def fill(directory: Path) -> None:
        for name, path in saved.items():
            shutil.copytree(path, directory / "models" / slug(name, "-_+."))  # frontier names are path-safe
        (directory / "frontier.json").write_text(json.dumps(rows, indent=2))
        (directory / "trials.json").write_text(json.dumps({"summary": summary, "trials": results}, indent=2))
        plotted = [{"variant": r["name"], "test_accuracy": r["test_accuracy_mean"], "is_teacher": r["kind"] == "teacher",
                    "speedup_b32": r["speedup_b32"], "size_mb": r["size_mb"]} for r in rows]
        y = {"y_label": f"test {summary['score']} (x100)"}
        scatter(plotted, "speedup_b32", "speedup over the fp32 teacher, batch 32", directory / "accuracy_vs_speedup.png",
                f"Frontier: {summary['score']} vs speed", **y)
        scatter(plotted, "size_mb", "size on disk (MB)", directory / "accuracy_vs_size.png",
                f"Frontier: {summary['score']} vs size", **y)
        (directory / "frontier.md").write_text(fr.markdown(rows, summary))

    target = write_atomically(target, fill, overwrite=options.overwrite, kind="optimize")
    console.print(f"[green]frontier written:[/] {target / 'frontier.md'}; chosen: {summary['chosen']}")
    return target


def _measure_frontier(front: list[dict], trials: TrialContext, options: OptimizeOptions,
                      console: Console) -> tuple[list[dict], dict[str, Path]]:
    """Test and validation accuracy, batch 1 and 32 latency interleaved, size: teacher, frontier, peers."""
    from bertcompress.search.trials import candidate

    models, kinds, saved, recipes, runtimes = {TEACHER: trials.teacher}, {TEACHER: "teacher"}, {}, {}, {}
    sizes = {TEACHER: trials.teacher_bytes}
    for result in front:
        name, model, path, recipe = candidate(trials, result["params"])
        models[name], kinds[name], saved[name], recipes[name], runtimes[name] = model, "ours", path, recipe, \
            result["runtime"]
        sizes[name] = model_bytes(path)
    if options.peers:
        for name, runtime, model, size in peer_models(trials, console):
            models[name], kinds[name], runtimes[name], sizes[name] = model, "peer", runtime, size
    timed = benchmark_many(models, (1, 32), trials.seq_len, options.repeats)
    cpu = {"name": cpu_name(), "features": cpu_features()}
    test = encode(trials.task.split("test"), trials.tokenizer, trials.ctx.train.max_length)
    test_reference = trials.reference(test)
    measured = {}
    for name, model in models.items():
        measured[name] = {"validation_accuracy": trials.task_score(model, trials.validation,
                                                                   trials.validation_reference),
                          "test_accuracy": trials.task_score(model, test, test_reference),
                          "size_mb": sizes[name] / 1e6, "seed": trials.ctx.seed,
                          **latency_fields(timed[name], timed[TEACHER], (1, 32))}
    rows = [fr.frontier_row(name, kinds[name], measured[name], measured[TEACHER], cpu, recipes.get(name),
                            runtimes.get(name, "torch")) for name in models]
    return rows, saved


def peer_models(trials: TrialContext, console: Console) -> list[tuple[str, str, object, int]]:
    """(name, runtime, runnable model, bytes on disk) of each peer path on the teacher. A peer that cannot be
    built here (a runtime that does not take this model) is left out with a line saying why."""
    from bertcompress.search.trials import openvino_export

    def nncf(model, path):  # what a user gets with no training: OpenVINO + NNCF post-training int8
        return openvino_export(trials, trials.teacher_path, "teacher")

    built = []
    for name, runtime, build in (*PEERS, (PEER_NNCF, "openvino-static-int8", nncf)):
        try:
            model, path = build(trials.teacher, trials.exports / "peers" / slug(name))
        except Exception as error:  # noqa: BLE001 - a peer's own tool failing must not lose the search
            console.print(f"[yellow]{name} left out:[/] {type(error).__name__}: {first_line(error)[:160]}")
            continue
        built.append((name, runtime, model, model_bytes(path) if path.is_dir() else path.stat().st_size))
    return built
