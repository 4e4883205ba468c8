"""The shared fine-tuning loop: AdamW, linear warm-up/decay, clipping, hooks (logit distillation among them),
resumable checkpoints, and Accelerate so it runs on CPU, a GPU or several processes."""
from __future__ import annotations

import hashlib
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from accelerate import Accelerator
from accelerate.utils import set_seed
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from tqdm.auto import tqdm
from transformers import get_linear_schedule_with_warmup

from bertcompress.core.errors import BertCompressError, describe_validation_error
from bertcompress.data.batching import Encoded, model_inputs
from bertcompress.training.checkpoint import load_state, save_state
from bertcompress.core.task_types import task_type_of
from bertcompress.training.hooks import LogitDistillation, StepState, TrainingHook  # noqa: F401
from bertcompress.training.objectives import label_losses, needs_teacher, soft_kl as distillation_loss  # noqa: F401



class TrainConfig(BaseModel):
    """Fine-tuning hyperparameters (also the teacher cache key)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)
    epochs: float = Field(2.0, gt=0, description="passes over the training split (fractions allowed)")
    max_steps: int | None = Field(None, gt=0, description="train exactly this many optimizer steps (overrides epochs)")
    learning_rate: float = Field(6e-5, gt=0, lt=1)
    batch_size: int = Field(32, ge=1, description="global batch size, split across processes")
    warmup_ratio: float = Field(0.06, ge=0, lt=1)
    weight_decay: float = Field(0.01, ge=0)
    max_grad_norm: float = Field(1.0, gt=0)
    max_length: int = Field(64, ge=8, le=512)
    seed: int = 0
    distill_weight: float = Field(0.5, ge=0, description="weight of the KL loss to the teacher's logits")
    hard_weight: float = Field(0.5, ge=0, description="weight of the cross-entropy on labels (with a teacher)")
    temperature: float = Field(2.0, gt=0)
    checkpoint_every: int = Field(100, ge=1, description="optimizer steps between resumable checkpoints")
    group_by_length: bool = Field(True, description="batch examples of similar length: about half the padding")

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as error:
            raise BertCompressError(describe_validation_error("train", error)) from None

    @model_validator(mode="after")
    def _some_loss(self) -> "TrainConfig":
        if self.distill_weight == 0 and self.hard_weight == 0:
            raise ValueError("distill_weight and hard_weight cannot both be 0")
        return self


@dataclass
class TrainResult:
    steps: int
    seconds: float
    losses: list[float] = field(default_factory=list)  # mean loss per logging window
    resumed_from: int = 0


def total_steps(n_examples: int, config: TrainConfig) -> int:
    if config.max_steps:
        return config.max_steps
    return math.ceil(math.ceil(n_examples / config.batch_size) * config.epochs)


GROUP_WINDOW = 50  # batches per length-sorted window: similar lengths together, order still random


def _epoch_batches(lengths: list[int], epoch: int, config: TrainConfig) -> list[list[int]]:
    generator = torch.Generator().manual_seed(config.seed * 100_003 + epoch)
    order = torch.randperm(len(lengths), generator=generator).tolist()
    size = config.batch_size
    if not config.group_by_length:
        return [order[i : i + size] for i in range(0, len(order), size)]
    batches = []
    for start in range(0, len(order), size * GROUP_WINDOW):
        window = sorted(order[start : start + size * GROUP_WINDOW], key=lengths.__getitem__)
        batches += [window[i : i + size] for i in range(0, len(window), size)]
    shuffled = torch.randperm(len(batches), generator=generator).tolist()
    return [batches[i] for i in shuffled]


def global_batch(lengths: list[int], step: int, config: TrainConfig) -> list[int]:
    """Example indices of optimizer step `step`: seeded per epoch, so resuming needs no replay."""
    per_epoch = math.ceil(len(lengths) / config.batch_size)
    epoch, offset = divmod(step, per_epoch)
    return _epoch_batches(lengths, epoch, config)[offset]


def _label_losses(task_type: str, outputs, batch, config: TrainConfig, distilling: bool) -> torch.Tensor:
    """Per-example loss on the labels, weighted by hard_weight when a teacher shares the loss; 0 for unlabelled
    examples (label -1), which only the teacher's losses teach."""
    hard = label_losses(task_type, outputs, batch)
    return config.hard_weight * hard if distilling else hard


def _run_key(model: nn.Module, n_examples: int, config: TrainConfig, hooks) -> str:
    """What a checkpoint must match to be resumed: settings, data size, parameter shapes, hooks."""
    shapes = [(name, list(p.shape)) for name, p in model.named_parameters()]
    described = [config.model_dump(exclude={"checkpoint_every"}), n_examples, shapes,
                 [type(h).__name__ for h in hooks]]
    return hashlib.sha256(json.dumps(described, sort_keys=True, default=str).encode()).hexdigest()[:20]


def _save_checkpoint(directory: Path, run_key: str, model, optimizer, scheduler, hooks, step: int) -> None:
    state = {
        "step": step, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(), "hooks": [h.state_dict() for h in hooks],
        "rng": torch.get_rng_state(),
    }
    save_state(directory, state, run_key)


