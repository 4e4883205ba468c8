"""The main job end to end on a tiny local model and user data: report, results, plots, saved variants."""
import json

import pytest
import torch

import bertcompress as bc
import bertcompress.pipeline as pipeline
from bertcompress.data import tasks
from bertcompress.pipeline import RunOptions, run
from bertcompress.recipe import resolve_recipe
from bertcompress.training.loop import TrainConfig
from tests.conftest import tiny_model


@pytest.fixture
def job(tmp_path, tokenizer, cache):
    """(task, options) of a short job on a tiny local model and a CSV of 60 rows."""
    model_dir = tmp_path / "tiny"
    tiny_model().bert.save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    rows = "".join(f"{'good fine superb' if i % 2 else 'bad dull awful'} movie,{i % 2}\n" for i in range(60))
    (tmp_path / "d.csv").write_text("text,label\n" + rows)
    task = tasks.from_files(tmp_path / "d.csv")
    options = RunOptions(model=str(model_dir), recipes=[resolve_recipe("dynamic-int8")], output=tmp_path / "runs",
                         name="r", train=TrainConfig(max_steps=15, batch_size=8, learning_rate=3e-3),
                         seq_len=16, repeats=2, measure_memory=False)
    return task, options


def _predictions(model, task, tokenizer) -> list[int]:
    """Test-split predictions one example at a time, without the library's batching."""
    with torch.no_grad():
        return [model(**tokenizer(e.text, return_tensors="pt")).logits.argmax(-1).item()
                for e in task.split("test")]


def test_main_job_writes_a_complete_report_and_reuses_the_teacher(job, tmp_path, tokenizer):
    task, options = job
    target = run(task, options)
    results = json.loads((target / "results.json").read_text())
    assert [v["variant"] for v in results["variants"]] == ["teacher (fp32)", "dynamic-int8"]
    teacher, int8 = results["variants"]
    assert results["teacher"]["cached"] is False
    assert int8["size_mb"] < teacher["size_mb"] and int8["encoder_linear_mb"] < teacher["encoder_linear_mb"] / 3
    # accuracy and agreement recomputed here from the saved models
    labels = [e.label for e in task.split("test")]
    ours = _predictions(bc.load(target / "models" / "dynamic-int8"), task, tokenizer)
    theirs = _predictions(bc.load(results["teacher"]["path"]), task, tokenizer)
    assert int8["test_accuracy"] == pytest.approx(sum(p == y for p, y in zip(ours, labels)) / len(labels))
    assert teacher["test_accuracy"] == pytest.approx(sum(p == y for p, y in zip(theirs, labels)) / len(labels))
    assert int8["agreement"] == pytest.approx(sum(p == t for p, t in zip(ours, theirs)) / len(labels))
    for name in ("report.md", "accuracy_vs_size.png", "accuracy_vs_latency.png"):
        assert (target / name).stat().st_size > 0
    assert "| dynamic-int8 |" in (target / "report.md").read_text()
    assert bc.load(target / "models" / "dynamic-int8")._bertcompress_history[0]["method"] == "dynamic_int8"
    options.overwrite = True
    again = json.loads((run(task, options) / "results.json").read_text())
    assert again["teacher"]["cached"] is True
    assert again["variants"][1]["test_accuracy"] == int8["test_accuracy"]
    assert [p.name for p in (tmp_path / "runs").iterdir()] == ["r"]  # no staging left beside it


class Injected(RuntimeError):
    pass


def _fail(*args, **kwargs):
    raise Injected("injected failure")


