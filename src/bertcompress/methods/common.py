"""Pieces every method uses: swap chosen modules for their compressed versions, counting bytes."""
from __future__ import annotations

from typing import Callable

import torch.nn as nn

from bertcompress.arch.spec import get_spec
from bertcompress.core.report import StepReport
from bertcompress.core.targets import set_submodule
from bertcompress.evaluation.size import stored_bytes


def replace_each(model: nn.Module, modules: dict[str, nn.Module], make: Callable[[str, nn.Module], nn.Module],
                 report: StepReport) -> None:
    """Replace every module in `modules` by `make(name, module)`, adding their bytes to the report."""
    for name, module in modules.items():
        replacement = make(name, module)
        report.bytes_before += stored_bytes(module)
        report.bytes_after += stored_bytes(replacement)
        set_submodule(model, name, replacement)
        report.modules_changed += 1


def word_embeddings(model: nn.Module) -> dict[str, nn.Module]:
    spec = get_spec(model)
    name = f"{spec.prefix(model)}{spec.embeddings}.word_embeddings"
    module = model.get_submodule(name)
    return {name: module} if isinstance(module, nn.Embedding) else {}


def embedding_tables(model: nn.Module) -> dict[str, nn.Embedding]:
    """The embedding block's tables (word, position, token type), by full module name."""
    spec = get_spec(model)
    root = spec.embeddings_module(model)
    prefix = f"{spec.prefix(model)}{spec.embeddings}."
    return {prefix + name: m for name, m in root.named_children() if isinstance(m, nn.Embedding)}
