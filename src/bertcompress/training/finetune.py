"""Training inside a compression step: the shared loop with the step's hyperparameters and optional teacher."""
from __future__ import annotations

import torch.nn as nn

from bertcompress.core.context import Context
from bertcompress.core.errors import BertCompressError
from bertcompress.data.batching import encode
from bertcompress.training.loop import TrainConfig, TrainingHook, TrainResult, train


def finetune(model: nn.Module, ctx: Context, label: str, *, epochs: float, learning_rate: float,
             max_steps: int | None = None, distill: bool = False,
             hooks: tuple[TrainingHook, ...] = (), **train_settings) -> TrainResult:
    """`train_settings`: further TrainConfig fields for this step (e.g. loss weights, temperature)."""
    if ctx.task is None or ctx.tokenizer is None:
        raise BertCompressError(f"{label}: this method trains; pass a Context with a task and a tokenizer")
    if distill and ctx.teacher is None:
        raise BertCompressError(f"{label}.distill: no teacher in the Context; set distill: false or give a teacher")
    config = (ctx.train or TrainConfig()).model_copy(
        update={"epochs": epochs, "learning_rate": learning_rate, "max_steps": max_steps, **train_settings})
    data = encode(ctx.task.split("train"), ctx.tokenizer, config.max_length)
    return train(model, data, config, teacher=ctx.teacher if distill else None, hooks=hooks,
                 checkpoint_dir=ctx.checkpoint_dir(label), description=label)
