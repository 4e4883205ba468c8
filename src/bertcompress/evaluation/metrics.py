"""Predictions, accuracy, macro-F1 and agreement with a reference model's predictions."""
from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn as nn

from bertcompress.data.batching import Encoded, model_inputs


@torch.inference_mode()
def logits(model: nn.Module, data: Encoded, batch_size: int = 64,
           on_batch: Callable[[int], None] | None = None) -> torch.Tensor:
    """fp32 logits of every example, in the data's order; `on_batch(n)` after each batch of n (progress)."""
    model.eval()
    device = next(model.parameters()).device
    # sort by length so batches pad little; restore the original order afterwards
    order = sorted(range(len(data)), key=lambda i: len(data.ids[i]))
    rows: list[torch.Tensor | None] = [None] * len(data)
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        batch = {k: v.to(device) for k, v in model_inputs(data.batch(chunk)).items()}
        for i, row in zip(chunk, model(**batch).logits.float().cpu()):
            rows[i] = row
        if on_batch is not None:
            on_batch(len(chunk))
    return torch.stack(rows) if rows else torch.zeros(0, 0)


def predict(model: nn.Module, data: Encoded, batch_size: int = 64) -> list[int]:
    return logits(model, data, batch_size).argmax(-1).tolist() if len(data) else []


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


def score(model: nn.Module, data: Encoded, num_labels: int, reference: Sequence[int] | None = None) -> dict:
    predictions = predict(model, data)
    result = {"accuracy": accuracy(predictions, data.labels),
              "macro_f1": macro_f1(predictions, data.labels, num_labels), "n": len(data)}
    if reference is not None:
        result["agreement"] = accuracy(predictions, reference)
    return result, predictions
