"""One trial of the search: build the composition a choice of knobs stands for (cached by its recipe, so a
resumed or repeated trial costs nothing), run it in its runtime, and score it on the validation split
only, with its speed measured against the teacher in the same call and its size on disk."""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch.nn as nn

from bertcompress.core.context import Context
from bertcompress.core.task_types import EMBEDDING
from bertcompress.data.batching import Encoded, encode
from bertcompress.data.similarity import ScoredPair
from bertcompress.data.tasks import Task
from bertcompress.evaluation.latency import benchmark_many
from bertcompress.evaluation.metrics import score
from bertcompress.io import directory_bytes_of
from bertcompress.measure import MB, paired_speedup
from bertcompress.runtimes import OPENVINO_FILE, model_bytes
from bertcompress.search.space import SearchSpace, describe, recipe_for, runtime_for
from bertcompress.variants import Variant, VariantCache, slug

CALIBRATION_TEXTS = 300


@dataclass
class TrialContext:
    """What every trial needs, built once per worker."""

    task: Task
    tokenizer: Any
    teacher: nn.Module
    teacher_path: Path
    ctx: Context
    cache: VariantCache
    space: SearchSpace
    depth: int
    objective: str
    batch_size: int = 32
    seq_len: int = 64
    repeats: int = 5
    teacher_bytes: int = 0
    max_drop: float = 1.0  # points of the task's score below the teacher's, on validation
    validation: Encoded | None = None
    validation_reference: Any = None
    teacher_score: float = 0.0
    validation_seconds: float = 0.0  # one scoring pass of the teacher: the least a trial costs
    exports: Path = field(default_factory=lambda: Path("exports"))

    def __post_init__(self):
        self.validation = encode(self.task.split("validation"), self.tokenizer, self.ctx.train.max_length)
        self.validation_reference = self.reference(self.validation)
        started = time.perf_counter()
        self.teacher_score = self.task_score(self.teacher, self.validation, self.validation_reference)
        self.validation_seconds = time.perf_counter() - started
        self.teacher_bytes = directory_bytes_of(self.teacher_path, exclude_tokenizer=True)

    def reference(self, data: Encoded) -> Any:
        """The teacher's vectors on `data` for an embedding task (its agreement score needs them), else None."""
        return score(self.teacher, data, self.task.num_labels)[1] if self.task.type == EMBEDDING else None

    def task_score(self, model: nn.Module, data: Encoded, reference: Any) -> float:
        """The task's own score (accuracy, SQuAD F1, entity F1; for embedders Spearman's rho on scored pairs
        or 10-NN accuracy on labelled texts), or for an embedder of unlabelled texts its mean cosine to the
        teacher's vectors (`reference`): what the budget reads (see `score_name`)."""
        found = score(model, data, self.task.num_labels, reference, label_names=self.task.label_names)[0]
        return found["accuracy"] if found["accuracy"] is not None else found["mean_cosine"]


def score_name(task: Task) -> str:
    """What `TrialContext.task_score` measures on this task, in words."""
    if task.type != EMBEDDING:
        return {"question_answering": "F1", "token_classification": "entity F1"}.get(task.type, "accuracy")
    if isinstance(next(iter(task.split("validation")), None), ScoredPair):
        return "Spearman"
    return "10-NN accuracy" if task.label_names else "mean cosine to the teacher"


def candidate(trials: TrialContext, params: dict[str, Any], trained: bool = True
              ) -> tuple[str, nn.Module, Path, dict]:
    """The trial's model in its runtime: (name, runnable model, where it is saved, its recipe as a dict);
    `trained=False`: its untrained twin of the same shapes (see `recipe_for`)."""
    recipe = recipe_for(params, trials.depth)
    if not trained and recipe_for(params, trials.depth, trained=False).steps != recipe.steps:
        recipe = recipe_for(params, trials.depth, trained=False)  # else nothing trains: the twin is the model
    variant = Variant(recipe.name, recipe, trials.ctx.seed)
    built = trials.cache.get_or_build(trials.teacher, variant, trials.ctx, trials.tokenizer)
    runtime = runtime_for(params)
    if runtime == "torch":
        return recipe.name, built.model, built.path, recipe.to_dict()
    int8 = "static" if runtime == "openvino-static-int8" else None
    return (recipe.name, *openvino_export(trials, built.path, recipe.name, int8), recipe.to_dict())


