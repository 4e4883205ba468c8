"""bertcompress.benchmarks: rows that start from another row, peer rows, per-row training fields, extra
columns, smoke output and script options, on a tiny in-process model (no downloads)."""
import json
import sys

import pytest

import bertcompress as bc
from bertcompress import benchmarks
from bertcompress.benchmarks import Row, Settings, Table, accuracy, build_rows, markdown, torch_dynamic_int8
from bertcompress.training.teacher import Teacher
from tests.conftest import tiny_model, toy_task


@pytest.fixture
def setup(tmp_path, tokenizer, cache):
    model = tiny_model()
    teacher = Teacher(model, bc.save(model, tmp_path / "teacher"), cached=True)
    ctx = bc.Context(task=toy_task(), tokenizer=tokenizer, teacher=model, seed=0,
                     train=bc.TrainConfig(max_steps=1, batch_size=8, max_length=16))
    return teacher, ctx, tokenizer


def test_rows_start_from_another_row_and_peers_get_its_model(setup, tmp_path):
    teacher, ctx, tokenizer = setup
    seen = {}

    def peer(model, path):
        seen["model"] = model
        return torch_dynamic_int8(model, path)

    rows = [Row("teacher"), Row("int8", (bc.DynamicInt8(),)), Row("peer", peer=peer, start="int8")]
    made = build_rows(rows, teacher, ctx, tokenizer, tmp_path / "work", log=lambda _: None)
    assert made["teacher"][0] is teacher.model and made["teacher"][2] == []
    assert seen["model"] is made["int8"][0]
    assert made["peer"][1].suffix == ".pt" and made["peer"][1].exists()
    assert made["int8"][2][0]["method"] == "dynamic_int8"
    assert 0 <= accuracy(made["peer"][0], ctx.task, tokenizer, 16, peer=True)["test_accuracy"] <= 1


def test_training_fields_and_start_rows_have_their_own_cache(setup, tmp_path):
    teacher, ctx, tokenizer = setup
    steps = (bc.LayerRemoval(keep=1),)
    rows = [Row("plain", steps), Row("weighted", steps, train={"hard_weight": 0.0, "distill_weight": 1.0}),
            Row("after", steps, start="plain")]
    made = build_rows(rows, teacher, ctx, tokenizer, tmp_path / "work", log=lambda _: None)
    roots = {made[name][1].parent for name in made}
    assert len(roots) == 3
    again = build_rows(rows[:1], teacher, ctx, tokenizer, tmp_path / "work", log=lambda _: None)
    assert again["plain"][1] == made["plain"][1]


def test_markdown_has_the_extra_columns_and_the_teacher_is_the_size_baseline():
    table = Table("t", "T", "about", [Row("teacher"), Row("x", (bc.DynamicInt8(),), info={"bits": "8"})],
                  columns=(("bits", lambda r: r.get("info", {}).get("bits", "32")),))
    base = {"seeds": [0], "test_accuracy_mean": 0.5, "test_accuracy_std": 0.0, "delta_points": None, "peer": False}
    results = [dict(base, name="teacher", recipe=[], size_mb=4.0),
               dict(base, name="x", recipe=[{}], size_mb=1.0, info={"bits": "8"}, delta_points=-1.0)]
    env = {"cpu": "cpu", "threads": 1, "torch": "t"}
    text = markdown(table, results, env, Settings(repeats=2))
    assert "| variant | bits | seeds |" in text
    assert "| x | 8 | 0 | 50.00 | -1.00 | 1.0 | 4.00x | – | – |" in text


def test_smoke_output_stays_under_the_smoke_folder(tmp_path, monkeypatch):
    monkeypatch.setattr(benchmarks, "SMOKE", tmp_path / "smoke")
    monkeypatch.setattr(benchmarks, "BENCHMARKS", tmp_path / "BENCHMARKS.md")
    settings = Settings(smoke=True)
    benchmarks.publish("section", "## text", {"rows": []}, settings)
    assert (tmp_path / "smoke" / "section.md").read_text() == "## text\n"
    assert benchmarks.read_results("section", settings) == {"rows": []}
    assert not (tmp_path / "BENCHMARKS.md").exists()


def test_a_script_declares_its_own_options(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["x", "--smoke", "--weights", "brief"])
    settings = Settings.from_command_line("doc", repeats=5, options={"--weights": {"default": "matched"}})
    assert (settings.repeats, settings.smoke, settings.options) == (5, True, {"weights": "brief"})
    assert json.dumps(settings.options)


def _bench_script(name: str):
    import importlib.util
    from pathlib import Path
    path = Path(__file__).resolve().parents[2] / "bench" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"bench_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_reseeding_keeps_the_searchs_seed_and_rebuilds_only_the_named_models(monkeypatch):
    frontier = _bench_script("frontier")
    built = []

    class Context:
        def __init__(self, seed):
            self.seed, self.teacher, self.task, self.tokenizer = seed, f"teacher{seed}", None, None

    monkeypatch.setattr(frontier, "seed_context", lambda searched, seed: Context(seed))
    monkeypatch.setattr(frontier, "candidate", lambda context, params: built.append((params, context.seed))
                        or (None, f"{params}{context.seed}", None, None))
    scores = {"teacher0": 0.9, "teacher1": 0.8, "small1": 0.7}
    monkeypatch.setattr(frontier, "test_accuracy", lambda model, task, tokenizer: scores[model])
    row = {"test_accuracy_std": 0.0, "seeds": [0], "delta_points": 0.0}
    rows = [{**row, "name": "teacher", "kind": "teacher", "test_accuracy_mean": 0.9},
            {**row, "name": "A", "kind": "ours", "test_accuracy_mean": 0.8},
            {**row, "name": "B", "kind": "ours", "test_accuracy_mean": 0.6},
            {**row, "name": "peer", "kind": "peer", "test_accuracy_mean": 0.85}]
    trials = [{"name": "A", "params": "small"}, {"name": "B", "params": "other"}]
    out = frontier.reseeded(rows, trials, [0, 1], None, only=["A"])
    assert built == [("small", 1)]  # seed 0 is the search's own figure; B is not re-seeded
    teacher, a, b, peer = out
    assert teacher["seeds"] == a["seeds"] == [0, 1] and b["seeds"] == peer["seeds"] == [0]
    assert a["test_accuracy_mean"] == pytest.approx(0.75) and a["delta_points"] == pytest.approx(-10.0)
    assert a["test_accuracy_std"] == pytest.approx(0.0707, abs=1e-4)
    assert b["test_accuracy_mean"] == 0.6 and b["delta_points"] == 0.0  # untouched: still against seed 0
    with pytest.raises(SystemExit, match="--only peer: not a frontier model of ours; these are: A, B"):
        frontier.reseeded(rows, trials, [0, 1], None, only=["peer"])


def test_each_worker_count_searches_from_an_empty_cache_sharing_only_the_inputs(tmp_path):
    workers = _bench_script("search_workers")
    shared = tmp_path / "cache"
    for name in ("assets", "teachers", "variants", "studies"):
        (shared / name).mkdir(parents=True)
    (shared / "variants" / "old-model").mkdir()
    fresh = workers.fresh_cache(shared, tmp_path / "work")
    assert sorted(p.name for p in fresh.iterdir()) == ["assets", "teachers"]
    assert (fresh / "teachers").resolve() == (shared / "teachers").resolve()
    assert not (fresh / "variants").exists() and (shared / "variants" / "old-model").is_dir()
