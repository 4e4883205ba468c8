"""Named variants of a teacher: check every recipe on the model before any work, build each variant once
(cached by teacher, recipe and seed, so an interrupted job resumes variant by variant), then measure any set
of models in one run. `bertcompress run`, the benchmarks and the search all go through here."""
from __future__ import annotations

import copy
import hashlib
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import torch.nn as nn

from bertcompress.core.context import Context
from bertcompress.core.errors import BertCompressError
from bertcompress.data.assets import cache_dir
from bertcompress.data.tasks import Task
from bertcompress.io import MANIFEST, load, save
from bertcompress.recipe import Recipe
from bertcompress.training.loop import TrainConfig


@dataclass(frozen=True)
class Variant:
    """A recipe applied to a copy of the teacher; `seed` drives the methods' own training and sampling."""

    name: str
    recipe: Recipe
    seed: int = 0

    def key(self, teacher_id: str) -> str:
        described = {"teacher": teacher_id, "steps": [s.to_dict() for s in self.recipe.steps], "seed": self.seed}
        return hashlib.sha256(json.dumps(described, sort_keys=True).encode()).hexdigest()[:16]


@dataclass
class Built:
    name: str
    model: nn.Module
    path: Path  # the saved variant (cache)
    reports: list[dict] = field(default_factory=list)
    cached: bool = False


def slug(name: str, keep: str = "-_") -> str:
    """A single safe path component made from a name."""
    return "".join(c if c.isalnum() or c in keep else "-" for c in name).strip("-.") or "variant"


class VariantCache:
    """Saved variants of one teacher under the cache; a variant is rebuilt only when its recipe changes."""

    def __init__(self, teacher_id: str, root: Path | None = None):
        self.teacher_id = teacher_id
        self.root = Path(root) if root else cache_dir() / "variants" / slug(teacher_id)

    def path(self, variant: Variant) -> Path:
        return self.root / f"{slug(variant.name)}-{variant.key(self.teacher_id)}"

    def get_or_build(self, teacher: nn.Module, variant: Variant, ctx: Context, tokenizer=None) -> Built:
        path = self.path(variant)
        if (path / MANIFEST).exists():
            manifest = json.loads((path / MANIFEST).read_text())
            return Built(variant.name, load(path), path, manifest.get("variant", {}).get("reports", []), True)
        model = copy.deepcopy(teacher)
        checkpoints = cache_dir() / "checkpoints" / path.name
        step_ctx = copy.copy(ctx)
        step_ctx.workdir, step_ctx.seed = checkpoints, variant.seed  # training steps resume from here
        _, reports = variant.recipe.apply(model, step_ctx)
        described = [r.to_dict() for r in reports]
        save(model, path, tokenizer, extra={"variant": {"name": variant.name, "recipe": variant.recipe.to_dict(),
                                                        "seed": variant.seed, "reports": described}},
             overwrite=True)
        shutil.rmtree(checkpoints, ignore_errors=True)
        return Built(variant.name, model, path, described, False)


def build_all(teacher: nn.Module, variants: list[Variant], ctx: Context, cache: VariantCache, tokenizer=None,
              log=print) -> dict[str, Built]:
    """Every variant, in order; the ones already built are loaded from the cache."""
    names = [v.name for v in variants]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise BertCompressError(f"variant names must be unique; repeated: {duplicated}")
    built = {}
    for variant in variants:
        built[variant.name] = cache.get_or_build(teacher, variant, ctx, tokenizer)
        log(f"{variant.name}: {'reused from cache' if built[variant.name].cached else 'built'}")
    return built


DRY_RUN_TRAIN, DRY_RUN_EVAL = 16, 8


def check_recipes(recipes: list[Recipe], model: nn.Module, task: Task | None, tokenizer) -> None:
    """Apply every recipe to a copy of `model` on a few examples with one-step training, so a recipe that
    cannot apply (too few layers, heads, a task it cannot use) fails in seconds, before the teacher is trained."""
    small = task.sliced(DRY_RUN_TRAIN, DRY_RUN_EVAL) if task is not None else None
    ctx = Context(task=small, tokenizer=tokenizer, teacher=model, seed=0,
                  train=TrainConfig(max_steps=1, batch_size=8, checkpoint_every=1_000_000))
    quiet = os.environ.get("BERTCOMPRESS_QUIET")
    os.environ["BERTCOMPRESS_QUIET"] = "1"  # no progress bars for the check
    try:
        for recipe in recipes:
            try:
                recipe.apply(copy.deepcopy(model), ctx)
            except BertCompressError as error:
                raise BertCompressError(f"recipe {recipe.name!r} cannot apply to this model: {error}") from None
            except (RuntimeError, ValueError, IndexError, KeyError, TypeError) as error:
                raise BertCompressError(f"recipe {recipe.name!r} fails on this model before any training "
                                        f"({type(error).__name__}: {error})") from None
    finally:
        if quiet is None:
            os.environ.pop("BERTCOMPRESS_QUIET", None)