def openvino_export(trials: TrialContext, source: Path, name: str, int8: str | None = "static"
                    ) -> tuple[nn.Module, Path]:
    """The variant exported to OpenVINO, cached beside the variant: with `int8="static"` quantized by NNCF;
    without, as it is (a model with trained static ranges is int8 already)."""
    from bertcompress.export import ExportSettings, export_model
    from bertcompress.runtimes.openvino import OpenVinoModel

    target = trials.exports / f"{slug(name)}-{source.name}"
    if not (target / OPENVINO_FILE).exists():
        # the search scores the quantized model itself: a static int8 that loses accuracy is a slow-but-
        # valid point for the budget to judge, not an error
        settings = ExportSettings(max_length=trials.ctx.train.max_length, int8=int8, overwrite=True,
                                  enforce=False)
        export_model(source, "openvino", target, trials.task.split("validation"), settings,
                     trials.task.split("train")[:CALIBRATION_TEXTS])
    return OpenVinoModel(target / OPENVINO_FILE, trials.teacher.config), target


def measure_shape(trials: TrialContext, params: dict[str, Any]) -> dict[str, Any]:
    """Speedup over the teacher at the search's batch size (timed in one call with it) and size on disk of
    the choice's untrained twin: the trained model's figures, known before any training."""
    started = time.perf_counter()
    name, model, path, _ = candidate(trials, params, trained=False)
    timed = benchmark_many({"teacher": trials.teacher, name: model}, (trials.batch_size,), trials.seq_len,
                           trials.repeats)
    speedup = paired_speedup(timed["teacher"][f"batch_{trials.batch_size}"],
                             timed[name][f"batch_{trials.batch_size}"])["median"]
    size = model_bytes(path)
    return {"shape": describe(params), "speedup": speedup, "size_mb": size / MB,
            "size_ratio": trials.teacher_bytes / size, "seconds": round(time.perf_counter() - started, 1)}


def evaluate(trials: TrialContext, params: dict[str, Any], shape: dict[str, Any]) -> dict[str, Any]:
    """Validation score (`score_name`) of the trained model; its speed and size are its shape's."""
    started = time.perf_counter()
    name, model, path, recipe = candidate(trials, params)
    accuracy = trials.task_score(model, trials.validation, trials.validation_reference)
    return {"name": name, "params": params, "recipe": recipe, "runtime": runtime_for(params), "path": str(path),
            "val_accuracy": accuracy, "speedup": shape["speedup"], "size_mb": shape["size_mb"],
            "size_ratio": shape["size_ratio"], "seconds": round(time.perf_counter() - started + shape["seconds"], 1),
            "worker": os.getpid()}


def hopeless(trials: TrialContext, shape: dict[str, Any], results: list[dict[str, Any]]) -> str | None:
    """Why a choice cannot be chosen, whatever its training makes of its accuracy: its shape is no better on
    the objective than a model already within the budget. None when it still can."""
    from bertcompress.search.frontier import chosen

    key = objective_key(trials.objective)
    best = chosen(results, key, trials.teacher_score, trials.max_drop)
    if best is None or shape[key] > best[key]:
        return None
    return (f"hopeless: its shape {shape['shape']} reaches {shape[key]:.2f}x, and {best['name']} is already "
            f"{best[key]:.2f}x within the budget")


def objective_key(objective: str) -> str:
    return "speedup" if objective == "latency" else "size_ratio"


def objective_value(result: dict[str, Any], objective: str) -> float:
    return result[objective_key(objective)]
