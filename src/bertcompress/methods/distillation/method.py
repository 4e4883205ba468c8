"""The distillation method: train the model (often a student cut from the teacher) on soft targets and,
optionally, the teacher's hidden states, attention maps, embeddings and [CLS] states (Patient-KD); embedders
also on the in-batch similarities of their sentence vectors."""
from __future__ import annotations

from typing import Any, Literal

import torch.nn as nn
from pydantic import Field

from bertcompress.arch.spec import get_spec
from bertcompress.core.config import MethodConfig
from bertcompress.core.context import Context
from bertcompress.core.errors import BertCompressError
from bertcompress.core.registry import register
from bertcompress.core.report import StepReport
from bertcompress.core.task_types import EMBEDDING, task_type_of
from bertcompress.methods.distillation.mapping import layer_map
from bertcompress.methods.distillation.students import keep_teacher_layers
from bertcompress.surgery import head_count
from bertcompress.training.finetune import finetune
from bertcompress.training.hooks import SimilarityDistillation
from bertcompress.training.intermediate import IntermediateDistillation

PROJECTION = "distillation_projection"  # attribute holding the learned projections while training


class Distillation(MethodConfig):
    """Train from the context's teacher; optionally cut the model to some of the teacher's layers first."""

    method_name = "distillation"
    keep: int | None = Field(None, ge=1, description="student depth: keep this many of the model's layers first")
    strategy: Literal["every_other", "first", "last"] = Field("every_other", description="which layers `keep` keeps")
    student_layers: list[int] | None = Field(None, description="or name the kept layers (0-based)")
    layer_map: Literal["uniform", "last"] | list[int] = Field(
        "uniform", description="teacher layer (1..L, hidden-state numbering) for each student layer")
    soft_weight: float = Field(0.5, ge=0, description="KL to the teacher's temperature-softened logits (Hinton)")
    hard_weight: float = Field(0.5, ge=0, description="cross-entropy on the labels")
    temperature: float = Field(2.0, gt=0, description="softens both distributions of the soft loss")
    hidden_mse_weight: float = Field(0.0, ge=0, description="TinyBERT hidden-state MSE on mapped layers")
    hidden_cosine_weight: float = Field(0.0, ge=0, description="DistilBERT cosine loss on mapped layers")
    attention_mse_weight: float = Field(0.0, ge=0, description="TinyBERT attention-distribution MSE")
    embedding_mse_weight: float = Field(0.0, ge=0, description="TinyBERT embedding-layer MSE")
    pkd_weight: float = Field(0.0, ge=0, description="Patient-KD: normalised [CLS] states of mapped layers")
    similarity_weight: float = Field(0.0, ge=0, description="embedders: MSE between the student's and the "
                                     "teacher's in-batch cosine similarities of sentence vectors (neighbours)")
    projection: bool = Field(True, description="learn a linear projection where hidden sizes differ")
    attention_heads: Literal["match", "average"] = Field(
        "average", description="match: head counts must agree per mapped layer; average: compare head means "
        "where they differ")
    epochs: float = Field(2.0, gt=0)
    max_steps: int | None = Field(None, gt=0)
    learning_rate: float = Field(6e-5, gt=0, lt=1)

    def __init__(self, **data: Any) -> None:
        super().__init__(**data)
        if self.soft_weight == 0 and self.hard_weight == 0:
            raise BertCompressError("Distillation.soft_weight/hard_weight: at least one output loss must be > 0 "
                                    "(all-zero weights train nothing)")
        if self.keep is not None and self.student_layers is not None:
            raise BertCompressError("Distillation.keep/student_layers: give one of them, not both")

    def intermediate_weights(self) -> dict[str, float]:
        return {name: value for name, value in {
            "hidden_mse": self.hidden_mse_weight, "hidden_cosine": self.hidden_cosine_weight,
            "attention_mse": self.attention_mse_weight, "embedding_mse": self.embedding_mse_weight,
            "pkd": self.pkd_weight}.items() if value > 0}

    def needs_teacher(self) -> bool:
        return self.soft_weight > 0 or self.similarity_weight > 0 or bool(self.intermediate_weights())


def _hidden_size(model: nn.Module) -> int:
    return getattr(model.config, get_spec(model).hidden_key)


