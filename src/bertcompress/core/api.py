"""The one verb: `compress(model, config, ctx)` runs the config's registered handler on the model in place."""
from __future__ import annotations

import time

import torch.nn as nn

from bertcompress.core.config import MethodConfig
from bertcompress.core.context import Context
from bertcompress.core.registry import handler_for
from bertcompress.core.report import StepReport


def compress(model: nn.Module, config: MethodConfig, ctx: Context | None = None) -> StepReport:
    ctx = ctx or Context()
    started = time.perf_counter()
    report = handler_for(config)(model, config, ctx)
    report.seconds = round(time.perf_counter() - started, 3)
    history = getattr(model, "_bertcompress_history", [])
    history.append(config.to_dict())
    model._bertcompress_history = history
    return report
