import inspect
import statistics
import time
from types import SimpleNamespace

import pytest
import torch
import torch.nn as nn

from bertcompress.evaluation.latency import benchmark_many, peak_memory, synthetic_batch
from tests.conftest import tiny_model


def test_interleaved_benchmark_reports_each_model_and_batch():
    results = benchmark_many({"a": tiny_model(), "b": tiny_model(seed=1)}, batch_sizes=(1, 4), seq_len=16,
                             repeats=4, warmup=1)
    for name in ("a", "b"):
        assert results[name]["threads"] >= 1 and results[name]["seq_len"] == 16
        for batch in (1, 4):
            entry = results[name][f"batch_{batch}"]
            assert entry["median_ms"] > 0 and entry["p90_ms"] >= entry["median_ms"]
            assert entry["repeats"] == 4
            assert abs(entry["throughput"] - batch / (entry["median_ms"] / 1000)) / entry["throughput"] < 0.01


class Recording(nn.Module):
    """Appends (name, batch size) to a shared log on every call; sleeps `delay` seconds."""

    def __init__(self, name: str, log: list, delay: float = 0.0):
        super().__init__()
        self.name, self.log, self.delay = name, log, delay
        self.config = SimpleNamespace(vocab_size=64)

    def forward(self, input_ids, attention_mask):
        self.log.append((self.name, input_ids.shape[0]))
        if self.delay:
            time.sleep(self.delay)
        return input_ids


def test_models_are_timed_in_interleaved_rounds_and_each_keeps_its_own_samples():
    log: list = []
    models = {"slow": Recording("slow", log, delay=0.004), "fast": Recording("fast", log)}
    results = benchmark_many(models, batch_sizes=(1, 2), seq_len=8, repeats=5, warmup=2)
    for batch in (1, 2):
        calls = [name for name, size in log if size == batch]
        assert sorted(calls[:4]) == ["fast", "fast", "slow", "slow"]  # warm-up, before any timing
        assert calls[4:] == ["slow", "fast"] * 5  # one call per model per round, rounds in turn
    assert [size for _, size in log] == [1] * 14 + [2] * 14
    for batch in (1, 2):
        slow, fast = results["slow"][f"batch_{batch}"], results["fast"][f"batch_{batch}"]
        assert slow["median_ms"] >= 4.0 > fast["median_ms"]


def test_reported_numbers_follow_from_the_round_by_round_samples():
    log: list = []
    results = benchmark_many({"m": Recording("m", log, delay=0.002)}, batch_sizes=(3,), seq_len=8, repeats=7,
                             warmup=0)
    entry = results["m"]["batch_3"]
    samples = entry["samples_ms"]
    assert len(samples) == 7 and all(s >= 2.0 and s == round(s, 3) for s in samples)
    assert entry["median_ms"] == pytest.approx(statistics.median(samples), abs=1e-3)
    assert entry["median_ms"] == round(entry["median_ms"], 3)
    assert entry["p90_ms"] == sorted(samples)[int(0.9 * 6)]
    assert entry["throughput"] == pytest.approx(3 / (entry["median_ms"] / 1000), rel=1e-3)
    assert entry["throughput"] == round(entry["throughput"], 2) and entry["throughput"] != round(entry["throughput"])


def test_benchmark_defaults_are_the_documented_shapes():
    defaults = {name: p.default for name, p in inspect.signature(benchmark_many).parameters.items()}
    assert defaults == {"models": inspect.Parameter.empty, "batch_sizes": (1, 32), "seq_len": 64, "repeats": 20,
                        "warmup": 3, "threads": None}


def test_threads_are_set_when_asked():
    before = torch.get_num_threads()
    try:
        assert benchmark_many({"m": Recording("m", [])}, (1,), 8, 1, 0, threads=1)["m"]["threads"] == 1
    finally:
        torch.set_num_threads(before)


def test_synthetic_batch_is_seeded_and_skips_special_tokens():
    first, again = synthetic_batch(4, 50, 30522), synthetic_batch(4, 50, 30522)
    assert torch.equal(first["input_ids"], again["input_ids"]) and first["input_ids"].shape == (4, 50)
    assert not torch.equal(first["input_ids"], synthetic_batch(4, 50, 30522, seed=1)["input_ids"])
    assert int(first["input_ids"].min()) >= 1000 and int(first["input_ids"].max()) < 30522
    assert torch.equal(first["attention_mask"], torch.ones(4, 50, dtype=torch.long))
    small = synthetic_batch(64, 64, 2000)["input_ids"]  # a small vocabulary keeps all but the first 5
    assert int(small.min()) == 5 and int(small.max()) == 1999
    assert int(synthetic_batch(64, 64, 2001)["input_ids"].min()) == 1000
    tiny = synthetic_batch(16, 16, 8)["input_ids"]
    assert set(tiny.unique().tolist()) == {5, 6, 7}


def test_peak_memory_of_a_saved_model_and_a_clear_failure(tmp_path):
    import bertcompress as bc

    bc.save(tiny_model(), tmp_path / "m")
    measured = peak_memory(tmp_path / "m", batch_size=2, seq_len=8)
    assert set(measured) == {"peak_rss_mb", "model_and_inference_mb"}
    assert measured["peak_rss_mb"] > 50 and 0 <= measured["model_and_inference_mb"] < measured["peak_rss_mb"]
    failed = peak_memory(tmp_path / "missing")
    assert list(failed) == ["error"] and "missing" in failed["error"] and "Traceback" not in failed["error"]


def test_top_level_evaluate_and_benchmark(tmp_path, tokenizer):
    import bertcompress as bc
    from bertcompress.data.tasks import Example, Task

    bc.save(tiny_model(), tmp_path / "m", tokenizer)
    model = bc.load(tmp_path / "m")
    examples = [Example("good movie", 1), Example("bad movie", 0), Example("fine film", 1), Example("dull plot", 0)]
    task = Task("toy", ["neg", "pos"], {"test": examples})
    result = bc.evaluate(model, task)  # tokenizer found beside the saved model
    # the same predictions computed here, one example at a time, without the library's batching
    labels = [example.label for example in examples]
    with torch.no_grad():
        predictions = [model(**tokenizer(e.text, return_tensors="pt")).logits.argmax(-1).item() for e in examples]
    assert result["n"] == 4
    assert result["accuracy"] == sum(p == y for p, y in zip(predictions, labels)) / 4
    timing = bc.benchmark(model, batch_sizes=(2,), seq_len=8, repeats=2)
    assert timing["batch_2"]["median_ms"] > 0 and timing["batch_2"]["repeats"] == 2
