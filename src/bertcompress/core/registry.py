"""Handlers keyed by config type; string names for YAML and the CLI."""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable, TypeVar

from bertcompress.core.config import MethodConfig
from bertcompress.core.errors import BertCompressError

if TYPE_CHECKING:
    import torch.nn as nn

    from bertcompress.core.context import Context
    from bertcompress.core.report import StepReport

Handler = Callable[["nn.Module", MethodConfig, "Context"], "StepReport"]
C = TypeVar("C", bound=type[MethodConfig])

_HANDLERS: dict[type[MethodConfig], Handler] = {}
_BY_NAME: dict[str, type[MethodConfig]] = {}


def register(config_type: type[MethodConfig]) -> Callable[[Handler], Handler]:
    """Decorator: `@register(DynamicInt8) def apply(model, config, ctx) -> StepReport`."""
    if not config_type.method_name:
        raise TypeError(f"{config_type.__name__} must set method_name")

    def wrap(handler: Handler) -> Handler:
        _HANDLERS[config_type] = handler
        _BY_NAME[config_type.method_name] = config_type
        return handler

    return wrap


def handler_for(config: MethodConfig) -> Handler:
    try:
        return _HANDLERS[type(config)]
    except KeyError:
        raise BertCompressError(f"no handler registered for {type(config).__name__}") from None


def config_type(name: str) -> type[MethodConfig]:
    try:
        return _BY_NAME[name]
    except KeyError:
        known = ", ".join(sorted(_BY_NAME)) or "none"
        raise BertCompressError(f"unknown method {name!r}; known methods: {known}") from None


def registered() -> dict[str, type[MethodConfig]]:
    return dict(sorted(_BY_NAME.items()))
