"""Predictions, accuracy, macro-F1 and agreement with a reference model's predictions."""
from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn as nn

from bertcompress.core.task_types import (EMBEDDING, QUESTION_ANSWERING, TOKEN_CLASSIFICATION, prediction,
                                          task_type_of)
from bertcompress.data.batching import Encoded, model_inputs
from bertcompress.data.qa import best_answers
from bertcompress.data.tagging import word_predictions
from bertcompress.evaluation.embedding import embedding_scores, pair_scores
from bertcompress.evaluation.entities import entity_scores
from bertcompress.evaluation.spans import squad_scores, token_f1

PER_TOKEN = (TOKEN_CLASSIFICATION, QUESTION_ANSWERING)


@torch.inference_mode()
def outputs(model: nn.Module, data: Encoded, batch_size: int = 64,
            on_batch: Callable[[int], None] | None = None, task_type: str | None = None) -> list[torch.Tensor]:
    """Each example's fp32 prediction tensor (see core.task_types.prediction), in the data's order; per-token
    outputs keep the example's real tokens only. `on_batch(n)` after each batch of n (progress).
    `task_type`: for a runtime model opened without its config (default: the model's own)."""
    model.eval()
    device = next(model.parameters()).device
    task_type = task_type or task_type_of(model)
    # sort by length so batches pad little; restore the original order afterwards
    order = sorted(range(len(data)), key=lambda i: len(data.ids[i]))
    rows: list[torch.Tensor | None] = [None] * len(data)
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        batch = {k: v.to(device) for k, v in model_inputs(data.batch(chunk)).items()}
        predicted = prediction(task_type, model(**batch), batch["attention_mask"]).float().cpu()
        for i, row in zip(chunk, predicted):
            rows[i] = row[: len(data.ids[i])] if task_type in PER_TOKEN else row
        if on_batch is not None:
            on_batch(len(chunk))
    return rows


def logits(model: nn.Module, data: Encoded, batch_size: int = 64,
           on_batch: Callable[[int], None] | None = None, task_type: str | None = None) -> torch.Tensor:
    """fp32 logits (classifiers) or sentence vectors (embedders) of every example, stacked in data order."""
    rows = outputs(model, data, batch_size, on_batch, task_type)
    return torch.stack(rows) if rows else torch.zeros(0, 0)


def predict(model: nn.Module, data: Encoded, batch_size: int = 64, task_type: str | None = None) -> list[int]:
    return logits(model, data, batch_size, task_type=task_type).argmax(-1).tolist() if len(data) else []


def accuracy(predictions: Sequence[int], labels: Sequence[int]) -> float:
    return sum(p == y for p, y in zip(predictions, labels)) / max(len(labels), 1)


def macro_f1(predictions: Sequence[int], labels: Sequence[int], num_labels: int) -> float:
    scores = []
    for c in range(num_labels):
        tp = sum(p == c and y == c for p, y in zip(predictions, labels))
        fp = sum(p == c and y != c for p, y in zip(predictions, labels))
        fn = sum(p != c and y == c for p, y in zip(predictions, labels))
        scores.append(0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn))
    return sum(scores) / num_labels


