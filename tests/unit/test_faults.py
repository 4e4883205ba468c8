"""Hostile files and hard kills: fuzzed recipes and manifests raise only our one-line error; a training run
killed with SIGKILL resumes to the uninterrupted result; a write killed midway leaves nothing visible and its
staging is cleaned at the next start; a planted pickle is never executed."""
from __future__ import annotations

import copy
import json
import os
import pickle
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

import bertcompress as bc
from bertcompress.core.errors import BertCompressError
from bertcompress.files import STAGING_TAG, write_atomically
from bertcompress.recipe import Recipe
from tests.conftest import tiny_model

RECIPE_FUZZ = int(os.environ.get("BERTCOMPRESS_FUZZ_RECIPES", 3000))
MANIFEST_FUZZ = int(os.environ.get("BERTCOMPRESS_FUZZ_MANIFESTS", 500))
ROOT = Path(__file__).resolve().parents[2]

ODD_VALUES = [None, True, -1, 0, 1, 2**40, -2**40, 0.5, -0.0, float("inf"), float("nan"), 1e308, "", "x", "\n",
              "re:(", "re:.*", "../..", [], [1, "a"], {}, {"a": 1}, {1: 2}, "dynamic_int8", 8, 4, 0.999]


def random_value(rng: random.Random, depth: int = 0):
    if depth < 2 and rng.random() < 0.15:
        return {rng.choice(["bits", "sparsity", "keep", rng.choice(ODD_VALUES[12:14]), 3]): random_value(rng, depth + 1)}
    if depth < 2 and rng.random() < 0.1:
        return [random_value(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    return copy.deepcopy(rng.choice(ODD_VALUES))  # fresh: mutations must not share objects


def random_recipe(rng: random.Random):
    from bertcompress.core.registry import registered

    methods = list(registered().items())
    steps = []
    for _ in range(rng.randint(0, 3)):
        name, config = rng.choice(methods)
        step = {"method": name if rng.random() < 0.9 else random_value(rng)}
        for field in rng.sample(list(config.model_fields), k=min(len(config.model_fields), rng.randint(0, 4))):
            step[field] = random_value(rng)
        if rng.random() < 0.1:
            step[rng.choice([None, 3, 0.5, True, "unknown_field", "re:("])] = 1
        steps.append(step if rng.random() < 0.95 else random_value(rng))
    recipe = {"name": "fuzz", "steps": steps}
    if rng.random() < 0.1:
        recipe[rng.choice(["extra", 7, None])] = random_value(rng)
    return recipe if rng.random() < 0.95 else random_value(rng)


def test_fuzzed_recipes_raise_only_our_one_line_error():
    rng, accepted, rejected = random.Random(0), 0, 0
    for _ in range(RECIPE_FUZZ):
        data = random_recipe(rng)
        try:
            Recipe.from_dict(copy.deepcopy(data), "fuzz.yaml")
            accepted += 1
        except BertCompressError as error:
            assert "\n" not in str(error), (data, str(error))
            rejected += 1
    assert rejected > RECIPE_FUZZ // 2 and accepted > 0  # the generator reaches both sides


MUTATIONS = ("delete", "replace", "add", "retype")


def mutate(manifest: dict, rng: random.Random) -> dict:
    """One random change somewhere in the manifest tree."""
    node, path = manifest, []
    while isinstance(node, dict) and node and rng.random() < 0.7:
        key = rng.choice(list(node))
        if not isinstance(node[key], dict):
            break
        node, path = node[key], [*path, key]
    if not isinstance(node, dict) or not node:
        return manifest
    key = rng.choice(list(node))
    action = rng.choice(MUTATIONS)
    if action == "delete":
        del node[key]
    elif action == "replace":
        node[key] = random_value(rng)
    elif action == "add":
        node[rng.choice(["forward", "extra", "num_attention_heads", "bert.encoder.layer.9"])] = random_value(rng)
    else:
        node[key] = rng.choice([str(node[key]), [node[key]], -7, 10**9])
    return manifest


@pytest.fixture(scope="module")
def saved_variants(tmp_path_factory) -> list[Path]:
    """Saved tiny models with int8, packed, sparse and pruned modules: their manifests are the seeds."""
    root = tmp_path_factory.mktemp("variants")
    builders = {
        "int8": bc.DynamicInt8(embeddings=True),
        "layers": bc.registered()["layer_removal"](keep=1),
        "packed": bc.registered()["naive_ptq"](weight_bits=4, embeddings=True),
    }
    paths = []
    for name, config in builders.items():
        model = tiny_model()
        bc.compress(model, config)
        paths.append(bc.save(model, root / name))
    return paths


def test_fuzzed_manifests_raise_only_our_one_line_error(saved_variants, tmp_path):
    rng, loaded, rejected = random.Random(1), 0, 0
    originals = [(path, json.loads((path / "manifest.json").read_text())) for path in saved_variants]
    for index in range(MANIFEST_FUZZ):
        source, original = originals[index % len(originals)]
        manifest = copy.deepcopy(original)
        for _ in range(rng.randint(1, 3)):
            manifest = mutate(manifest, rng)
        (source / "manifest.json").write_text(json.dumps(manifest))
        try:
            model = bc.load(source)
            model(input_ids=torch.tensor([[5, 6, 7]]))  # what loads must also run
            loaded += 1
        except BertCompressError as error:
            assert "\n" not in str(error), str(error)
            rejected += 1
    for source, original in originals:
        (source / "manifest.json").write_text(json.dumps(original))
    assert rejected > MANIFEST_FUZZ // 4 and loaded > 0


def _script(body: str) -> str:
    return textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(ROOT)!r})
        import torch
        from bertcompress.data.batching import Encoded
        from bertcompress.training.loop import TrainConfig, TrainingHook, train
        from tests.conftest import tiny_model
        """) + textwrap.dedent(body)


TRAIN = """
    class Slow(TrainingHook):
        def after_step(self, model, state):
            time.sleep(float(sys.argv[3]))

    generator = torch.Generator().manual_seed(0)
    ids = [torch.randint(5, 64, (8,), generator=generator).tolist() for _ in range(64)]
    data = Encoded(ids=ids, type_ids=None, labels=[i % 2 for i in range(64)], pad_id=0)
    model = tiny_model()
    config = TrainConfig(max_steps=12, batch_size=8, learning_rate=1e-3, checkpoint_every=2)
    result = train(model, data, config, hooks=(Slow(),), checkpoint_dir=sys.argv[1])
    from safetensors.torch import save_file
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, sys.argv[2])
    print("resumed_from", result.resumed_from)
