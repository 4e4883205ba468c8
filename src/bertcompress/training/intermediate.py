"""Intermediate distillation as a training hook: student layer j against teacher layer mapping[j-1], with
TinyBERT hidden-state and attention MSE, DistilBERT cosine, embedding MSE and Patient-KD losses."""
from __future__ import annotations

import torch
import torch.nn as nn

from bertcompress.training import distill_losses as losses
from bertcompress.training.hooks import StepState, TrainingHook


class IntermediateDistillation(TrainingHook):
    """Adds the weighted intermediate losses; `weights` maps a loss name to its weight."""

    def __init__(self, weights: dict[str, float], mapping: list[int], projections: nn.ModuleDict):
        self.weights, self.mapping, self.projections = weights, mapping, projections

    def forward_options(self) -> dict:
        options = {"output_attentions": True} if "attention_mse" in self.weights else {}
        if set(self.weights) - {"attention_mse"}:
            options["output_hidden_states"] = True
        return options

    def _project(self, j: int, hidden: torch.Tensor) -> torch.Tensor:
        return self.projections[str(j)](hidden) if str(j) in self.projections else hidden

    def extra_loss(self, model: nn.Module, state: StepState) -> torch.Tensor | None:
        mask = state.batch["attention_mask"]
        total = torch.zeros((), device=mask.device)
        for name, weight in self.weights.items():
            total = total + weight * self._loss(name, state.outputs, state.teacher_outputs, mask)
        return total

    def _loss(self, name: str, student, teacher, mask) -> torch.Tensor:
        pairs = list(enumerate(self.mapping, start=1))
        if name == "embedding_mse":
            return losses.hidden_mse(self._project(0, student.hidden_states[0]), teacher.hidden_states[0], mask)
        if name == "attention_mse":
            return sum(losses.attention_mse(student.attentions[j - 1], teacher.attentions[t - 1], mask)
                       for j, t in pairs) / len(pairs)
        if name == "pkd":
            return sum(losses.patient_kd(self._project(j, student.hidden_states[j][:, 0]),
                                         teacher.hidden_states[t][:, 0]) for j, t in pairs) / len(pairs)
        compare = losses.hidden_mse if name == "hidden_mse" else losses.hidden_cosine
        return sum(compare(self._project(j, student.hidden_states[j]), teacher.hidden_states[t], mask)
                   for j, t in pairs) / len(pairs)
