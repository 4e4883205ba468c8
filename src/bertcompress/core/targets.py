"""Choose modules by class name, exact name or `re:` regex, with an ignore list."""
from __future__ import annotations

import re
from collections.abc import Sequence

import torch.nn as nn

from bertcompress.core.errors import BertCompressError


def _matches(name: str, module: nn.Module, pattern: str) -> bool:
    if pattern.startswith("re:"):
        return re.fullmatch(pattern[3:], name) is not None
    return pattern == name or pattern == type(module).__name__


def select_modules(
    model: nn.Module,
    targets: Sequence[str],
    ignore: Sequence[str] = (),
    kinds: tuple[type[nn.Module], ...] = (nn.Module,),
    field: str = "targets",
) -> dict[str, nn.Module]:
    """Modules of `kinds` that match any target and no ignore pattern; an error when none match."""
    for pattern in [*targets, *ignore]:
        if pattern.startswith("re:"):
            try:
                re.compile(pattern[3:])
            except re.error as error:
                raise BertCompressError(f"{field}: invalid regex {pattern!r}: {error}") from None
    chosen = {
        name: module
        for name, module in model.named_modules()
        if isinstance(module, kinds)
        and any(_matches(name, module, p) for p in targets)
        and not any(_matches(name, module, p) for p in ignore)
    }
    if not chosen:
        raise BertCompressError(
            f"{field}: patterns {list(targets)} (ignoring {list(ignore)}) match no "
            f"{'/'.join(k.__name__ for k in kinds)} module in {type(model).__name__}"
        )
    return chosen


def set_submodule(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, module)