"""


def _run(script: Path, *args, wait: bool = True):
    command = [sys.executable, str(script), *map(str, args)]
    env = {**os.environ, "BERTCOMPRESS_QUIET": "1"}
    if wait:
        return subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def _wait_for(path: Path, process: subprocess.Popen, limit: float = 120) -> None:
    started = time.time()
    while not path.exists():
        assert process.poll() is None, process.communicate()
        assert time.time() - started < limit, f"{path} never appeared"
        time.sleep(0.05)


@pytest.mark.slow
def test_training_killed_with_sigkill_resumes_to_the_uninterrupted_result(tmp_path):
    from safetensors.torch import load_file

    script = tmp_path / "train.py"
    script.write_text(_script(TRAIN))
    clean = _run(script, tmp_path / "ck-clean", tmp_path / "clean.safetensors", 0)
    assert clean.returncode == 0, clean.stderr
    process = _run(script, tmp_path / "ck", tmp_path / "killed.safetensors", 0.3, wait=False)
    _wait_for(tmp_path / "ck" / "train_state.json", process)
    time.sleep(0.5)  # somewhere between two checkpoints, or inside one
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (tmp_path / "killed.safetensors").exists()
    resumed = _run(script, tmp_path / "ck", tmp_path / "killed.safetensors", 0)
    assert resumed.returncode == 0, resumed.stderr
    assert int(resumed.stdout.split()[-1]) >= 2  # it started from a checkpoint, not from step 0
    expected, actual = load_file(tmp_path / "clean.safetensors"), load_file(tmp_path / "killed.safetensors")
    for key in expected:
        torch.testing.assert_close(actual[key], expected[key], atol=1e-5, rtol=1e-4, msg=key)


WRITE = """
    from pathlib import Path
    from bertcompress.files import write_atomically

    def fill(staging):
        (staging / "half.txt").write_text("written")
        print("filling", flush=True)
        time.sleep(60)

    write_atomically(Path(sys.argv[1]), fill)
