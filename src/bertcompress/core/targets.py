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


def _check_regexes(patterns: Sequence[str], field: str) -> None:
    for pattern in patterns:
        if pattern.startswith("re:"):
            try:
                re.compile(pattern[3:])
            except re.error as error:
                raise BertCompressError(f"{field}: invalid regex {pattern!r}: {error}") from None


def _unmatched(patterns: Sequence[str], candidates: dict[str, nn.Module]) -> list[str]:
    return [p for p in patterns if not any(_matches(name, m, p) for name, m in candidates.items())]


def select_modules(
    model: nn.Module,
    targets: Sequence[str],
    ignore: Sequence[str] = (),
    kinds: tuple[type[nn.Module], ...] = (nn.Module,),
    field: str = "targets",
    ignore_field: str = "ignore",
    may_miss: Sequence[str] = (),
) -> dict[str, nn.Module]:
    """Modules of `kinds` that match any target and no ignore pattern.

    Errors name the pattern: a target or ignore pattern that matches no module of `kinds`, even when the
    others match (a typo must not pass unnoticed), unless it is in `may_miss` (defaults that need not
    apply to every model); or nothing chosen at all."""
    _check_regexes([*targets, *ignore], field)
    candidates = {name: module for name, module in model.named_modules() if isinstance(module, kinds)}
    kind_names = "/".join(k.__name__ for k in kinds)
    for where, patterns in ((field, targets), (ignore_field, ignore)):
        missing = [p for p in _unmatched(patterns, candidates) if p not in may_miss]
        if missing:
            raise BertCompressError(f"{where}: pattern(s) {missing} match no {kind_names} module in "
                                    f"{type(model).__name__}")
    chosen = {
        name: module
        for name, module in candidates.items()
        if any(_matches(name, module, p) for p in targets) and not any(_matches(name, module, p) for p in ignore)
    }
    if not chosen:
        raise BertCompressError(
            f"{field}: patterns {list(targets)} (ignoring {list(ignore)}) match no "
            f"{kind_names} module in {type(model).__name__}"
        )
    return chosen


def set_submodule(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, module)
