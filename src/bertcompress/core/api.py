"""The one verb: `compress(model, config, ctx)` runs the config's registered handler on the model in place."""
from __future__ import annotations

import time

import torch.nn as nn

from bertcompress.core.bytes import ByteSnapshot, stored_bytes
from bertcompress.core.config import MethodConfig
from bertcompress.core.context import Context
from bertcompress.core.registry import registration_for
from bertcompress.core.report import StepReport


def compress(model: nn.Module, config: MethodConfig, ctx: Context | None = None) -> StepReport:
    """Apply `config` to `model` in place. The report's method, config, byte counts and seconds are filled
    here, the same way for every method; the handler adds what is its own (modules changed, notes, metrics)."""
    ctx = ctx or Context()
    registration = registration_for(config)
    before = ByteSnapshot(model)
    started = time.perf_counter()
    report = registration.handler(model, config, ctx)
    report.seconds = round(time.perf_counter() - started, 3)
    report.method, report.config = config.method_name, config.to_dict()
    if registration.bytes_of == "replaced_modules":
        report.bytes_before, report.bytes_after = before.replaced_bytes(model)
    else:
        report.bytes_before, report.bytes_after = before.total, stored_bytes(model)
    history = getattr(model, "_bertcompress_history", [])
    history.append(config.to_dict())
    model._bertcompress_history = history
    return report
