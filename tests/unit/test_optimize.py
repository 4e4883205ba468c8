"""`optimize`: the search space, the frontier rules, and the search end to end on a tiny model (resumed, and
with two workers sharing one study)."""
import json
import random

import pytest

import bertcompress as bc
from bertcompress.core.errors import BertCompressError
from bertcompress.data import tasks
from bertcompress.search import frontier as fr
from bertcompress.search.optimize import OptimizeOptions, corners, optimize
from bertcompress.search.space import SearchSpace, describe, recipe_for
from bertcompress.search.study import open_storage, open_study
from bertcompress.training.loop import TrainConfig
from tests.conftest import tiny_model, tiny_tokenizer, toy_task

PARAMS = {"layers": 1, "head_fractions": 0.5, "ffn_fractions": 0.25, "vocabulary": True,
          "quantization": "int8+embeddings", "distill_epochs": 1.0, "recovery_epochs": 0.5}


def test_a_choice_of_knobs_is_the_composition_in_order():
    recipe = recipe_for(PARAMS, model_layers=2)
    methods = [type(step).__name__ for step in recipe.steps]
    assert methods == ["Distillation", "HeadPruning", "FFNPruning", "VocabularyPruning", "DynamicInt8"]
    distill, heads, ffn = recipe.steps[:3]
    assert distill.keep == 1 and distill.epochs == 1.0 and heads.fraction == 0.5 and ffn.fraction == 0.25
    assert heads.recovery_epochs == 0.0 and ffn.recovery_epochs == 0.5  # one recovery, after both prunings
    assert recipe.name == describe(PARAMS) == "L1-h50-f25-vocab-int8+embeddings"


def test_the_full_depth_unpruned_and_unquantized_is_the_teacher_itself():
    plain = {**PARAMS, "layers": 2, "head_fractions": 0.0, "ffn_fractions": 0.0, "vocabulary": False,
             "quantization": "none"}
    assert recipe_for(plain, model_layers=2).steps == []
    static = recipe_for({**plain, "quantization": "openvino-static-int8"}, model_layers=2)
    assert static.steps == []  # the runtime quantizes the export: no training step


def test_our_static_int8_is_qat_exported_to_openvino_without_nncf(tokenizer, monkeypatch, tmp_path):
    """qat-static-int8 trains the ranges (for the recovery epochs) and runs the export as it is; its untrained
    twin sets every range with one step, so it has the same int8 graph to time."""
    from types import SimpleNamespace

    from bertcompress.search import trials as trials_module
    from bertcompress.search.space import runtime_for

    params = {**PARAMS, "layers": 2, "head_fractions": 0.0, "ffn_fractions": 0.0, "vocabulary": False,
              "quantization": "qat-static-int8"}
    [qat] = recipe_for(params, model_layers=2).steps
    assert type(qat).__name__ == "Q8BertQAT" and qat.attention_products and qat.activation_ranges == "ema"
    assert qat.epochs == params["recovery_epochs"] and qat.max_steps is None
    [twin] = recipe_for(params, model_layers=2, trained=False).steps
    assert twin.max_steps == 1 and twin.attention_products
    assert runtime_for(params) == "openvino" and runtime_for({**params, "quantization": "openvino-static-int8"}) \
        == "openvino-static-int8" and runtime_for(PARAMS) == "torch"
    exported = []
    monkeypatch.setattr("bertcompress.export.export_model",
                        lambda source, to, target, examples, settings, calibration: exported.append(settings.int8))
    monkeypatch.setattr("bertcompress.runtimes.openvino.OpenVinoModel", lambda path, config: path)
    cache = SimpleNamespace(get_or_build=lambda teacher, variant, ctx, tok: SimpleNamespace(model=None,
                                                                                            path=tmp_path / "v"))
    trials = SimpleNamespace(depth=2, cache=cache, teacher=SimpleNamespace(config=None), tokenizer=tokenizer,
                             ctx=SimpleNamespace(seed=0, train=SimpleNamespace(max_length=16)),
                             exports=tmp_path / "exports", task=toy_task())
    trials_module.candidate(trials, params)
    trials_module.candidate(trials, {**params, "quantization": "openvino-static-int8"})
    assert exported == [None, "static"]
    assert "qat-static-int8" in SearchSpace.for_objective("latency", 6).quantization
    assert "qat-static-int8" not in SearchSpace.quick("latency", 6).quantization  # quick trains no QAT


