"""Intermediate distillation losses (TinyBERT, DistilBERT, Patient-KD), all averaged over real
(unpadded) tokens. Logit distillation (Hinton) is `hooks.LogitDistillation`."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def _token_mean(per_token: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of a (batch, tokens) loss over the tokens the attention mask keeps."""
    mask = mask.to(per_token.dtype)
    return (per_token * mask).sum() / mask.sum().clamp_min(1)


def hidden_mse(student: torch.Tensor, teacher: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """TinyBERT: MSE between (projected) student and teacher hidden states, per element."""
    return _token_mean((student - teacher).pow(2).mean(-1), mask)


def hidden_cosine(student: torch.Tensor, teacher: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """DistilBERT: 1 - cos(student, teacher) per token, aligning directions rather than scales."""
    return _token_mean(1 - F.cosine_similarity(student, teacher, dim=-1), mask)


def attention_mse(student: torch.Tensor, teacher: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """TinyBERT: MSE between attention distributions (batch, heads, queries, keys) over real queries.
    With different head counts, both are averaged over heads first."""
    if student.shape[1] != teacher.shape[1]:
        student, teacher = student.mean(1, keepdim=True), teacher.mean(1, keepdim=True)
    per_query = (student - teacher).pow(2).sum(-1).mean(1)  # sum over keys: a distance per distribution
    return _token_mean(per_query, mask)


def patient_kd(student_cls: torch.Tensor, teacher_cls: torch.Tensor) -> torch.Tensor:
    """Patient-KD: squared distance between L2-normalised [CLS] states, mean over the batch."""
    return (F.normalize(student_cls, dim=-1) - F.normalize(teacher_cls, dim=-1)).pow(2).sum(-1).mean()
