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
