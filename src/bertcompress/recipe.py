"""Recipes: ordered compression steps, loaded from YAML and validated step by step."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch.nn as nn
import yaml

from bertcompress.core.api import compress
from bertcompress.core.config import MethodConfig
from bertcompress.core.context import Context
from bertcompress.core.errors import BertCompressError
from bertcompress.core.registry import config_from_dict
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
        unknown = sorted(map(repr, set(data) - {"name", "description", "steps"}))
        if unknown:
            raise BertCompressError(f"{source}: unknown top-level field(s) {unknown}; allowed: name, description, steps")
        steps = data.get("steps")
        if not isinstance(steps, list) or not steps:
            raise BertCompressError(f"{source}: 'steps' must be a non-empty list of methods")
        if not isinstance(data.get("name", ""), str) or not isinstance(data.get("description", ""), str):
            raise BertCompressError(f"{source}: 'name' and 'description' must be text")
        name = data.get("name") or Path(source).stem
        return cls(name, [_step(item, index, source) for index, item in enumerate(steps)],
                   str(data.get("description", "")), source)

    @classmethod
    def from_yaml(cls, path: str | Path) -> "Recipe":
        path = Path(path)
        if not path.exists():
            raise BertCompressError(f"recipe file {path} not found")
        if not path.is_file():
            raise BertCompressError(f"recipe {path} is not a file")
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except UnicodeDecodeError as error:
            raise BertCompressError(f"{path}: not UTF-8 text ({error.reason} at byte {error.start})") from None
        except yaml.YAMLError as error:
            mark = getattr(error, "problem_mark", None)
            where = f" at line {mark.line + 1}" if mark else ""
            raise BertCompressError(f"{path}: malformed YAML{where}: {getattr(error, 'problem', error)}") from None
        return cls.from_dict(data, str(path))

    def apply(self, model: nn.Module, ctx: Context | None = None) -> tuple[nn.Module, list[StepReport]]:
        return model, [compress(model, step, ctx) for step in self.steps]

    def to_dict(self) -> dict:
        return {"name": self.name, "description": self.description, "steps": [s.to_dict() for s in self.steps]}


def _check_values(value: Any, where: str) -> None:
    """YAML allows .inf, .nan and non-string keys; no method field wants them."""
    if isinstance(value, float) and not math.isfinite(value):
        raise BertCompressError(f"{where}: {value} is not a finite number")
    if isinstance(value, dict):
        for key, inner in value.items():
            if not isinstance(key, str):
                raise BertCompressError(f"{where}: field names must be text, got {key!r}")
            _check_values(inner, f"{where}.{key}")
    elif isinstance(value, list):
        for position, inner in enumerate(value):
            _check_values(inner, f"{where}[{position}]")


def _step(item: Any, index: int, source: str) -> MethodConfig:
    where = f"{source}: steps[{index}]"
    if not isinstance(item, dict) or "method" not in item:
        raise BertCompressError(f"{where}: each step needs a 'method' field")
    if not isinstance(item["method"], str):
        raise BertCompressError(f"{where}: 'method' must be a method name, got {item['method']!r}")
    _check_values(item, where)
    try:
        return config_from_dict(item)
    except BertCompressError as error:
        named = f" ({item['method']})" if item["method"].isidentifier() else ""  # echo only safe names
        raise BertCompressError(f"{where}{named}: {error}") from None


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
