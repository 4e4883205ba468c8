"""Convenience entry points: `bc.evaluate(model, task)` and `bc.benchmark(model)`."""
from __future__ import annotations

import torch.nn as nn

from bertcompress.data.batching import encode
from bertcompress.data.tasks import Task
from bertcompress.evaluation.latency import benchmark_many
from bertcompress.evaluation.metrics import score


def evaluate(model: nn.Module, task: Task, tokenizer=None, split: str = "test", max_length: int = 64) -> dict:
    """Accuracy and macro-F1 on a task split; the tokenizer defaults to the one saved with the model."""
    if tokenizer is None:
        from bertcompress.io import load_tokenizer

        tokenizer = load_tokenizer(getattr(model, "_bertcompress_source", "minilm"))
    result, _ = score(model, encode(task.split(split), tokenizer, max_length), task.num_labels)
    return result


def benchmark(model: nn.Module, batch_sizes: tuple[int, ...] = (1, 32), seq_len: int = 64, repeats: int = 20,
              threads: int | None = None) -> dict:
    """Median CPU latency (ms) and throughput per batch size."""
    return benchmark_many({"model": model}, batch_sizes, seq_len, repeats, threads=threads)["model"]