def test_space_overrides_replace_only_the_knobs_named():
    base = SearchSpace.quick("latency", 6)
    space = base.overridden(("layers=4, 3", "vocabulary=no", "quantization=int8,qat-static-int8,int8",
                             "distill-epochs=4"))
    assert (space.layers, space.vocabulary, space.quantization, space.distill_epochs) == \
        ((4, 3), (False,), ("int8", "qat-static-int8"), (4.0,))
    assert (space.head_fractions, space.ffn_fractions, space.recovery_epochs) == \
        (base.head_fractions, base.ffn_fractions, base.recovery_epochs)
    assert base.overridden(()) is base


@pytest.mark.parametrize("override, message", [
    ("layers", "write a knob and its values"),
    ("layers=", "write a knob and its values"),
    ("depth=3", "no knob 'depth'; knobs: layers, head_fractions"),
    ("layers=3.5", "layers takes whole numbers"),
    ("head_fractions=half", "head_fractions takes numbers"),
    ("vocabulary=maybe", "vocabulary takes yes or no"),
])
def test_a_bad_space_override_names_its_text_and_knob(override, message):
    with pytest.raises(BertCompressError, match=f"--space '{override}': {message}"):
        OptimizeOptions(trials=1, space_overrides=(override,)).check()


def test_overrides_shape_the_default_space_and_the_study_key():
    from bertcompress.search.optimize import default_space

    options = OptimizeOptions(trials=1, quick=True, space_overrides=("layers=3",))
    assert default_space(options, 6) == SearchSpace.quick("latency", 6).overridden(("layers=3",))
    plain = OptimizeOptions(trials=1, quick=True)
    task = toy_task()
    assert options.key(task, default_space(options, 6)) != plain.key(task, default_space(plain, 6))


def test_a_space_that_allows_nothing_is_refused():
    with pytest.raises(BertCompressError, match=r"keeps \[7, 8\] layers but the model has 2"):
        SearchSpace(layers=(7, 8)).check(tiny_model())
    with pytest.raises(BertCompressError, match="objective 'speed' is not offered"):
        SearchSpace.for_objective("speed", 6)
    assert SearchSpace.for_objective("latency", 6).layers == (6, 5, 4, 3)


def test_corners_are_the_full_depth_with_each_quantization_and_the_shallowest_student():
    space = SearchSpace(layers=(2, 1), head_fractions=(0.5, 0.0), quantization=("int8", "4bit"))
    *deep, shallow = corners(space, depth=2)
    assert [d["quantization"] for d in deep] == ["int8", "4bit"] and {d["layers"] for d in deep} == {2}
    assert shallow["layers"] == 1 and shallow["quantization"] == "int8"
    assert all(c["head_fractions"] == 0.0 for c in corners(space, depth=2))


