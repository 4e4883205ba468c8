"""`bertcompress reproduce`: gather the evidence every chosen claim needs (variants built through the variant
cache, per-example scores and probe results cached per teacher, so an interrupted run resumes), judge each
claim, and write REPRODUCTION.md, reproduction.json and plots."""
from __future__ import annotations

import copy
import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch.nn as nn
from rich.console import Console

from bertcompress.core.context import Context
from bertcompress.core.errors import BertCompressError
from bertcompress.core.task_types import EMBEDDING
from bertcompress.data import tasks
from bertcompress.data.assets import cache_dir
from bertcompress.data.batching import encode
from bertcompress.data.tasks import Task
from bertcompress.evaluation.latency import benchmark_many
from bertcompress.files import atomic_file, check_output_path, write_atomically
from bertcompress.io import directory_bytes_of, load_tokenizer
from bertcompress.measure import environment, paired_speedup
from bertcompress.recipe import Recipe
from bertcompress.reproduce import depth_claims, head_claims, quantization_claims, weight_claims
from bertcompress.reproduce.evidence import TEACHER, Evidence
from bertcompress.reproduce.probes import PROBES, ProbeInputs, example_scores, probe_data_sizes
from bertcompress.reproduce.report import write_report
from bertcompress.reproduce.spec import NOT_TESTABLE, Budget, Claim, Finding, Spec
from bertcompress.training.loop import TrainConfig
from bertcompress.training.teacher import Teacher, get_teacher
from bertcompress.variants import Variant, VariantCache

CLAIMS: list[Claim] = sorted([*quantization_claims.CLAIMS, *head_claims.CLAIMS, *weight_claims.CLAIMS,
                              *depth_claims.CLAIMS], key=lambda c: int(c.id))
TASKS = ("rotten_tomatoes", "vitaminc", "squad")


def select_claims(ids: list[str] | None) -> list[Claim]:
    """The claims named (all when none or 'all'), in ID order; an unknown ID is one clear error."""
    if not ids or ids == ["all"]:
        return list(CLAIMS)
    known = {c.id: c for c in CLAIMS}
    unknown = [i for i in ids if i not in known]
    if unknown:
        raise BertCompressError(f"--claims: unknown claim(s) {', '.join(unknown)}; allowed: all or "
                                f"{', '.join(known)}")
    return [c for c in CLAIMS if c.id in set(ids)]


def needed_specs(claims: list[Claim], budget: Budget) -> list[Spec]:
    """Every variant the claims need, once (a start variant before what is cut from it)."""
    found: dict[str, Spec] = {}
    for claim in claims:
        for spec in claim.specs(budget):
            if spec.name in found and found[spec.name] != spec:
                raise BertCompressError(f"two claims define variant {spec.name!r} differently")
            found.setdefault(spec.name, spec)
    return sorted(found.values(), key=lambda s: s.after is not None)


def spec_key(spec: Spec, specs: dict[str, Spec]) -> str:
    steps = [s.to_dict() for s in specs[spec.after].steps] if spec.after else []
    described = {"after": steps, "steps": [s.to_dict() for s in spec.steps]}
    return hashlib.sha256(json.dumps(described, sort_keys=True).encode()).hexdigest()[:16]


class ResultStore:
    """JSON results of one teacher under the cache: an interrupted reproduce skips what is already measured."""

    def __init__(self, teacher_id: str, root: Path | None = None):
        self.root = (root or cache_dir() / "reproduce") / teacher_id

    def get_or_make(self, key: str, make: Callable[[], dict]) -> dict:
        path = self.root / f"{key}.json"
        if path.exists():
            return json.loads(path.read_text())
        result = make()
        self.root.mkdir(parents=True, exist_ok=True)
        with atomic_file(path) as temporary:
            Path(temporary).write_text(json.dumps(result))
        return result


@dataclass
class ReproduceOptions:
    claims: list[Claim]
    tasks: list[str]
    budget: Budget
    model: str = "minilm"
    output: Path = Path("reproduction")
    overwrite: bool = False
    train: dict = field(default_factory=dict)  # TrainConfig fields of the teachers besides the seed


@dataclass
class SeedRun:
    """One seed's teacher, its context, and its variants built on first use."""

    teacher: Teacher
    ctx: Context
    specs: dict[str, Spec]
    console: Console
    built: dict[str, tuple[nn.Module, Path | None, list[dict]]] = field(default_factory=dict)

    def model(self, name: str) -> tuple[nn.Module, Path | None, list[dict]]:
        if name not in self.built:
            self.built[name] = self._build(self.specs[name])
        return self.built[name]

    def _build(self, spec: Spec) -> tuple[nn.Module, Path | None, list[dict]]:
        recipe = Recipe(spec.name, list(spec.steps))
        if spec.after:  # a cheap cut of a built variant: applied in memory, not saved
            start, _, start_reports = self.model(spec.after)
            model = copy.deepcopy(start)
            _, reports = recipe.apply(model, self.ctx)
            return model, None, [*start_reports, *(r.to_dict() for r in reports)]
        cache = VariantCache(self.teacher.path.name)
        built = cache.get_or_build(self.teacher.model, Variant(spec.name, recipe, self.ctx.seed), self.ctx,
                                   self.ctx.tokenizer)
        self.console.print(f"  {spec.name}: {'reused from cache' if built.cached else 'built'}")
        return built.model, built.path, built.reports


