"""Training inside a compression step: the shared loop with the step's hyperparameters and optional teacher."""
from __future__ import annotations

import torch.nn as nn

from bertcompress.core.context import Context
from bertcompress.core.errors import BertCompressError
from bertcompress.core.task_types import task_type_of
from bertcompress.data.batching import encode
from bertcompress.training.hooks import TrainingHook
from bertcompress.training.objectives import needs_teacher
from bertcompress.training.loop import TrainConfig, TrainResult, total_steps, train


def step_config(ctx: Context, label: str, *, epochs: float, learning_rate: float, max_steps: int | None = None,
                **train_settings) -> TrainConfig:
    """The one place a compression step's TrainConfig is made: the run's settings with the step's own."""
    if ctx.task is None or ctx.tokenizer is None:
        raise BertCompressError(f"{label}: this method trains; pass a Context with a task and a tokenizer")
    return (ctx.train or TrainConfig()).model_copy(
        update={"epochs": epochs, "learning_rate": learning_rate, "max_steps": max_steps, **train_settings})


def planned_steps(ctx: Context, config: TrainConfig) -> int:
    """How many optimizer steps `finetune` will run with `config` (schedules are placed inside them)."""
    return total_steps(len(ctx.task.split("train")), config)


def finetune(model: nn.Module, ctx: Context, label: str, *, epochs: float, learning_rate: float,
             max_steps: int | None = None, distill: bool = False,
             hooks: tuple[TrainingHook, ...] = (), **train_settings) -> TrainResult:
    """`train_settings`: further TrainConfig fields for this step (e.g. loss weights, temperature). Models
    without labels to learn from (embedders) always train on the teacher's outputs."""
    distill = distill or needs_teacher(task_type_of(model))
    config = step_config(ctx, label, epochs=epochs, learning_rate=learning_rate, max_steps=max_steps,
                         **train_settings)
    if distill and ctx.teacher is None:
        raise BertCompressError(f"{label}: training a {task_type_of(model)} model needs a teacher in the Context"
                                if needs_teacher(task_type_of(model)) else
                                f"{label}.distill: no teacher in the Context; set distill: false or give a teacher")
    examples = list(ctx.task.split("train")) + (list(ctx.unlabelled) if distill else [])
    data = encode(examples, ctx.tokenizer, config.max_length)
    return train(model, data, config, teacher=ctx.teacher if distill else None, hooks=hooks,
                 checkpoint_dir=ctx.checkpoint_dir(label), description=label)
