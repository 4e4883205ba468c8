"""The main job end to end on a tiny local model and user data: report, results, plots, saved variants."""
import json

import bertcompress as bc
from bertcompress.data import tasks
from bertcompress.pipeline import RunOptions, run
from bertcompress.recipe import resolve_recipe
from bertcompress.training.loop import TrainConfig
from tests.conftest import tiny_model


def test_main_job_writes_a_complete_report_and_reuses_the_teacher(tmp_path, tokenizer, cache):
    model_dir = tmp_path / "tiny"
    tiny_model().bert.save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    rows = "".join(f"{'good fine superb' if i % 2 else 'bad dull awful'} movie,{i % 2}\n" for i in range(60))
    (tmp_path / "d.csv").write_text("text,label\n" + rows)
    task = tasks.from_files(tmp_path / "d.csv")
    options = RunOptions(model=str(model_dir), recipes=[resolve_recipe("dynamic-int8")], output=tmp_path / "runs",
                         name="r", train=TrainConfig(max_steps=15, batch_size=8, learning_rate=3e-3),
                         seq_len=16, repeats=2, measure_memory=False)
    target = run(task, options)
    results = json.loads((target / "results.json").read_text())
    assert [v["variant"] for v in results["variants"]] == ["teacher (fp32)", "dynamic-int8"]
    teacher, int8 = results["variants"]
    assert results["teacher"]["cached"] is False
    assert int8["size_mb"] < teacher["size_mb"] and int8["encoder_linear_mb"] < teacher["encoder_linear_mb"] / 3
    assert 0 <= int8["test_accuracy"] <= 1 and int8["agreement"] is not None
    for name in ("report.md", "accuracy_vs_size.png", "accuracy_vs_latency.png"):
        assert (target / name).stat().st_size > 0
    assert "| dynamic-int8 |" in (target / "report.md").read_text()
    assert bc.load(target / "models" / "dynamic-int8")._bertcompress_history[0]["method"] == "dynamic_int8"
    again = json.loads((run(task, options) / "results.json").read_text())
    assert again["teacher"]["cached"] is True
    assert again["variants"][1]["test_accuracy"] == int8["test_accuracy"]
    assert not list((tmp_path / "runs").glob(".*tmp*"))