def _scored(model: nn.Module, path: Path | None, reports: list[dict], test) -> dict:
    size = directory_bytes_of(path, exclude_tokenizer=True) if path else None
    return {"scores": example_scores(model, test), "bytes": size, "reports": reports}


def gather(task: Task, claims: list[Claim], options: ReproduceOptions, console: Console, tokenizer,
           teacher_for: Callable[[TrainConfig], Teacher] | None = None) -> Evidence:
    """Build, score and probe what `claims` need on every seed of the budget; time the timed variants.
    `teacher_for(train)`: the fine-tuned teacher of that seed (default: fine-tuned from `options.model`, cached)."""
    if task.type == EMBEDDING:
        raise BertCompressError(f"reproduce needs a labelled task; {task.name!r} is an embedding task")
    budget = options.budget
    teacher_for = teacher_for or (lambda train: get_teacher(options.model, task, tokenizer, train))
    specs = {s.name: s for s in needed_specs(claims, budget)}
    probes = sorted({p for c in claims for p in c.probes})
    max_length = TrainConfig(**options.train).max_length
    test_examples = task.split("test")[: budget.eval_examples]
    test = encode(test_examples, tokenizer, max_length)
    analysis = encode(test_examples[: budget.analysis_examples], tokenizer, max_length)
    validation = encode(task.split("validation")[: budget.analysis_examples], tokenizer, max_length)
    evidence = Evidence(budget, task.name, task.type)
    sizes = json.dumps({"test": budget.eval_examples, "length": max_length})
    for index, seed in enumerate(budget.seeds):
        train = TrainConfig(**{**options.train, "seed": seed})
        teacher = teacher_for(train)
        console.print(f"[bold]{task.name}[/], seed {seed}: teacher {'reused' if teacher.cached else 'fine-tuned'}")
        run = SeedRun(teacher, Context(task=task, tokenizer=tokenizer, teacher=teacher.model, train=train, seed=seed),
                      specs, console)
        store = ResultStore(teacher.path.name)
        evidence.results.setdefault(TEACHER, {})[seed] = store.get_or_make(
            _key("teacher", sizes), lambda: _scored(teacher.model, teacher.path, [], test))
        for number, spec in enumerate(specs.values(), 1):
            console.print(f"[{number}/{len(specs)}] {spec.name}")
            evidence.results.setdefault(spec.name, {})[seed] = store.get_or_make(
                _key(spec_key(spec, specs), sizes, seed), lambda: _scored(*run.model(spec.name), test))
        inputs = ProbeInputs(teacher.model, run.ctx, options.model, test, analysis, validation, budget,
                             lambda name: run.model(name)[0])
        for name in probes:
            console.print(f"probe: {name}")
            evidence.probes.setdefault(name, {})[seed] = store.get_or_make(
                _key(name, json.dumps(probe_data_sizes(budget)), seed), lambda: PROBES[name](inputs))
        timed = [s.name for s in specs.values() if s.timed]
        if index == 0 and timed:
            evidence.speed, evidence.threads = _speedups(teacher.model, {n: run.model(n)[0] for n in timed},
                                                         budget.repeats, console)
    return evidence


def _key(*parts) -> str:
    return hashlib.sha256(json.dumps([str(p) for p in parts]).encode()).hexdigest()[:20]


def _speedups(teacher: nn.Module, models: dict[str, nn.Module], repeats: int,
              console: Console) -> tuple[dict, int]:
    """Each model's median paired speedup over the teacher at batch 1 and 32, and the threads used."""
    console.print(f"timing {len(models)} variant(s) against the teacher, interleaved, {repeats} rounds")
    latency = benchmark_many({TEACHER: teacher, **models}, (1, 32), 64, repeats)
    return {name: {f"b{b}": paired_speedup(latency[TEACHER][f"batch_{b}"], latency[name][f"batch_{b}"])["median"]
                   for b in (1, 32)} for name in models}, latency[TEACHER]["threads"]


def judge(claim: Claim, evidence: Evidence) -> Finding:
    """The claim's finding; evidence a judge cannot use (e.g. no low-rank pair left) is reported, not raised."""
    try:
        return claim.judge(evidence)
    except (KeyError, IndexError, ZeroDivisionError, ValueError) as error:
        return Finding(f"could not be judged: {type(error).__name__}: {error}", NOT_TESTABLE)


def reproduce(options: ReproduceOptions, console: Console | None = None) -> Path:
    console = console or Console(stderr=True)
    started = time.perf_counter()
    target = check_output_path(Path(options.output), options.overwrite)
    unknown = [t for t in options.tasks if t not in TASKS]
    if unknown:
        raise BertCompressError(f"--task: unknown task(s) {', '.join(unknown)}; allowed: {', '.join(TASKS)}")
    console.print(f"reproducing {len(options.claims)} claim(s) on {', '.join(options.tasks)} "
                  f"({options.budget.describe()})")
    sections = []
    for task_name in options.tasks:
        evidence = gather(tasks.get(task_name, seed=0), options.claims, options, console,
                          load_tokenizer(options.model))
        findings = {c.id: judge(c, evidence) for c in options.claims}
        sections.append((evidence, findings))
    threads = next((e.threads for e, _ in sections if e.speed), 1)
    context = {"environment": environment(threads), "wall_seconds": round(time.perf_counter() - started, 1),
               "model": options.model}
    target = write_atomically(target, lambda d: write_report(d, options.claims, sections, context),
                              overwrite=options.overwrite, kind="reproduce")
    console.print(f"[green]written:[/] {target / 'REPRODUCTION.md'}")
    return target