@pytest.mark.parametrize("where", ["measure", "write_plots"])
def test_a_failure_mid_run_leaves_no_run_directory(job, tmp_path, monkeypatch, where):
    """`measure` fails after the variants were built; `write_plots` after they were copied into the run's
    staging directory. Neither leaves a run directory, and the rerun reuses the built variant."""
    task, options = job
    copied = []
    real = {"measure": pipeline.measure, "write_plots": pipeline.write_plots}
    real_copy = pipeline.shutil.copytree
    monkeypatch.setattr(pipeline.shutil, "copytree", lambda *a, **k: copied.append(real_copy(*a, **k)) or copied[-1])
    monkeypatch.setattr(pipeline, where, _fail)
    with pytest.raises(Injected):
        run(task, options)
    assert len(copied) == (1 if where == "write_plots" else 0)  # the failure came after real work
    runs = tmp_path / "runs"
    assert not runs.exists() or list(runs.iterdir()) == []
    monkeypatch.setattr(pipeline, where, real[where])
    logged = []
    target = run(task, options, console=_Recorder(logged))  # the same name is free: nothing half-written blocks it
    assert (target / "results.json").exists() and [p.name for p in runs.iterdir()] == ["r"]
    assert any("dynamic-int8: reused from cache" in line for line in logged)


class _Recorder:
    def __init__(self, lines: list):
        self.lines = lines

    def print(self, *items, **_):
        self.lines.append(" ".join(map(str, items)))


@pytest.mark.parametrize("task_type", ["embedding", "question_answering", "token_classification"])
def test_the_main_job_runs_every_task_type_and_reports_its_scores(job, task_type, tmp_path):
    from dataclasses import replace

    from tests.conftest import toy_task

    task = toy_task(task_type) if task_type != "embedding" else tasks.as_type(job[0], "embedding")
    options = replace(job[1], name=f"r-{task_type}", recipes=[resolve_recipe("dynamic-int8")])
    target = run(task, options)
    results = json.loads((target / "results.json").read_text())
    assert results["task"]["type"] == task_type
    teacher, int8 = results["variants"]
    assert int8["size_mb"] < teacher["size_mb"]
    report = (target / "report.md").read_text()
    header = {"embedding": "mean cosine w/ teacher", "question_answering": "test exact match",
              "token_classification": "test entity F1"}[task_type]
    assert header in report
    if task_type == "embedding":
        assert teacher["mean_cosine"] == 1.0 and 0.9 < int8["mean_cosine"] <= 1.0
    else:
        assert 0 <= int8["test_accuracy"] <= 1 and int8["agreement"] is not None
    reloaded = bc.load(target / "models" / "dynamic-int8")
    from bertcompress.core.task_types import task_type_of
    assert task_type_of(reloaded) == task_type


@pytest.mark.slow
def test_every_model_is_also_exported_verified_and_timed_in_each_runtime(job, tmp_path, monkeypatch, capsys):
    task, options = job
    options.runtimes, options.measure_memory = ("torch", "onnxruntime", "openvino"), True
    target = run(task, options)
    results = json.loads((target / "results.json").read_text())
    rows = {r["variant"]: r for r in results["variants"]}
    for name in ("teacher (fp32)", "dynamic-int8"):
        assert rows[name]["runtime"] == "torch"
        for runtime in ("onnxruntime", "openvino"):
            row = rows[f"{name} [{runtime}]"]
            assert row["runtime"] == runtime and row["speedup_b32"] > 0 and row["weights_mb"] > 0
            assert "error" not in row and row["peak_rss_mb"] > 0  # the memory probe opens exports too
            export = target / row["saved_to"]
            assert json.loads((export / "export.json").read_text())["verified"]
            assert row["size_mb"] >= row["weights_mb"]  # the graph and weights count, not the config alone
            # an export verifies against its source: the same predictions on nearly all test texts
            assert abs(row["test_accuracy"] - rows[name]["test_accuracy"]) <= 0.1
    report = (target / "report.md").read_text()
    assert "| variant | runtime |" in report and "| dynamic-int8 [openvino] | openvino |" in report
    # a second run reuses the verified exports: nothing is exported again
    import bertcompress.export as export_module

    monkeypatch.setattr(export_module, "export_model", lambda *a, **k: pytest.fail("exported again"))
    options.overwrite = True
    run(task, options)
