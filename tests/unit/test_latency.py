import time
from types import SimpleNamespace

import torch
import torch.nn as nn

from bertcompress.evaluation.latency import benchmark_many
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