"""


def test_write_killed_midway_leaves_nothing_and_is_cleaned_next_time(tmp_path):
    script = tmp_path / "write.py"
    script.write_text(_script(WRITE))
    parent = tmp_path / "out"
    process = _run(script, parent / "result", wait=False)
    assert process.stdout.readline().strip() == "filling"
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (parent / "result").exists()
    stale = [p for p in parent.iterdir() if STAGING_TAG in p.name]
    assert len(stale) == 1 and (stale[0] / "half.txt").exists()
    write_atomically(parent / "other", lambda staging: (staging / "a.txt").write_text("a"))
    assert sorted(p.name for p in parent.iterdir()) == ["other"]


def test_staging_of_a_live_process_is_left_alone(tmp_path):
    live = tmp_path / f".x{STAGING_TAG}{os.getpid()}-abc"
    live.mkdir()
    users = [tmp_path / f"notes{STAGING_TAG}1-x", tmp_path / f".x{STAGING_TAG}draft"]  # not names we make
    for directory in users:
        directory.mkdir()
    write_atomically(tmp_path / "y", lambda staging: None)
    assert live.exists() and all(directory.exists() for directory in users)


class Planted:
    def __reduce__(self):
        return (os.system, (f"touch {Planted.marker}",))


def test_planted_pickle_in_the_checkpoint_dir_is_never_executed(tmp_path):
    from bertcompress.data.batching import Encoded
    from bertcompress.training.loop import TrainConfig, train

    Planted.marker = tmp_path / "pwned"
    checkpoints = tmp_path / "ck"
    checkpoints.mkdir()
    for name in ("train_state.pt", "train_state.safetensors", "train_state.json.pt"):
        (checkpoints / name).write_bytes(pickle.dumps(Planted()))
    data = Encoded(ids=[[5, 6, 7, 8]] * 16, type_ids=None, labels=[0, 1] * 8, pad_id=0)
    train(tiny_model(), data, TrainConfig(max_steps=2, batch_size=8), checkpoint_dir=checkpoints)
    assert not Planted.marker.exists()


def test_checkpoint_whose_hash_does_not_match_is_refused(tmp_path):
    from bertcompress.data.batching import Encoded
    from bertcompress.training.loop import TrainConfig, train

    data = Encoded(ids=[[5, 6, 7, 8]] * 16, type_ids=None, labels=[0, 1] * 8, pad_id=0)
    config = TrainConfig(max_steps=4, batch_size=8, checkpoint_every=2)
    checkpoints = tmp_path / "ck"

    class Stop(Exception):
        pass

    from bertcompress.training.hooks import TrainingHook

    class StopAfter3(TrainingHook):
        def after_step(self, model, state):
            if state.step == 3:
                raise Stop

    with pytest.raises(Stop):
        train(tiny_model(), data, config, hooks=(StopAfter3(),), checkpoint_dir=checkpoints)
    (tensors,) = checkpoints.glob("train_state-*.safetensors")
    stored = tensors.read_bytes()
    tensors.write_bytes(stored[:-8] + bytes(b ^ 0xFF for b in stored[-8:]))
    with pytest.raises(BertCompressError, match="does not match the hash"):
        train(tiny_model(), data, config, hooks=(StopAfter3(),), checkpoint_dir=checkpoints)
    with pytest.raises(BertCompressError, match="another training run"):
        train(tiny_model(), data, TrainConfig(max_steps=5, batch_size=8), checkpoint_dir=checkpoints)


def test_pickle_weights_are_never_loaded(tmp_path):
    Planted.marker = tmp_path / "pwned"
    model = tiny_model()
    model.save_pretrained(tmp_path / "m")
    (tmp_path / "m" / "model.safetensors").unlink()
    (tmp_path / "m" / "pytorch_model.bin").write_bytes(pickle.dumps(Planted()))
    with pytest.raises(BertCompressError, match="pickle"):
        bc.load(tmp_path / "m")
    assert not Planted.marker.exists()


def test_cache_directory_is_private(tmp_path, monkeypatch):
    from bertcompress.data.assets import cache_dir

    monkeypatch.setenv("BERTCOMPRESS_CACHE", str(tmp_path / "cache"))
    assert cache_dir().stat().st_mode & 0o777 == 0o700


def test_checkpoint_round_trips_strided_and_shared_tensors(tmp_path):
    """FLOP's factors are transposed views; tied weights share storage: both must checkpoint and come back."""
    from bertcompress.training.checkpoint import load_state, save_state

    base = torch.arange(12.0).reshape(3, 4)
    state = {"view": base.t(), "tied": [base, base], "step": 3, 7: (1.5, None)}
    assert not state["view"].is_contiguous()
    save_state(tmp_path, state, "run")
    loaded = load_state(tmp_path, "run")
    assert torch.equal(loaded["view"], base.t()) and torch.equal(loaded["tied"][1], base)
    assert loaded["step"] == 3 and loaded[7] == (1.5, None)
