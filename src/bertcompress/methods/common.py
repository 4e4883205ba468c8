"""Pieces every method uses: choose the Linears a config targets, swap modules for compressed versions."""
from __future__ import annotations

from typing import Callable

import torch.nn as nn
from pydantic import Field

from bertcompress.arch.spec import get_spec
from bertcompress.core.config import MethodConfig
from bertcompress.core.errors import BertCompressError
from bertcompress.core.report import StepReport
from bertcompress.core.targets import select_modules, set_submodule


DEFAULT_IGNORE = ("re:.*classifier.*",)


class LinearTargets(MethodConfig):
    """Fields of methods that act on chosen Linears (see `chosen_linears`)."""

    targets: list[str] | None = Field(
        None, description="module names, class names or 're:' regexes; default: every encoder Linear")
    ignore: list[str] = Field(default_factory=lambda: list(DEFAULT_IGNORE),
                              description="patterns left unchanged (by default the task head)")


def chosen_linears(model: nn.Module, config: LinearTargets) -> dict[str, nn.Linear]:
    """The Linears `config.targets` (default: every encoder Linear) choose, minus `config.ignore`.

    A pattern the user wrote that matches no Linear is an error naming it; the default ignore pattern
    need not match (a model's head may be named otherwise). By default, encoder Linears that an earlier
    step already replaced (sparse, low-rank, quantized) are an error that says so."""
    if config.targets is None:
        _refuse_replaced(model, config.method_name)
    return select_modules(model, config.targets or get_spec(model).linear_names(model), config.ignore,
                          kinds=(nn.Linear,), field=f"{config.method_name}.targets",
                          ignore_field=f"{config.method_name}.ignore", may_miss=DEFAULT_IGNORE)


def _refuse_replaced(model: nn.Module, method: str) -> None:
    modules = [model.get_submodule(name) for name in get_spec(model).linear_names(model)]
    kinds = sorted({type(m).__name__ for m in modules if not isinstance(m, nn.Linear)})
    if kinds:
        raise BertCompressError(f"{method}: the encoder Linears were already replaced by an earlier step "
                                f"({', '.join(kinds)}); apply {method} before that step, or choose `targets`")


def replace_each(model: nn.Module, modules: dict[str, nn.Module], make: Callable[[str, nn.Module], nn.Module],
                 report: StepReport) -> None:
    """Replace every module in `modules` by `make(name, module)`, counting them in the report (`compress`
    counts their bytes)."""
    for name, module in modules.items():
        set_submodule(model, name, make(name, module))
        report.modules_changed += 1


def _inner_table(name: str, module: nn.Module) -> tuple[str, nn.Module]:
    """A pruned vocabulary keeps its rows in an inner `table`: quantization acts on that."""
    while isinstance(getattr(module, "table", None), nn.Module):
        name, module = f"{name}.table", module.table
    return name, module


def word_embeddings(model: nn.Module) -> dict[str, nn.Module]:
    """{name: the word-embedding table} while it is a plain nn.Embedding, else {}."""
    return {name: m for name, m in embedding_tables(model).items()
            if name.endswith(("word_embeddings", "word_embeddings.table"))}


def embedding_tables(model: nn.Module) -> dict[str, nn.Embedding]:
    """The embedding block's tables (word, position, token type) that are plain nn.Embeddings, by full name."""
    spec = get_spec(model)
    root = spec.embeddings_module(model)
    prefix = f"{spec.prefix(model)}{spec.embeddings}."
    found = (_inner_table(prefix + name, m) for name, m in root.named_children())
    return {name: m for name, m in found if isinstance(m, nn.Embedding)}