def synthetic_results(count: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    return [{"name": f"t{i}", "val_accuracy": rng.choice([0.8, 0.82, 0.84, 0.85]), "speedup": rng.uniform(1, 10)}
            for i in range(count)]


@pytest.mark.parametrize("seed", range(20))
def test_the_frontier_is_exactly_the_undominated_results(seed):
    results = synthetic_results(15, seed)
    front = fr.pareto(results, "speedup")

    def beats(a, b):
        return (a["val_accuracy"] >= b["val_accuracy"] and a["speedup"] >= b["speedup"]
                and (a["val_accuracy"] > b["val_accuracy"] or a["speedup"] > b["speedup"]))

    assert all(not any(beats(o, f) for o in results) for f in front)
    assert all(any(beats(f, r) for f in front) for r in results if r not in front)


@pytest.mark.parametrize("seed", range(10))
def test_the_chosen_model_is_the_fastest_within_the_budget(seed):
    results = synthetic_results(15, seed)
    pick = fr.chosen(results, "speedup", teacher_val=0.85, max_drop_points=1.0)
    within = [r for r in results if r["val_accuracy"] >= 0.84]
    assert pick == (max(within, key=lambda r: r["speedup"]) if within else None)


@pytest.fixture
def search(tmp_path, tokenizer, cache):
    """A tiny local model, a toy task and options for a short search with its own journal file."""
    model_dir = tmp_path / "tiny"
    bc.save(tiny_model(), model_dir, tokenizer)
    rows = "".join(f"{'good fine superb' if i % 2 else 'bad dull awful'} movie {i % 5},{i % 2}\n" for i in range(60))
    (tmp_path / "d.csv").write_text("text,label\n" + rows)
    space = SearchSpace(layers=(2, 1), head_fractions=(0.0, 0.5), ffn_fractions=(0.0,), vocabulary=(False,),
                        quantization=("none", "int8"), distill_epochs=(1.0,), recovery_epochs=(0.5,))
    options = OptimizeOptions(model=str(model_dir), trials=3, storage=f"journal:{tmp_path / 'study.journal'}",
                              output=tmp_path / "runs", name="search", space=space, peers=False, repeats=2,
                              trial_repeats=2, train=TrainConfig(max_steps=10, batch_size=8, max_length=16))
    return tasks.from_files(tmp_path / "d.csv"), options


@pytest.mark.slow
def test_search_writes_the_frontier_and_resumes_its_study(search, tmp_path):
    task, options = search
    target = optimize(task, options)
    rows = json.loads((target / "frontier.json").read_text())
    assert all(tuple(row) == fr.FRONTIER_KEYS for row in rows)
    assert [r["kind"] for r in rows][0] == "teacher" and {r["kind"] for r in rows[1:]} == {"ours"}
    trials = json.loads((target / "trials.json").read_text())
    assert trials["summary"]["trials"] + trials["summary"]["stopped_before_training"] == 3
    for row in rows[1:]:
        assert (target / "models" / row["name"]).is_dir()
    report = (target / "frontier.md").read_text()
    assert report.count("| ours |") == len(rows) - 1
    assert "Space searched: layers 2, 1; head_fractions 0.0, 0.5; ffn_fractions 0.0;" in report
    # resumed: the same study grows to 5 trials; the 3 done are not run again
    options.trials, options.overwrite = 5, True
    optimize(task, options)
    study = open_study(open_storage(options.storage, options.key(task, options.space)),
                       options.key(task, options.space), 0)
    assert len([t for t in study.trials if "result" in t.user_attrs or "error" in t.user_attrs]) >= 5


@pytest.mark.slow
def test_two_workers_share_one_study(search):
    task, options = search
    options.workers, options.trials = 2, 4
    target = optimize(task, options)
    assert (target / "frontier.md").exists()
    study = open_study(open_storage(options.storage, options.key(task, options.space)),
                       options.key(task, options.space), 0)
    finished = [t for t in study.trials if "result" in t.user_attrs or "error" in t.user_attrs]
    assert len(finished) >= 4 and len({t.user_attrs["worker"] for t in finished}) == 2


@pytest.mark.parametrize("change, message", [
    ({"max_drop": -1.0}, "--max-drop -1 must be zero or more"),
    ({"objective": "speed"}, "--objective 'speed' is not offered"),
    ({"trials": None, "time_budget": None}, "give --trials, --time-budget or both"),
    ({"storage": "postgresql://nobody@127.0.0.1:1/none"}, "--storage 'postgresql://"),
    ({"unlabelled": True}, "has no unlabelled text"),
])
def test_bad_options_are_refused_before_any_training(search, change, message):
    task, options = search
    for key, value in change.items():
        setattr(options, key, value)
    with pytest.raises(BertCompressError, match=message.replace("(", r"\(")):
        optimize(task, options)
    assert not (options.output / "search").exists()


def _unlabelled_embedding_task():
    task = toy_task("embedding")
    splits = {name: [tasks.Example(e.text, -1) for e in examples] for name, examples in task.splits.items()}
    return tasks.Task("toy-texts", [], splits, type="embedding")


@pytest.mark.slow
@pytest.mark.parametrize("task_type, scored_by", [("question_answering", "F1"),
                                                  ("token_classification", "entity F1"),
                                                  ("embedding", "mean cosine to the teacher")])
def test_search_on_every_task_type_reads_that_types_score(search, tmp_path, task_type, scored_by):
    _, options = search
    model_dir = tmp_path / task_type
    labels = 3 if task_type == "token_classification" else 2
    bc.save(tiny_model(task_type=task_type, num_labels=labels), model_dir, tiny_tokenizer())
    task = _unlabelled_embedding_task() if task_type == "embedding" else toy_task(task_type)
    options.model, options.trials = str(model_dir), 2
    target = optimize(task, options)
    rows = json.loads((target / "frontier.json").read_text())
    assert all(0.0 <= row["val_accuracy"] <= 1.0 and 0.0 <= row["test_accuracy_mean"] <= 1.0 for row in rows)
    if task_type == "embedding":  # agreement with itself: exactly the teacher's vectors
        assert rows[0]["val_accuracy"] == pytest.approx(1.0) and rows[0]["test_accuracy_mean"] == pytest.approx(1.0)
    report = (target / "frontier.md").read_text()
    assert f"| val {scored_by} | test {scored_by} |" in report and f"points of {scored_by}" in report
    assert json.loads((target / "trials.json").read_text())["summary"]["score"] == scored_by


def test_score_names_follow_the_task_and_its_data(tmp_path):
    from bertcompress.data.similarity import ScoredPair
    from bertcompress.search.trials import score_name

    assert score_name(toy_task()) == "accuracy" and score_name(toy_task("embedding")) == "10-NN accuracy"
    assert score_name(_unlabelled_embedding_task()) == "mean cosine to the teacher"
    pairs = [ScoredPair("good film", "fine movie", 4.0)] * 3
    assert score_name(tasks.Task("sts", [], {"validation": pairs}, type="embedding")) == "Spearman"


def test_the_untrained_twin_has_the_trained_models_shapes(tokenizer):
    twin = recipe_for({**PARAMS, "vocabulary": False}, model_layers=2, trained=False)
    assert [type(step).__name__ for step in twin.steps] == ["LayerRemoval", "HeadPruning", "FFNPruning", "DynamicInt8"]
    assert twin.steps[0].keep == 1 and twin.steps[0].strategy == "every_other"
    assert all(getattr(step, "recovery_epochs", 0.0) == 0.0 for step in twin.steps)
    assert twin.name.endswith("(shape)")
    structural = {**PARAMS, "vocabulary": False, "quantization": "none"}
    shapes = []
    for trained in (True, False):
        model = tiny_model(layers=2)
        ctx = bc.Context(task=toy_task(), tokenizer=tokenizer, teacher=tiny_model(layers=2),
                         train=TrainConfig(max_steps=2, batch_size=8, max_length=16))
        recipe_for(structural, model_layers=2, trained=trained).apply(model, ctx)
        shapes.append({name: tuple(p.shape) for name, p in model.state_dict().items()})
    assert shapes[0] == shapes[1] and len(shapes[0]) < len(tiny_model(layers=2).state_dict())


def _result(name, accuracy, speedup):
    return {"name": name, "val_accuracy": accuracy, "speedup": speedup, "size_ratio": speedup}


def test_a_shape_no_faster_than_a_model_within_the_budget_is_hopeless():
    from types import SimpleNamespace

    from bertcompress.search.trials import hopeless

    trials = SimpleNamespace(objective="latency", teacher_score=0.85, max_drop=1.0)
    results = [_result("within", 0.845, 3.0), _result("too-inaccurate", 0.70, 9.0)]
    assert hopeless(trials, {"shape": "L6", "speedup": 5.0}, results) is None  # could beat 3.0x
    reason = hopeless(trials, {"shape": "L6-int8", "speedup": 3.0}, results)
    assert reason.startswith("hopeless: its shape L6-int8 reaches 3.00x") and "within 3.00x" not in reason
    assert "within is already 3.00x" in reason
    assert hopeless(trials, {"shape": "L6", "speedup": 1.0}, results[1:]) is None  # nothing within the budget yet
    sized = SimpleNamespace(objective="size", teacher_score=0.85, max_drop=1.0)
    assert hopeless(sized, {"shape": "L6", "speedup": 9.0, "size_ratio": 2.0}, results) is not None


@pytest.mark.slow
def test_shapes_are_timed_once_hopeless_choices_never_train_and_an_explored_space_ends(search, monkeypatch):
    from bertcompress.search import optimize as search_module
    from bertcompress.search import trials as trials_module

    task, options = search
    options.space = SearchSpace(layers=(2,), head_fractions=(0.0,), ffn_fractions=(0.0,), vocabulary=(False,),
                                quantization=("none", "int8"), distill_epochs=(1.0, 2.0), recovery_epochs=(0.5,))
    options.trials, options.time_budget, options.max_drop = None, 600, 100.0  # every model is within the budget
    timed, built = [], []
    measure, evaluate = trials_module.measure_shape, trials_module.evaluate
    monkeypatch.setattr(search_module, "measure_shape", lambda t, p: timed.append(describe(p)) or measure(t, p))
    monkeypatch.setattr(search_module, "evaluate", lambda t, p, s: built.append(p) or evaluate(t, p, s))
    # int8 runs faster than the teacher's own shape on most CPUs; force the order so the test is exact
    monkeypatch.setattr(trials_module, "benchmark_many", lambda models, *a: {
        name: {"batch_32": {"samples_ms": [1.0 if name == "teacher" else (0.25 if "int8" in name else 1.0)] * 3}}
        for name in models})
    target = optimize(task, options)
    trials = json.loads((target / "trials.json").read_text())
    assert sorted(timed) == ["L2", "L2-int8"]  # two shapes, four choices: each shape timed once
    # the epochs knob changes nothing at full depth, so the shape 'L2' (1.00x) never beats L2-int8 (4.00x)
    # once it is within the budget; the search ends once all four choices were tried, long before 600 s
    assert trials["summary"]["search_seconds"] < 300
    assert [describe(p) for p in built] == ["L2", "L2-int8"]  # the corners; the other two never trained
    assert all(r["speedup"] in (1.0, 4.0) for r in trials["trials"])
    study = open_study(open_storage(options.storage, options.key(task, options.space)),
                       options.key(task, options.space), 0)
    stopped = {(describe(t.params), t.params["distill_epochs"]) for t in study.trials
               if t.user_attrs.get("error", "").startswith("hopeless")}
    assert stopped == {("L2", 2.0), ("L2-int8", 2.0)}


@pytest.mark.slow
def test_the_frontier_is_measured_beside_every_peer_path_and_a_failing_peer_is_left_out(search, monkeypatch,
                                                                                        capsys):
    from bertcompress.search import optimize as search_module

    def broken(model, path):
        raise RuntimeError("this runtime does not take the model\nsecond line")

    monkeypatch.setattr(search_module, "PEERS", (*search_module.PEERS, ("peer: broken", "nowhere", broken)))
    task, options = search
    options.trials, options.peers = 1, True
    target = optimize(task, options, console=search_module.Console(file=None, stderr=False, width=200))
    rows = json.loads((target / "frontier.json").read_text())
    peers = {r["name"]: r for r in rows if r["kind"] == "peer"}
    assert set(peers) == {name for name, _, _ in search_module.PEERS[:-1]} | {search_module.PEER_NNCF}
    assert {r["runtime"] for r in peers.values()} == {"torch-bf16", "torch-dynamic-int8", "onnxruntime-dynamic-int8",
                                                      "openvino-bf16", "openvino-static-int8"}
    for row in peers.values():
        assert row["speedup_b1"] > 0 and row["speedup_b32"] > 0 and row["size_mb"] > 0
        assert 0.0 <= row["test_accuracy_mean"] <= 1.0
    assert peers["peer: torch bf16"]["size_ratio"] == pytest.approx(2.0, rel=0.05)  # bf16 halves the weights
    assert "peer: broken left out: RuntimeError: this runtime does not take the model" in capsys.readouterr().out


def test_a_choice_without_training_is_its_own_twin(tokenizer):
    from types import SimpleNamespace

    from bertcompress.search.trials import candidate

    built = []
    cache = SimpleNamespace(get_or_build=lambda teacher, variant, ctx, tok: built.append(variant.recipe) or
                            SimpleNamespace(model=None, path=None))
    trials = SimpleNamespace(depth=2, cache=cache, teacher=None, ctx=SimpleNamespace(seed=0), tokenizer=tokenizer)
    untrained = {**PARAMS, "layers": 2, "head_fractions": 0.0, "ffn_fractions": 0.0, "quantization": "int8"}
    candidate(trials, untrained, trained=False)
    candidate(trials, PARAMS, trained=False)
    assert built[0].name == describe(untrained)  # the same recipe as the trained choice: one cached model
    assert built[1].name == describe(PARAMS) + " (shape)"


def test_a_study_stops_when_every_choice_is_settled_under_this_runs_budget():
    from types import SimpleNamespace

    from bertcompress.search.optimize import _stop_when_explored

    space = SearchSpace(layers=(2,), head_fractions=(0.0,), ffn_fractions=(0.0,), vocabulary=(False,),
                        quantization=("none", "int8"), distill_epochs=(1.0,), recovery_epochs=(0.5,))
    finished = SimpleNamespace(is_finished=lambda: True)
    running = SimpleNamespace(is_finished=lambda: False)

    def trial(quantization, state=finished, **attrs):
        params = {"layers": 2, "head_fractions": 0.0, "ffn_fractions": 0.0, "vocabulary": False,
                  "quantization": quantization, "distill_epochs": 1.0, "recovery_epochs": 0.5}
        return SimpleNamespace(params=params, state=state, user_attrs=attrs)

    fast = trial("int8", result=_result("L2-int8", 0.80, 3.0))
    stopped = trial("none", error="hopeless: ...", shape={"shape": "L2", "speedup": 1.0})

    def stops(trials_list, max_drop):
        study = SimpleNamespace(get_trials=lambda deepcopy: trials_list, stop=lambda: calls.append("stop"))
        calls = []
        context = SimpleNamespace(space=space, depth=2, objective="latency", teacher_score=0.85, max_drop=max_drop)
        _stop_when_explored(context)(study, None)
        return calls == ["stop"]

    assert stops([fast, stopped], max_drop=10.0)  # L2-int8 is within 10 points: L2 stays hopeless
    assert not stops([fast, stopped], max_drop=1.0)  # a stricter budget: nothing within it, L2 may now win
    assert not stops([fast, trial("none", state=running)], max_drop=10.0)  # a trial left running is not tried
    assert stops([fast, trial("none", error="the export does not verify")], max_drop=1.0)
