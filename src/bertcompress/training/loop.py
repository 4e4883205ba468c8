"""The shared fine-tuning loop: AdamW, linear warm-up/decay, clipping, optional logit distillation,
method hooks, resumable checkpoints, and Accelerate so it runs on CPU, a GPU or several processes."""
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
import torch.nn.functional as F
from accelerate import Accelerator
from accelerate.utils import set_seed
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from tqdm.auto import tqdm
from transformers import get_linear_schedule_with_warmup

from bertcompress.core.errors import BertCompressError, describe_validation_error
from bertcompress.data.batching import Encoded, model_inputs
from bertcompress.training.checkpoint import load_state, save_state



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


class TrainingHook:
    """What a method contributes to the loop. Override what you need. `learning_rate` is the rate of
    the weights' optimizer step just taken, set by the loop before each `after_step` (proximal steps use it)."""

    learning_rate: float = 0.0
    teacher_outputs: Any = None  # the teacher's outputs on this batch (with forward_options), when it has one

    def forward_options(self) -> dict:
        """Extra forward arguments for student and teacher, e.g. output_hidden_states=True."""
        return {}

    def extra_loss(self, model: nn.Module, batch: dict, outputs: Any) -> torch.Tensor | None:
        return None

    def after_step(self, model: nn.Module, step: int, total_steps: int) -> None:
        return None

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        return None


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


def distillation_loss(student_logits, teacher_logits, temperature: float) -> torch.Tensor:
    """Per-example KL(teacher || student) on temperature-softened logits, scaled by T^2 (Hinton et al.)."""
    log_student = F.log_softmax(student_logits / temperature, dim=-1)
    teacher = F.softmax(teacher_logits / temperature, dim=-1)
    return F.kl_div(log_student, teacher, reduction="none").sum(-1) * temperature**2


def _example_losses(outputs, batch, teacher, config: TrainConfig, options: dict) -> tuple[torch.Tensor, Any]:
    """Per-example loss, and the teacher's outputs for hooks (None without a teacher)."""
    hard = F.cross_entropy(outputs.logits, batch["labels"], reduction="none")
    if teacher is None:
        return hard, None
    with torch.no_grad():
        teacher_outputs = teacher(**model_inputs(batch), **options)
    soft = distillation_loss(outputs.logits, teacher_outputs.logits, config.temperature)
    return config.hard_weight * hard + config.distill_weight * soft, teacher_outputs


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


OWN_LEARNING_RATE = "bertcompress_learning_rate"  # attribute a method sets on parameters with their own rate


def _optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    decay, no_decay, own = [], [], {}
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        if hasattr(parameter, OWN_LEARNING_RATE):  # e.g. movement scores: a much larger rate, no decay
            own.setdefault(getattr(parameter, OWN_LEARNING_RATE), []).append(parameter)
        else:
            (no_decay if parameter.ndim < 2 or "LayerNorm" in name else decay).append(parameter)
    groups = [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    groups += [{"params": params, "weight_decay": 0.0, "lr": lr} for lr, params in own.items()]
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
    accelerator = Accelerator(cpu=not torch.cuda.is_available())
    set_seed(config.seed)
    steps = total_steps(len(data), config)
    optimizer = _optimizer(model, config)
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
        local = indices[rank::world]
        batch = {k: v.to(accelerator.device) for k, v in data.batch(local).items()}
        outputs = wrapped(**model_inputs(batch), **options)
        example_losses, teacher_outputs = _example_losses(outputs, batch, teacher, config, options)
        # sum / global size: DDP's gradient mean over processes then equals the single-process mean
        loss = example_losses.sum() * world / len(indices)
        for hook in hooks:
            hook.teacher_outputs = teacher_outputs
            extra = hook.extra_loss(accelerator.unwrap_model(wrapped), batch, outputs)
            if extra is not None:
                loss = loss + extra
        accelerator.backward(loss)
        accelerator.clip_grad_norm_(wrapped.parameters(), config.max_grad_norm)
        step_rate = scheduler.get_last_lr()[0]  # the rate this optimizer step uses
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        for hook in hooks:
            hook.learning_rate = step_rate
            hook.after_step(accelerator.unwrap_model(wrapped), step + 1, steps)
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