def _load_checkpoint(directory: Path, run_key: str, model, optimizer, scheduler, hooks) -> int:
    state = load_state(directory, run_key)
    if state is None:
        return 0
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    for hook, hook_state in zip(hooks, state["hooks"]):
        hook.load_state_dict(hook_state)
    torch.set_rng_state(state["rng"])
    return int(state["step"])


def _optimizer(model: nn.Module, config: TrainConfig, hooks) -> torch.optim.Optimizer:
    """AdamW: decayed weights, undecayed biases and LayerNorms, and each hook's own groups at their rates."""
    own = [group for hook in hooks for group in hook.parameter_groups()]
    claimed = {id(p) for group in own for p in group.parameters}
    decay, no_decay = [], []
    for name, parameter in model.named_parameters():
        if parameter.requires_grad and id(parameter) not in claimed:
            (no_decay if parameter.ndim < 2 or "LayerNorm" in name else decay).append(parameter)
    groups = [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    groups += [{"params": g.parameters, "weight_decay": 0.0, "lr": g.learning_rate} for g in own]
    return torch.optim.AdamW(groups, lr=config.learning_rate)


def train(
    model: nn.Module,
    data: Encoded,
    config: TrainConfig,
    teacher: nn.Module | None = None,
    hooks: tuple[TrainingHook, ...] = (),
    checkpoint_dir: Path | None = None,
    description: str = "train",
) -> TrainResult:
    """Fine-tune `model` in place on `data`; resumes from `checkpoint_dir` when a checkpoint is there."""
    if len(data) == 0:
        raise BertCompressError("training data is empty")
    task_type = task_type_of(model)
    if teacher is None and needs_teacher(task_type):
        raise BertCompressError(f"{task_type} models have no labels to train on: it learns from a teacher's outputs "
                                "(distill: true, or a distillation step)")
    accelerator = Accelerator(cpu=not torch.cuda.is_available())
    set_seed(config.seed)
    if teacher is not None:  # logit distillation is a hook like any method's, added here once
        hooks = (LogitDistillation(config.distill_weight, config.temperature), *hooks)
    steps = total_steps(len(data), config)
    optimizer = _optimizer(model, config, hooks)
    scheduler = get_linear_schedule_with_warmup(optimizer, int(config.warmup_ratio * steps), steps)
    run_key = _run_key(model, len(data), config, hooks)
    start = _load_checkpoint(checkpoint_dir, run_key, model, optimizer, scheduler, hooks) if checkpoint_dir else 0
    wrapped, optimizer = accelerator.prepare(model, optimizer)
    if teacher is not None:
        teacher = teacher.to(accelerator.device).eval()
    rank, world = accelerator.process_index, accelerator.num_processes
    wrapped.train()
    result, window, began = TrainResult(steps=steps, seconds=0.0, resumed_from=start), [], time.perf_counter()
    progress = tqdm(total=steps, initial=start, desc=description, disable=not accelerator.is_main_process
                    or bool(os.environ.get("BERTCOMPRESS_QUIET")), dynamic_ncols=True)
    lengths = [len(ids) for ids in data.ids]
    options = {key: value for hook in hooks for key, value in hook.forward_options().items()}
    for step in range(start, steps):
        indices = global_batch(lengths, step, config)
        # a global batch smaller than the process count leaves some shards empty: such a process still runs
        # (every process joins the gradient all-reduce) on one example weighted zero
        shard = indices[rank::world]
        batch = {k: v.to(accelerator.device) for k, v in data.batch(shard or indices[:1]).items()}
        state = StepState(step, steps, scheduler.get_last_lr()[0], batch,
                          example_weight=world / len(indices) if shard else 0.0)
        state.outputs = wrapped(**model_inputs(batch), **options)
        if teacher is not None:
            with torch.no_grad():
                state.teacher_outputs = teacher(**model_inputs(batch), **options)
        # sum / global size: DDP's gradient mean over processes then equals the single-process mean
        loss = _label_losses(task_type, state.outputs, batch, config, teacher is not None).sum() * state.example_weight
        for hook in hooks:
            extra = hook.extra_loss(accelerator.unwrap_model(wrapped), state)
            if extra is not None:
                loss = loss + extra
        accelerator.backward(loss)
        accelerator.clip_grad_norm_(wrapped.parameters(), config.max_grad_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        state.step = step + 1
        for hook in hooks:
            hook.after_step(accelerator.unwrap_model(wrapped), state)
        window.append(loss.item())
        progress.update(1)
        progress.set_postfix(loss=f"{sum(window[-20:]) / len(window[-20:]):.4f}")
        if (step + 1) % 20 == 0 or step + 1 == steps:
            result.losses.append(sum(window) / len(window))
            window = []
        if checkpoint_dir and accelerator.is_main_process and (step + 1) % config.checkpoint_every == 0 \
                and step + 1 < steps:
            _save_checkpoint(checkpoint_dir, run_key, accelerator.unwrap_model(wrapped), optimizer, scheduler, hooks,
                             step + 1)
    progress.close()
    accelerator.wait_for_everyone()
    model.to("cpu").eval()
    result.seconds = time.perf_counter() - began
    accelerator.free_memory()
    return result
