"""Measure any set of models in one run: accuracy, macro-F1, agreement with a baseline, size and bytes by
component, CPU latency interleaved (speedups paired round by round, with their spread), peak memory."""
from __future__ import annotations

import platform
import statistics
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn

from bertcompress.core.errors import BertCompressError
from bertcompress.core.task_types import EMBEDDING
from bertcompress.data.batching import encode
from bertcompress.data.tasks import Task
from bertcompress.evaluation.embedding import NEIGHBOURS
from bertcompress.evaluation.latency import benchmark_many, peak_memory
from bertcompress.evaluation.metrics import score
from bertcompress.evaluation.size import counts_by_component, encoder_linear_bytes
from bertcompress.hardware import cpu_features, cpu_name
from bertcompress.runtimes import model_bytes, weights_file

MB = 1e6
EMBEDDING_KEYS = ("mean_cosine", f"neighbour_recall_at_{NEIGHBOURS}")
TYPE_SCORES = ("exact_match", "precision", "recall", "spearman")  # beside each type's `accuracy`


@dataclass(frozen=True)
class MeasureOptions:
    batch_sizes: tuple[int, ...] = (1, 32)
    seq_len: int = 64  # latency shape
    max_length: int = 64  # truncation for accuracy
    repeats: int = 20
    threads: int | None = None
    memory: bool = True


def accuracy_rows(models: dict[str, nn.Module], task: Task, tokenizer, max_length: int) -> list[dict]:
    """Validation/test accuracy, test macro-F1 and agreement with the first model's test predictions; for
    embedders kNN accuracy, and mean cosine and neighbour recall against the first model's vectors."""
    valid = encode(task.split("validation"), tokenizer, max_length)
    test = encode(task.split("test"), tokenizer, max_length)
    rows, reference = [], None
    for name, model in models.items():
        validation, _ = score(model, valid, task.num_labels, label_names=task.label_names)
        tested, predictions = score(model, test, task.num_labels, reference, label_names=task.label_names)
        if reference is None and task.type == EMBEDDING:  # the reference agrees with itself exactly
            tested |= {key: 1.0 for key in EMBEDDING_KEYS}
        reference = predictions if reference is None else reference
        rows.append({
            "variant": name, "validation_accuracy": validation["accuracy"], "test_accuracy": tested["accuracy"],
            "test_macro_f1": tested.get("macro_f1"), "agreement": tested.get("agreement"),
            **{key: tested[key] for key in EMBEDDING_KEYS if key in tested},
            **{f"test_{key}": tested[key] for key in TYPE_SCORES if key in tested}, **_stored_sizes(model),
        })
    return rows


def _stored_sizes(model) -> dict:
    """Parameters and bytes by component, for PyTorch models in our layout (a runtime session has none)."""
    if not isinstance(model, nn.Module):
        return {}
    try:  # torch.ao's packed modules keep no plain tensors to count
        counts = counts_by_component(model)
        return {"parameters_m": counts["parameters"]["total"] / MB, "components": counts,
                "encoder_linear_mb": encoder_linear_bytes(model) / MB}
    except (BertCompressError, AttributeError, TypeError):
        return {}


def paired_speedup(baseline: dict, own: dict) -> dict:
    """Median and quartiles of baseline/own time over the interleaved rounds (same machine state each)."""
    ratios = sorted(b / o for b, o in zip(baseline["samples_ms"], own["samples_ms"]))
    quartiles = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else [ratios[0]] * 3
    return {"median": round(statistics.median(ratios), 3), "q1": round(quartiles[0], 3),
            "q3": round(quartiles[2], 3)}


def latency_fields(own: dict, baseline: dict, batch_sizes: tuple[int, ...]) -> dict:
    fields = {}
    for b in batch_sizes:
        mine, base = own[f"batch_{b}"], baseline[f"batch_{b}"]
        spread = paired_speedup(base, mine)
        fields |= {f"latency_b{b}_ms": mine["median_ms"], f"throughput_b{b}": mine["throughput"],
                   f"speedup_b{b}": base["median_ms"] / mine["median_ms"],
                   f"speedup_b{b}_q1": spread["q1"], f"speedup_b{b}_q3": spread["q3"]}
    return fields


def measure(models: dict[str, nn.Module], saved: dict[str, Path], task: Task, tokenizer,
            options: MeasureOptions = MeasureOptions()) -> tuple[list[dict], dict]:
    """One row per model (the first is the baseline for agreement and speedups) and the raw latency."""
    rows = accuracy_rows(models, task, tokenizer, options.max_length)
    latency = benchmark_many(models, options.batch_sizes, options.seq_len, options.repeats, threads=options.threads)
    baseline = latency[next(iter(models))]
    for row in rows:
        name, path = row["variant"], saved[row["variant"]]
        row["size_mb"] = model_bytes(path) / MB
        row["weights_mb"] = weights_file(path).stat().st_size / MB
        row |= latency_fields(latency[name], baseline, options.batch_sizes)
        if options.memory:
            row |= peak_memory(path, batch_size=max(options.batch_sizes), seq_len=options.seq_len,
                               threads=latency[name]["threads"])
    return rows, latency


def environment(threads: int) -> dict:
    """What the figures were measured on: they are never compared across CPUs."""
    return {"torch": torch.__version__, "python": platform.python_version(), "cpu": cpu_name(),
            "cpu_features": cpu_features(), "machine": platform.machine(), "threads": threads,
            "quantized_engine": torch.backends.quantized.engine}