def score(model: nn.Module, data: Encoded, num_labels: int, reference=None, task_type: str | None = None,
          label_names: list[str] | None = None, rows: list[torch.Tensor] | None = None) -> tuple[dict, object]:
    """The model's scores on `data` and what a later model is compared against (`reference`): for
    classifiers accuracy, macro-F1 and prediction agreement; for embedders kNN accuracy (as `accuracy`; on
    scored pairs Spearman's rho of the pairs' cosines), and mean cosine (as `agreement`) and neighbour recall against the reference's vectors; for QA, SQuAD
    F1 (as `accuracy`) and exact match, and the share of identical answers (as `agreement`); for tags,
    entity-level F1 (as `accuracy`; `label_names` default to the model config's) and word agreement.
    `rows`: the model's `outputs` on `data` when the caller already has them."""
    task_type = task_type or task_type_of(model)
    rows = outputs(model, data, task_type=task_type) if rows is None else rows
    if task_type == QUESTION_ANSWERING:
        return _span_score(rows, data, reference)
    if task_type == TOKEN_CLASSIFICATION:
        return _tag_score(model, rows, data, reference, label_names)
    stacked = torch.stack(rows) if rows else torch.zeros(0, 0)
    if task_type == EMBEDDING:
        vectors = stacked
        found = embedding_scores(vectors, data.labels, reference)
        if reference is not None:
            found["agreement"] = found["mean_cosine"]
        if "similarity_scores" in data.extra:  # scored pairs: Spearman's rho is what a budget reads
            found |= pair_scores(vectors, data.extra["similarity_scores"])
            return {"accuracy": found["spearman"], **found}, vectors
        return {"accuracy": found["knn_accuracy"], **found}, vectors
    predictions = stacked.argmax(-1).tolist() if len(data) else []
    result = {"accuracy": accuracy(predictions, data.labels),
              "macro_f1": macro_f1(predictions, data.labels, num_labels), "n": len(data)}
    if reference is not None:
        result["agreement"] = accuracy(predictions, reference)
    return result, predictions


def _span_score(rows: list[torch.Tensor], data: Encoded, reference: dict | None) -> tuple[dict, dict]:
    """SQuAD exact match and F1 (F1 is the `accuracy` a budget reads); agreement: the share of questions
    answered with the same text as the reference."""
    answers = best_answers(rows, data)
    golds = {e.id: [a.text for a in e.answers] for e in data.extra["examples"] if e.answers}
    found = squad_scores(answers, golds)
    result = {"accuracy": found["f1"], **found}
    if reference is not None:
        result["agreement"] = sum(answers[q] == reference.get(q) for q in answers) / max(len(answers), 1)
    return result, answers


def is_labelled(data: Encoded) -> bool:
    """Whether every example carries a label (classification) or every question an answer (QA)."""
    if "examples" in data.extra:  # questions and tagged sentences
        return all(e.label >= 0 for e in data.extra["examples"])
    return bool(data.labels) and all(label >= 0 for label in data.labels if isinstance(label, int))


def _tag_score(model: nn.Module, rows: list[torch.Tensor], data: Encoded, reference: list | None,
               label_names: list[str] | None) -> tuple[dict, list]:
    predicted = word_predictions(rows, data)
    examples = data.extra["examples"]
    names = label_names or [model.config.id2label[i] for i in range(len(model.config.id2label))]
    result = {"accuracy": None, "n": len(examples)}
    if all(e.tags for e in examples):
        found = entity_scores(predicted, [e.tags for e in examples], names)
        result = {"accuracy": found["f1"], **found}
    if reference is not None:
        pairs = [(p, r) for mine, theirs in zip(predicted, reference) for p, r in zip(mine, theirs)]
        result["agreement"] = sum(p == r for p, r in pairs) / max(len(pairs), 1)
    return result, predicted


def per_example(data: Encoded, rows: list[torch.Tensor], task_type: str) -> list[float]:
    """One score per example, for paired tests: 1/0 for a right/wrong class, the best SQuAD F1 over a
    question's answers, the share of a sentence's words tagged right. Embeddings have no per-example score."""
    if task_type == QUESTION_ANSWERING:
        answers = best_answers(rows, data)
        return [max((token_f1(answers.get(e.id, ""), a.text) for a in e.answers), default=0.0)
                for e in data.extra["examples"]]
    if task_type == TOKEN_CLASSIFICATION:
        predicted = word_predictions(rows, data)
        return [sum(p == t for p, t in zip(mine, e.tags)) / max(len(e.tags), 1)
                for mine, e in zip(predicted, data.extra["examples"])]
    if task_type == EMBEDDING:
        raise ValueError("embedding models have no per-example score; compare them to a reference instead")
    return [float(row.argmax(-1).item() == label) for row, label in zip(rows, data.labels)]
