"""Handlers keyed by config type; string names for YAML and the CLI."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Literal

from bertcompress.core.config import MethodConfig
from bertcompress.core.errors import BertCompressError

if TYPE_CHECKING:
    import torch.nn as nn

    from bertcompress.core.context import Context
    from bertcompress.core.report import StepReport

Handler = Callable[["nn.Module", MethodConfig, "Context"], "StepReport"]
# What `compress` counts as a step's bytes before and after: the whole model's stored weights (pruning,
# distillation: the model shrinks), or only the modules the step replaced (quantization: the report
# compares each fp32 module with its replacement, leaving untouched fp32 parts out).
BytesOf = Literal["model", "replaced_modules"]


@dataclass(frozen=True)
class Registration:
    handler: Handler
    bytes_of: BytesOf = "model"


_REGISTERED: dict[type[MethodConfig], Registration] = {}
_BY_NAME: dict[str, type[MethodConfig]] = {}


def register(config_type: type[MethodConfig], bytes_of: BytesOf = "model") -> Callable[[Handler], Handler]:
    """Decorator: `@register(DynamicInt8, bytes_of="replaced_modules") def apply(model, config, ctx)`.

    A name or config type registered twice is an error: the second would silently replace the first."""
    if not config_type.method_name:
        raise TypeError(f"{config_type.__name__} must set method_name")
    if bytes_of not in ("model", "replaced_modules"):
        raise ValueError(f"bytes_of: {bytes_of!r} is not 'model' or 'replaced_modules'")
    if config_type in _REGISTERED:
        raise ValueError(f"{config_type.__name__} already has a handler ({_REGISTERED[config_type].handler.__name__})")
    if config_type.method_name in _BY_NAME:
        raise ValueError(f"method name {config_type.method_name!r} is already registered by "
                         f"{_BY_NAME[config_type.method_name].__name__}; choose another method_name")

    def wrap(handler: Handler) -> Handler:
        _REGISTERED[config_type] = Registration(handler, bytes_of)
        _BY_NAME[config_type.method_name] = config_type
        return handler

    return wrap


def registration_for(config: MethodConfig) -> Registration:
    try:
        return _REGISTERED[type(config)]
    except KeyError:
        raise BertCompressError(f"no handler registered for {type(config).__name__}") from None


def handler_for(config: MethodConfig) -> Handler:
    return registration_for(config).handler


def config_type(name: str) -> type[MethodConfig]:
    try:
        return _BY_NAME[name]
    except KeyError:
        known = ", ".join(sorted(_BY_NAME)) or "none"
        raise BertCompressError(f"unknown method {name!r}; known methods: {known}") from None


def config_from_dict(data: dict[str, Any]) -> MethodConfig:
    """The config `MethodConfig.to_dict()` wrote: {'method': name, **fields} -> config."""
    fields = {key: value for key, value in data.items() if key != "method"}
    return config_type(str(data.get("method")))(**fields)


def registered() -> dict[str, type[MethodConfig]]:
    return dict(sorted(_BY_NAME.items()))
