"""The four task types and what each asks of a model: the head it carries and the one tensor that stands for
its prediction (what metrics read, distillation matches and exports must reproduce).

The type is read from the model's class, so a saved model keeps it without extra state: a
`...ForSequenceClassification` classifies, `...ForQuestionAnswering` marks answer spans,
`...ForTokenClassification` tags tokens, and a bare encoder (`BertModel`) embeds sentences."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from bertcompress.core.errors import BertCompressError

CLASSIFICATION = "classification"
QUESTION_ANSWERING = "question_answering"
TOKEN_CLASSIFICATION = "token_classification"
EMBEDDING = "embedding"
TASK_TYPES = (CLASSIFICATION, QUESTION_ANSWERING, TOKEN_CLASSIFICATION, EMBEDDING)

HEAD_SUFFIXES = {"ForSequenceClassification": CLASSIFICATION, "ForQuestionAnswering": QUESTION_ANSWERING,
                 "ForTokenClassification": TOKEN_CLASSIFICATION}
ENCODER_SUFFIX = "Model"  # BertModel, RobertaModel, DistilBertModel, ElectraModel


def check_task_type(task_type: str) -> str:
    if task_type not in TASK_TYPES:
        raise BertCompressError(f"task type {task_type!r} is not offered; use one of {', '.join(TASK_TYPES)}")
    return task_type


def type_of_class_name(name: str) -> str | None:
    """The task type an architecture name (a class name or config.architectures entry) is for, if any."""
    for suffix, task_type in HEAD_SUFFIXES.items():
        if name.endswith(suffix):
            return task_type
    if name.endswith(ENCODER_SUFFIX) and "For" not in name:
        return EMBEDDING
    return None


def task_type_of(model: nn.Module) -> str:
    """The task type of a model; runtime models (ONNX Runtime, OpenVINO) carry it as `task_type`."""
    declared = getattr(model, "task_type", None)
    if isinstance(declared, str):
        return declared
    found = type_of_class_name(type(model).__name__)
    if found is None:
        raise BertCompressError(f"{type(model).__name__} is not a model of a known task type "
                                f"({', '.join(TASK_TYPES)})")
    return found


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """sentence-transformers' mean pooling over real tokens, then L2-normalised (as all-MiniLM-L6-v2 does)."""
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    pooled = (hidden * mask).sum(1) / mask.sum(1).clamp_min(1e-9)
    return F.normalize(pooled, p=2, dim=-1)


def prediction(task_type: str, outputs, attention_mask: torch.Tensor) -> torch.Tensor:
    """The tensor a model's outputs stand for: classification (batch, labels); token classification
    (batch, tokens, labels); QA (batch, tokens, 2) start/end logits; embedding (batch, hidden) unit vectors.
    Runtime models return it already, as `.logits`."""
    if task_type == QUESTION_ANSWERING and getattr(outputs, "start_logits", None) is not None:
        return torch.stack([outputs.start_logits, outputs.end_logits], dim=-1)
    if task_type == EMBEDDING and getattr(outputs, "last_hidden_state", None) is not None:
        return mean_pool(outputs.last_hidden_state, attention_mask)
    return outputs.logits


AUTO_CLASSES = {CLASSIFICATION: "AutoModelForSequenceClassification",
                QUESTION_ANSWERING: "AutoModelForQuestionAnswering",
                TOKEN_CLASSIFICATION: "AutoModelForTokenClassification", EMBEDDING: "AutoModel"}


def auto_class(task_type: str):
    """The transformers Auto class that builds a model of this task type (with its head)."""
    import transformers

    return getattr(transformers, AUTO_CLASSES[check_task_type(task_type)])


def checkpoint_type(architectures: list[str] | None) -> str | None:
    """The task type a checkpoint's config.architectures names, or None for a bare or unnamed one."""
    found = [type_of_class_name(name) for name in architectures or []]
    return next((t for t in found if t not in (None, EMBEDDING)), None)


OUTPUT_NAMES = {EMBEDDING: "sentence_embedding", QUESTION_ANSWERING: "span_logits"}  # in exported graphs


def output_name(task_type: str) -> str:
    """The name of an exported graph's one output: "logits", or what it holds for embedders and QA."""
    return OUTPUT_NAMES.get(task_type, "logits")


def config_task_type(config) -> str:
    """The task type a saved config's architectures name (a runtime model has only its config)."""
    names = getattr(config, "architectures", None) or []
    return next((t for t in map(type_of_class_name, names) if t is not None), CLASSIFICATION)
