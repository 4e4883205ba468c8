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
            assert abs(entry["throughput"] - batch / (entry["median_ms"] / 1000)) / entry["throughput"] < 0.01


def test_top_level_evaluate_and_benchmark(tmp_path, tokenizer):
    import bertcompress as bc
    from bertcompress.data.tasks import Example, Task

    bc.save(tiny_model(), tmp_path / "m", tokenizer)
    model = bc.load(tmp_path / "m")
    examples = [Example("good movie", 1), Example("bad movie", 0), Example("fine film", 1)]
    task = Task("toy", ["neg", "pos"], {"test": examples})
    result = bc.evaluate(model, task)  # tokenizer found beside the saved model
    assert result["n"] == 3 and 0 <= result["accuracy"] <= 1
    timing = bc.benchmark(model, batch_sizes=(2,), seq_len=8, repeats=2)
    assert timing["batch_2"]["median_ms"] > 0
