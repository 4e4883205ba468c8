"""CPU latency and throughput at fixed shapes; several models measured interleaved so ratios are fair."""
from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn as nn


def synthetic_batch(batch_size: int, seq_len: int, vocab_size: int, seed: int = 0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    low = 1000 if vocab_size > 2000 else 5  # skip special and unused tokens of real vocabularies
    ids = torch.randint(low, vocab_size, (batch_size, seq_len), generator=generator)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


@torch.inference_mode()
def _time_once(model: nn.Module, batch: dict) -> float:
    started = time.perf_counter()
    model(**batch)
    return time.perf_counter() - started


def benchmark_many(
    models: dict[str, nn.Module],
    batch_sizes: tuple[int, ...] = (1, 32),
    seq_len: int = 64,
    repeats: int = 20,
    warmup: int = 3,
    threads: int | None = None,
) -> dict[str, dict]:
    """Median latency (ms) and throughput (examples/s) per model and batch size, rounds interleaved."""
    if threads:
        torch.set_num_threads(threads)
    results: dict[str, dict] = {name: {"threads": torch.get_num_threads(), "seq_len": seq_len} for name in models}
    for model in models.values():
        model.eval()
    for batch_size in batch_sizes:
        vocab = min(getattr(m.config, "vocab_size", 30000) for m in models.values())
        batch = synthetic_batch(batch_size, seq_len, vocab)
        for model in models.values():
            for _ in range(warmup):
                _time_once(model, batch)
        timings: dict[str, list[float]] = {name: [] for name in models}
        for _ in range(repeats):
            for name, model in models.items():  # interleaved: machine noise hits every model alike
                timings[name].append(_time_once(model, batch))
        for name, samples in timings.items():
            median = statistics.median(samples)
            results[name][f"batch_{batch_size}"] = {
                "median_ms": round(median * 1000, 3),
                "p90_ms": round(sorted(samples)[int(0.9 * (len(samples) - 1))] * 1000, 3),
                "throughput": round(batch_size / median, 2),
                "repeats": repeats,
                "samples_ms": [round(t * 1000, 3) for t in samples],  # round by round, for paired ratios
            }
    return results


# VmHWM, not ru_maxrss: Linux carries ru_maxrss across exec, so a child would report its parent's peak.
_MEMORY_PROBE = """
import json, sys, torch
from bertcompress.evaluation.latency import synthetic_batch
from bertcompress.runtimes import open_model
def peak_mb():
    line = [l for l in open("/proc/self/status") if l.startswith("VmHWM")][0]
    return int(line.split()[1]) / 1024
torch.set_num_threads(int(sys.argv[3]))
before = peak_mb()
model = open_model(sys.argv[1])
with torch.inference_mode():
    model(**synthetic_batch(int(sys.argv[2]), int(sys.argv[4]), model.config.vocab_size))
after = peak_mb()
print(json.dumps({"peak_rss_mb": round(after, 1), "model_and_inference_mb": round(after - before, 1)}))
"""


def peak_memory(saved_model: Path, batch_size: int = 32, seq_len: int = 64, threads: int = 1) -> dict:
    """Peak resident memory of a fresh process that loads the saved model (or export, in its runtime) and runs
    one batch."""
    result = subprocess.run(
        [sys.executable, "-c", _MEMORY_PROBE, str(saved_model), str(batch_size), str(threads), str(seq_len)],
        capture_output=True, text=True,
    )
    if result.returncode != 0:
        return {"error": (result.stderr.strip().splitlines() or ["failed"])[-1]}
    return json.loads(result.stdout.strip().splitlines()[-1])