def _projections(student: nn.Module, teacher: nn.Module, config: Distillation, mapping: list[int]) -> nn.ModuleDict:
    """One learned Linear per compared student layer (0 = embeddings) where widths differ, else none."""
    uses_hidden = set(config.intermediate_weights()) - {"attention_mse"}
    width_s, width_t = _hidden_size(student), _hidden_size(teacher)
    if not uses_hidden or width_s == width_t:
        return nn.ModuleDict()
    if not config.projection:
        first = sorted(uses_hidden)[0]
        raise BertCompressError(f"Distillation.projection: the student's hidden size {width_s} differs from the "
                                f"teacher's {width_t}, so {first}_weight needs projection: true")
    layers = ([0] if config.embedding_mse_weight else []) + list(range(1, len(mapping) + 1))
    return nn.ModuleDict({str(j): nn.Linear(width_s, width_t) for j in layers})


def _check_heads(student: nn.Module, teacher: nn.Module, config: Distillation, mapping: list[int]) -> None:
    if not config.attention_mse_weight or config.attention_heads == "average":
        return
    for j, t in enumerate(mapping):
        s_heads, t_heads = head_count(student, j), head_count(teacher, t - 1)
        if s_heads != t_heads:
            raise BertCompressError(f"Distillation.attention_heads: student layer {j + 1} has {s_heads} heads and "
                                    f"teacher layer {t} has {t_heads}; use attention_heads: average")


def _set_attention(models: list[nn.Module], implementation: str) -> list[str]:
    """Switch attention kernels (attention maps need eager); returns the previous ones."""
    previous = [m.config._attn_implementation for m in models]
    for model in models:
        model.set_attn_implementation(implementation)
    return previous


@register(Distillation)
def apply_distillation(model: nn.Module, config: Distillation, ctx: Context) -> StepReport:
    report = StepReport()
    teacher = ctx.teacher
    if config.needs_teacher() and teacher is None:
        raise BertCompressError("distillation: soft_weight and the intermediate losses need a teacher in the "
                                "Context; give one, or train on labels only (soft_weight: 0)")
    if config.similarity_weight > 0 and task_type_of(model) != EMBEDDING:
        raise BertCompressError(f"distillation: similarity_weight is for embedding models; this one is a "
                                f"{task_type_of(model)} model")
    if config.keep is not None or config.student_layers is not None:
        kept = keep_teacher_layers(model, config.keep, config.strategy, config.student_layers)
        report.metrics["kept_teacher_layers"] = kept
        report.notes.append(f"student: teacher layers {kept} (0-based), weights copied")
    hooks, projections = (), nn.ModuleDict()
    if config.intermediate_weights():
        depth = len(get_spec(model).layer_list(model))
        mapping = layer_map(config.layer_map, depth, len(get_spec(teacher).layer_list(teacher)))
        _check_heads(model, teacher, config, mapping)
        projections = _projections(model, teacher, config, mapping)
        hooks = (IntermediateDistillation(config.intermediate_weights(), mapping, projections),)
        report.metrics["layer_map"] = mapping
    if config.similarity_weight > 0:
        hooks = (*hooks, SimilarityDistillation(config.similarity_weight))
    eager = "attention_mse" in config.intermediate_weights()
    previous = _set_attention([model, teacher], "eager") if eager else None
    setattr(model, PROJECTION, projections)  # registered, so the optimizer trains it and checkpoints keep it
    try:
        result = finetune(model, ctx, config.method_name, epochs=config.epochs, learning_rate=config.learning_rate,
                          max_steps=config.max_steps, distill=config.needs_teacher(), hooks=hooks,
                          distill_weight=config.soft_weight, hard_weight=config.hard_weight,
                          temperature=config.temperature)
    finally:
        delattr(model, PROJECTION)
        if previous:
            for m, implementation in zip([model, teacher], previous):
                m.set_attn_implementation(implementation)
    report.modules_changed = len(report.metrics.get("kept_teacher_layers", [])) or 1
    report.metrics.update({"train_steps": result.steps, "train_seconds": round(result.seconds, 1),
                           "losses": ["hard"] * (config.hard_weight > 0) + ["soft"] * (config.soft_weight > 0)
                           + list(config.intermediate_weights()) + ["similarity"] * (config.similarity_weight > 0)})
    report.notes.append(f"distilled {result.steps} steps with {', '.join(report.metrics['losses'])} losses")
    return report
