"""Each task type's losses, per example so the loop can weigh and average them over a global batch:
the loss on labels, the loss to a teacher's outputs, and the loss whose gradients rank units by importance.

Labels by type: classification one id per example; token classification one id per token (IGNORED where a
token carries none: padding, special tokens, word continuations); QA (start, end) token positions; embedding
none (its labels, where a task has them, only score neighbours). UNLABELLED (-1) marks teacher-only text."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from bertcompress.core.errors import BertCompressError
from bertcompress.core.task_types import (CLASSIFICATION, EMBEDDING, QUESTION_ANSWERING, TOKEN_CLASSIFICATION,
                                          prediction)

UNLABELLED = -1
IGNORED = -100  # token positions without a tag (transformers' convention)
MASKED_LOGIT = -1e4  # padding positions, out of a span distribution


def _per_token_mean(per_token: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    keep = keep.to(per_token.dtype)
    return (per_token * keep).sum(-1) / keep.sum(-1).clamp_min(1)


def label_losses(task_type: str, outputs, batch: dict) -> torch.Tensor:
    """Per-example loss on the labels; 0 for examples without any (unlabelled text, embedding tasks)."""
    labels = batch["labels"]
    if task_type == CLASSIFICATION:
        return F.cross_entropy(outputs.logits, labels, reduction="none", ignore_index=UNLABELLED)
    if task_type == TOKEN_CLASSIFICATION:
        labels = labels.masked_fill(labels == UNLABELLED, IGNORED)
        per_token = F.cross_entropy(outputs.logits.transpose(1, 2), labels, reduction="none", ignore_index=IGNORED)
        return _per_token_mean(per_token, labels != IGNORED)
    if task_type == QUESTION_ANSWERING:
        spans = _span_logits(prediction(task_type, outputs, batch["attention_mask"]), batch["attention_mask"])
        losses = [F.cross_entropy(spans[..., side], labels[:, side], reduction="none", ignore_index=UNLABELLED)
                  for side in (0, 1)]
        return (losses[0] + losses[1]) / 2
    if task_type == EMBEDDING:
        return torch.zeros(labels.shape[0], device=labels.device)
    raise BertCompressError(f"no label loss for task type {task_type!r}")


def needs_teacher(task_type: str) -> bool:
    """Embedding models learn only from a teacher's vectors: they carry no labels to train on."""
    return task_type == EMBEDDING


def _span_logits(spans: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    return spans.masked_fill(attention_mask.unsqueeze(-1) == 0, MASKED_LOGIT)


def soft_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """KL(teacher || student) over the last axis on temperature-softened logits, times T^2 (Hinton et al.)."""
    log_student = F.log_softmax(student_logits / temperature, dim=-1)
    teacher = F.softmax(teacher_logits / temperature, dim=-1)
    return F.kl_div(log_student, teacher, reduction="none").sum(-1) * temperature**2


def distillation_losses(task_type: str, student, teacher, batch: dict, temperature: float) -> torch.Tensor:
    """Per-example loss to the teacher: KL of the class distribution (classification), of each real token's
    tag distribution (tokens), of the start and end distributions over the sequence (QA); 1 - cosine of the
    sentence vectors (embedding)."""
    mask = batch["attention_mask"]
    s, t = prediction(task_type, student, mask), prediction(task_type, teacher, mask)
    if task_type == CLASSIFICATION:
        return soft_kl(s, t, temperature)
    if task_type == TOKEN_CLASSIFICATION:
        return _per_token_mean(soft_kl(s, t, temperature), mask)
    if task_type == QUESTION_ANSWERING:
        s, t = _span_logits(s, mask), _span_logits(t, mask)
        return (soft_kl(s[..., 0], t[..., 0], temperature) + soft_kl(s[..., 1], t[..., 1], temperature)) / 2
    if task_type == EMBEDDING:
        return 1 - F.cosine_similarity(s, t, dim=-1)
    raise BertCompressError(f"no distillation loss for task type {task_type!r}")


def similarity_losses(student_vectors: torch.Tensor, teacher_vectors: torch.Tensor) -> torch.Tensor:
    """Per example: the mean squared difference between its row of the student's and of the teacher's in-batch
    cosine-similarity matrices. Relational distillation: it teaches which texts are near each other (the
    neighbour structure an embedder is used for) rather than where each vector lies."""
    s, t = F.normalize(student_vectors, dim=-1), F.normalize(teacher_vectors, dim=-1)
    return ((s @ s.T - t @ t.T) ** 2).mean(-1)


def importance_loss(task_type: str, outputs, batch: dict, generator: torch.Generator | None = None) -> torch.Tensor:
    """The scalar whose gradients rank heads and neurons (Michel et al.): the label loss, or for embedding
    models (no labels, and a distance to themselves has no gradient) the vectors projected on random unit
    directions, whose squared gradient estimates how strongly each unit moves the vectors (Hutchinson)."""
    if task_type != EMBEDDING:
        return label_losses(task_type, outputs, batch).mean()
    vectors = prediction(task_type, outputs, batch["attention_mask"])
    directions = torch.randn(vectors.shape, generator=generator).to(vectors.device)
    return (vectors * F.normalize(directions, dim=-1)).sum(-1).mean()
