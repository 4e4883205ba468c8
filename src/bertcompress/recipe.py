"""Recipes: ordered compression steps, loaded from YAML and validated step by step."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch.nn as nn
import yaml

from bertcompress.core.api import compress
from bertcompress.core.config import MethodConfig
from bertcompress.core.context import Context
from bertcompress.core.errors import BertCompressError
from bertcompress.core.registry import config_type
from bertcompress.core.report import StepReport

BUILTIN_DIR = Path(__file__).parent / "recipes"


@dataclass
class Recipe:
    name: str
    steps: list[MethodConfig]
    description: str = ""
    source: str = field(default="<python>", compare=False)

    @classmethod
    def from_dict(cls, data: Any, source: str = "<dict>") -> "Recipe":
        if not isinstance(data, dict):
            raise BertCompressError(f"{source}: a recipe must be a mapping with 'name' and 'steps'")
        unknown = sorted(set(data) - {"name", "description", "steps"})
        if unknown:
            raise BertCompressError(f"{source}: unknown top-level field(s) {unknown}; allowed: name, description, steps")
        steps = data.get("steps")
        if not isinstance(steps, list) or not steps:
            raise BertCompressError(f"{source}: 'steps' must be a non-empty list of methods")
        name = str(data.get("name") or Path(source).stem)
        return cls(name, [_step(item, index, source) for index, item in enumerate(steps)],
                   str(data.get("description", "")), source)

    @classmethod
    def from_yaml(cls, path: str | Path) -> "Recipe":
        path = Path(path)
        if not path.exists():
            raise BertCompressError(f"recipe file {path} not found")
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as error:
            mark = getattr(error, "problem_mark", None)
            where = f" at line {mark.line + 1}" if mark else ""
            raise BertCompressError(f"{path}: malformed YAML{where}: {getattr(error, 'problem', error)}") from None
        return cls.from_dict(data, str(path))

    def apply(self, model: nn.Module, ctx: Context | None = None) -> tuple[nn.Module, list[StepReport]]:
        return model, [compress(model, step, ctx) for step in self.steps]

    def to_dict(self) -> dict:
        return {"name": self.name, "description": self.description, "steps": [s.to_dict() for s in self.steps]}


def _step(item: Any, index: int, source: str) -> MethodConfig:
    where = f"{source}: steps[{index}]"
    if not isinstance(item, dict) or "method" not in item:
        raise BertCompressError(f"{where}: each step needs a 'method' field")
    fields = {k: v for k, v in item.items() if k != "method"}
    try:
        return config_type(str(item["method"]))(**fields)
    except BertCompressError as error:
        raise BertCompressError(f"{where} ({item['method']}): {error}") from None


def builtin_recipes() -> dict[str, Path]:
    return {p.stem: p for p in sorted(BUILTIN_DIR.glob("*.yaml"))}


def resolve_recipe(name_or_path: str) -> Recipe:
    """A built-in recipe by name, or a YAML file by path."""
    builtin = builtin_recipes()
    if name_or_path in builtin:
        return Recipe.from_yaml(builtin[name_or_path])
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        return Recipe.from_yaml(path)
    raise BertCompressError(f"unknown recipe {name_or_path!r}; built-in: {', '.join(builtin)}, or a .yaml path")
