"""What a method contributes to the shared loop: extra losses, after-step updates, forward options and
parameter groups with their own learning rate. The loop passes each step's state as an argument.

Logit distillation (Hinton et al.) is a hook like any other: the loop adds it whenever it has a teacher."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn

from bertcompress.core.task_types import EMBEDDING, prediction, task_type_of
from bertcompress.training.objectives import distillation_losses, similarity_losses


@dataclass
class StepState:
    """One optimizer step as hooks see it. In `extra_loss`, `step` is the step being taken (0-based count
    of steps done so far); in `after_step`, the number of steps done including this one."""

    step: int
    total_steps: int
    learning_rate: float = 0.0  # the weights' rate for this step (proximal updates scale with it)
    batch: dict | None = None
    outputs: Any = None
    teacher_outputs: Any = None  # the teacher's outputs on this batch (with forward_options), with a teacher
    example_weight: float = 1.0  # times a sum over this process's examples = its share of the global mean


@dataclass
class ParameterGroup:
    """Parameters a method trains at its own rate, without weight decay (e.g. movement scores, gates)."""

    parameters: list[nn.Parameter]
    learning_rate: float


class TrainingHook:
    """Override what you need."""

    def forward_options(self) -> dict:
        """Extra forward arguments for student and teacher, e.g. output_hidden_states=True."""
        return {}

    def parameter_groups(self) -> list[ParameterGroup]:
        return []

    def extra_loss(self, model: nn.Module, state: StepState) -> torch.Tensor | None:
        return None

    def after_step(self, model: nn.Module, state: StepState) -> None:
        return None

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        return None


class LogitDistillation(TrainingHook):
    """weight · the task type's loss to the teacher's outputs (KL of softened logits for classifiers),
    averaged over the global batch like the label loss."""

    def __init__(self, weight: float, temperature: float):
        self.weight, self.temperature = weight, temperature

    def extra_loss(self, model: nn.Module, state: StepState) -> torch.Tensor | None:
        if self.weight == 0:
            return None
        per_example = distillation_losses(task_type_of(model), state.outputs, state.teacher_outputs, state.batch,
                                          self.temperature)
        return self.weight * per_example.sum() * state.example_weight


class SimilarityDistillation(TrainingHook):
    """weight · how far the student's in-batch cosine similarities of sentence vectors are from the
    teacher's (embedders only; see `objectives.similarity_losses`)."""

    def __init__(self, weight: float):
        self.weight = weight

    def extra_loss(self, model: nn.Module, state: StepState) -> torch.Tensor | None:
        mask = state.batch["attention_mask"]
        student = prediction(EMBEDDING, state.outputs, mask)
        teacher = prediction(EMBEDDING, state.teacher_outputs, mask)
        return self.weight * similarity_losses(student, teacher).sum() * state.example_weight
