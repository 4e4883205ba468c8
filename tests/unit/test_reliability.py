"""Bad input as a new user gives it: each case must end in one `error:` line, exit 2, no traceback, and
leave every file it did not create as it was. The CLI runs in-process so the catalogue stays fast."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

import bertcompress as bc
from bertcompress.cli import main
from bertcompress.model_dir import COMPRESSED_WEIGHTS, weights_path
from tests.conftest import tiny_model, tiny_tokenizer


def invoke(capsys, *args) -> tuple[int, str]:
    with pytest.raises(SystemExit) as done:
        main([str(a) for a in args])
    return done.value.code, capsys.readouterr().err


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): (p.read_bytes() if p.is_file() else b"<dir>")
            for p in sorted(root.rglob("*"))}


def assert_one_error_line(code: int, err: str, *fragments: str) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err
    assert "Traceback" not in err, err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def _tokenizer_files(directory: Path) -> None:
    tiny_tokenizer().save_pretrained(directory)


@pytest.fixture(scope="module")
def assets(tmp_path_factory) -> Path:
    """A plain Transformers model, a bertcompress int8 model and user data, built once."""
    root = tmp_path_factory.mktemp("assets")
    plain = root / "plain"
    tiny_model().save_pretrained(plain)
    _tokenizer_files(plain)
    model = tiny_model()
    bc.compress(model, bc.DynamicInt8())
    bc.save(model, root / "int8", bc.load_tokenizer(plain))
    rows = "".join(f"{'good fine' if i % 2 else 'bad dull'} movie {i},{i % 2}\n" for i in range(40))
    (root / "data.csv").write_text("text,label\n" + rows)
    return root


def copy_model(assets: Path, name: str, into: Path) -> Path:
    import shutil

    return Path(shutil.copytree(assets / name, into / name))


# --- each builder prepares files in `tmp` and returns the CLI arguments and the fragments the line must name

def _bad_config(content: str):
    def build(assets, tmp):
        model = copy_model(assets, "plain", tmp)
        (model / "config.json").write_text(content)
        return ["eval", "--model", model, "--train", assets / "data.csv"], ["config.json"]
    return build


def _bad_weights(content: bytes | None, *fragments):
    def build(assets, tmp):
        model = copy_model(assets, "int8", tmp)
        if content is None:
            weights_path(model).unlink()
        else:
            weights_path(model).write_bytes(content)
        return ["eval", "--model", model, "--train", assets / "data.csv"], list(fragments)
    return build


def _truncated_weights(assets, tmp):
    model = copy_model(assets, "int8", tmp)
    data = weights_path(model).read_bytes()
    weights_path(model).write_bytes(data[: len(data) // 2])
    return ["eval", "--model", model, "--train", assets / "data.csv"], [COMPRESSED_WEIGHTS]


def _manifest(change, *fragments):
    def build(assets, tmp):
        model = copy_model(assets, "int8", tmp)
        path = model / "manifest.json"
        manifest = json.loads(path.read_text())
        result = change(manifest)
        path.write_text(result if isinstance(result, str) else json.dumps(manifest if result is None else result))
        return ["bench", model, "--repeats", 1, "-b", 1, "--seq-len", 8], ["manifest.json", *fragments]
    return build


QUERY = "bert.encoder.layer.0.attention.self.query"
ATTENTION = "bert.encoder.layer.0.attention.self"


def _set_module(field, value):
    def change(manifest):
        manifest["modules"][QUERY][field] = value
    return change


def _data(name: str, content: bytes | str, *fragments):
    def build(assets, tmp):
        path = tmp / name
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
        return ["eval", "--model", assets / "plain", "--train", path], [name, *fragments]
    return build


def _recipe(content: bytes | str, *fragments):
    def build(assets, tmp):
        path = tmp / "r.yaml"
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
        return ["compress", assets / "plain", "--out", tmp / "out", "--recipe", path], ["r.yaml", *fragments]
    return build


def _args(*args_and_fragments):
    *args, fragments = args_and_fragments

    def build(assets, tmp):
        resolved = [assets / a[1:] if isinstance(a, str) and a.startswith("@") else a for a in args]
        resolved = [tmp / a[1:] if isinstance(a, str) and a.startswith("%") else a for a in resolved]
        return resolved, fragments
    return build


def _user_dir_as_out(command):
    def build(assets, tmp):
        (tmp / "mine").mkdir()
        (tmp / "mine" / "notes.txt").write_text("precious")
        args = {"compress": ["compress", assets / "plain", "--recipe", "dynamic-int8", "--out", tmp / "mine"],
                "heads": ["heads", "--model", assets / "plain", "--train", assets / "data.csv", "--out", tmp / "mine"],
                "run": ["run", "--model", assets / "plain", "--train", assets / "data.csv", "--output", tmp,
                        "--name", "mine"],
                "export": ["export", assets / "plain", "--to", "onnx", "--out", tmp / "mine"]}[command]
        return args, ["mine", "not written by bertcompress"]
    return build


def _out_is_file(assets, tmp):
    (tmp / "f").write_text("x")
    return ["compress", assets / "plain", "--recipe", "dynamic-int8", "--out", tmp / "f"], ["not a directory"]


def _out_under_file(assets, tmp):
    (tmp / "f").write_text("x")
    return ["compress", assets / "plain", "--recipe", "dynamic-int8", "--out", tmp / "f" / "sub"], ["is a file"]


def _our_output_without_overwrite(assets, tmp):
    out = tmp / "out"
    bc.save(tiny_model(), out)
    return ["compress", assets / "plain", "--recipe", "dynamic-int8", "--out", out], ["--overwrite"]


def _pickle_only(assets, tmp):
    model = copy_model(assets, "plain", tmp)
    (model / "model.safetensors").rename(model / "pytorch_model.bin")
    return ["eval", "--model", model, "--train", assets / "data.csv"], ["pickle", "never loads"]


def _no_tokenizer(assets, tmp):
    model = copy_model(assets, "plain", tmp)
    for name in ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        (model / name).unlink(missing_ok=True)
    return ["eval", "--model", model, "--train", assets / "data.csv"], ["no tokenizer files"]


LONG_FIELD = "text,label\n" + "".join(f"{'good ' * 30000} movie {i},{i % 2}\n" for i in range(20))

CASES = {
    # output paths: never delete or overwrite what the user made, never write outside --output
    "compress into a user's directory": _user_dir_as_out("compress"),
    "heads into a user's directory": _user_dir_as_out("heads"),
    "run into a user's directory": _user_dir_as_out("run"),
    "output is a file": _out_is_file,
    "output under a file": _out_under_file,
    "our output without --overwrite": _our_output_without_overwrite,
    "run --name ..": _args("run", "--model", "@plain", "--train", "@data.csv", "--output", "%runs", "--name", "..",
                           ["--name", "single directory name"]),
    "run --name ../x": _args("run", "--model", "@plain", "--train", "@data.csv", "--output", "%runs", "--name",
                             "../x", ["single directory name"]),
    "run --name a/b": _args("run", "--model", "@plain", "--train", "@data.csv", "--output", "%runs", "--name", "a/b",
                            ["single directory name"]),
    # model directories
    "config garbage": _bad_config("{not json"),
    "config empty": _bad_config(""),
    "config a list": _bad_config("[1, 2]"),
    "config unknown type": _bad_config('{"model_type": "nosuchmodel"}'),
    "config outside the family": _bad_config('{"model_type": "gpt2"}'),
    "weights missing": _bad_weights(None, f"no {COMPRESSED_WEIGHTS} or model.safetensors"),
    "weights corrupt": _bad_weights(b"\x00" * 64, COMPRESSED_WEIGHTS),
    "weights truncated": _truncated_weights,
    "pickle weights only": _pickle_only,
    "no tokenizer": _no_tokenizer,
    "model is a file": _args("eval", "--model", "@data.csv", "--train", "@data.csv", ["expected a model directory"]),
    "model missing": _args("eval", "--model", "%nope", "--train", "@data.csv", ["not found"]),
    # manifests from outside
    "manifest not JSON": _manifest(lambda m: "{oops", "not valid JSON"),
    "manifest a list": _manifest(lambda m: [1, 2]),
    "manifest without modules": _manifest(lambda m: {k: v for k, v in m.items() if k != "modules"}, "modules"),
    "manifest unknown class": _manifest(_set_module("class", "EvilModule"), "EvilModule"),
    "manifest unknown module name": _manifest(lambda m: m["modules"].update({"bert.nothing.here": {"class": "Linear",
                                              "in_features": 2, "out_features": 2, "bias": True}}), "bert.nothing"),
    "manifest wrong shape": _manifest(_set_module("in_features", 31), "shape"),
    "manifest huge shape": _manifest(_set_module("out_features", 10**12)),
    "manifest negative shape": _manifest(_set_module("out_features", -4)),
    "manifest string shape": _manifest(_set_module("out_features", "many")),
    "manifest attribute replaces a method": _manifest(lambda m: m["attributes"].update({ATTENTION: {"forward": 1}}),
                                                      "forward"),
    "manifest attribute not a number": _manifest(lambda m: m["attributes"].update({ATTENTION: {"n_heads": "x"}})),
    "manifest head count disagrees": _manifest(lambda m: m["attributes"].update(
        {ATTENTION: {"num_attention_heads": 3, "all_head_size": 32}}), "3 heads"),
    "manifest future format": _manifest(lambda m: m.update({"format": 99}), "unsupported format"),
    # data files
    "csv not UTF-8": _data("d.csv", b"text,label\n\xff\xfe bad,0\ngood,1\n", "not UTF-8"),
    "jsonl row not an object": _data("d.jsonl", '{"text": "a", "label": 0}\n[1, 2]\n', "d.jsonl:2"),
    "jsonl row without label": _data("d.jsonl", '{"text": "a", "label": 0}\n{"text": "b"}\n', "d.jsonl:2", "label"),
    "jsonl null text": _data("d.jsonl", '{"text": "a", "label": 0}\n{"text": null, "label": 1}\n', "d.jsonl:2"),
    "csv row missing its label": _data("d.csv", "text,label\ngood,1\nbad\nfine,0\n", "d.csv:3", "label"),
    "csv empty label": _data("d.csv", "text,label\ngood,1\nbad,\nfine,0\n", "d.csv:3", "empty"),
    "csv header only": _data("d.csv", "text,label\n", "empty"),
    "csv missing column": _data("d.csv", "words,label\ngood,1\n", "missing column"),
    "unsupported data type": _data("d.xml", "<x/>", "unsupported data file type"),
    "eval label unseen": _args("eval", "--model", "@plain", "--train", "@data.csv", "--eval", "%e.csv",
                               ["e.csv"]),
    # options out of range
    "--max-length 0": _args("eval", "--model", "@plain", "--train", "@data.csv", "--max-length", 0, ["--max-length"]),
    "--max-length beyond positions": _args("eval", "--model", "@plain", "--train", "@data.csv", "--max-length", 1000,
                                           ["--max-length 1000", "64 positions"]),
    "--max-eval -3": _args("eval", "--model", "@plain", "--train", "@data.csv", "--max-eval", -3, ["--max-eval"]),
    "--split bogus": _args("eval", "--model", "@plain", "--train", "@data.csv", "--split", "bogus", ["--split"]),
    "bench -b 0": _args("bench", "@plain", "-b", 0, ["--batch-size"]),
    "bench --repeats 0": _args("bench", "@plain", "--repeats", 0, ["--repeats"]),
    "bench --seq-len beyond positions": _args("bench", "@plain", "--seq-len", 4096, ["--seq-len 4096"]),
    "heads --examples 0": _args("heads", "--model", "@plain", "--train", "@data.csv", "--examples", 0,
                                ["--examples"]),
    "run --lr -1": _args("run", "--model", "@plain", "--train", "@data.csv", "--lr", -1, ["learning_rate"]),
    "run --epochs inf": _args("run", "--model", "@plain", "--train", "@data.csv", "--epochs", "inf", ["epochs"]),
    "run --threads 0": _args("run", "--model", "@plain", "--train", "@data.csv", "--threads", 0, ["--threads"]),
    "run --checkpoint-every 0": _args("run", "--model", "@plain", "--train", "@data.csv", "--checkpoint-every", 0,
                                      ["--checkpoint-every"]),
    "unknown option": _args("run", "--nope", ["No such option"]),
    "unknown command": _args("fly", ["No such command"]),
    "missing argument": _args("compress", ["Missing argument 'model'"]),
    # recipes
    "recipe not UTF-8": _recipe(b"steps:\n  - method: dynamic_int8\n    x: \xff\n", "not UTF-8"),
    "recipe key not text": _recipe("steps:\n  - method: dynamic_int8\n    1: 2\n", "field names must be text"),
    "recipe epochs .inf": _recipe("steps:\n  - method: layerdrop\n    epochs: .inf\n", "not a finite number"),
    "recipe nan": _recipe("steps:\n  - method: naive_ptq\n    percentile: .nan\n", "not a finite number"),
    "recipe method with a newline": _recipe('steps:\n  - method: "dyn\\nerror: forged"\n', "unknown method"),
    "recipe method not text": _recipe("steps:\n  - method: [1]\n", "method name"),
    "recipe steps not a list": _recipe("steps: 3\n", "steps"),
    "recipe top level a list": _recipe("- 1\n", "mapping"),
    "recipe unknown field": _recipe("steps:\n  - method: dynamic_int8\n    colour: red\n", "unknown field"),
    "recipe is a directory": _args("compress", "@plain", "--out", "%o", "--recipe", "%", ["not a file"]),
    # optimize
    "optimize --max-drop -1": _args("optimize", "--model", "@plain", "--train", "@data.csv", "--trials", 2,
                                    "--max-drop", -1, ["--max-drop", "zero or more"]),
    "optimize --objective speed": _args("optimize", "--model", "@plain", "--train", "@data.csv", "--trials", 2,
                                        "--objective", "speed", ["--objective", "latency, size"]),
    "optimize --time-budget 5x": _args("optimize", "--model", "@plain", "--train", "@data.csv",
                                       "--time-budget", "5x", ["--time-budget", "30m"]),
    "optimize without an end": _args("optimize", "--model", "@plain", "--train", "@data.csv",
                                     ["--trials", "--time-budget"]),
    "optimize storage unreachable": _args("optimize", "--model", "@plain", "--train", "@data.csv", "--trials", 2,
                                          "--output", "%runs", "--storage", "postgresql://x@127.0.0.1:1/none",
                                          ["--storage", "cannot be used"]),
    "optimize --space unknown knob": _args("optimize", "--model", "@plain", "--train", "@data.csv", "--trials", 2,
                                           "--space", "depth=3", ["no knob 'depth'", "layers"]),
    "optimize --space bad value": _args("optimize", "--model", "@plain", "--train", "@data.csv", "--trials", 2,
                                        "--space", "layers=four", ["layers takes whole numbers"]),
    "optimize --space unknown quantization": _args("optimize", "--model", "@plain", "--train", "@data.csv",
                                                   "--trials", 2, "--space", "quantization=int3",
                                                   ["['int3'] are not offered", "qat-static-int8"]),
    # export and predict
    "export unknown format": _args("export", "@plain", "--to", "tflite", "--out", "%x", ["--to", "onnx"]),
    "export over its own model": _args("export", "@int8", "--to", "onnx", "--out", "@int8", "--overwrite",
                                       ["is the model being exported"]),
    "export into a user's directory": _user_dir_as_out("export"),
    "export verify data without its column": _args("export", "@plain", "--to", "onnx", "--out", "%x", "--data",
                                                   "@data.csv", "--text-column", "review", ["missing column"]),
    "export model missing": _args("export", "%nope", "--to", "onnx", "--out", "%x", ["not found"]),
    "predict output exists": _args("predict", "@plain", "-i", "@data.csv", "-o", "@data.csv", ["input file"]),
    "predict output is user's file": _args("predict", "@plain", "-i", "@data.csv", "-o", "%", ["directory"]),
    "predict output type": _args("predict", "@plain", "-i", "@data.csv", "-o", "%p.xlsx", ["unsupported"]),
    "predict runtime the model is not for": _args("predict", "@int8", "-i", "@data.csv", "-o", "%p.csv",
                                                  "--runtime", "onnxruntime", ["holds a model for torch",
                                                                               "bertcompress export"]),
    "predict unknown runtime": _args("predict", "@int8", "-i", "@data.csv", "-o", "%p.csv", "--runtime", "tvm",
                                     ["--runtime"]),
    "predict input missing": _args("predict", "@int8", "-i", "%none.csv", "-o", "%p.csv", ["not found"]),
    "predict text column missing": _args("predict", "@int8", "-i", "@data.csv", "-o", "%p.csv", "--text-column",
                                         "review", ["data.csv", "missing column"]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_is_one_clean_line(case, assets, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("BERTCOMPRESS_CACHE", str(tmp_path / "cache"))
    work = tmp_path / "work"
    work.mkdir()
    if case == "eval label unseen":
        (work / "e.csv").write_text("text,label\ngood,7\n")
    args, fragments = CASES[case](assets, work)
    before, assets_before = snapshot(work), snapshot(assets)
    code, err = invoke(capsys, *args)
    assert_one_error_line(code, err, *fragments)
    assert snapshot(work) == before, "a failed command changed files"
    assert snapshot(assets) == assets_before


def test_catalogue_is_large(capsys):
    assert len(CASES) >= 70


def test_long_csv_field_is_data_not_an_error(assets, tmp_path, capsys):
    (tmp_path / "long.csv").write_text(LONG_FIELD)
    code, err = invoke(capsys, "eval", "--model", assets / "plain", "--train", tmp_path / "long.csv",
                       "--max-length", 16)
    assert code == 0, err


def test_overwrite_replaces_only_our_output(assets, tmp_path, capsys):
    out = tmp_path / "out"
    code, err = invoke(capsys, "compress", assets / "plain", "--recipe", "dynamic-int8", "--out", out)
    assert code == 0, err
    first = weights_path(out).stat().st_mtime_ns
    code, err = invoke(capsys, "compress", assets / "plain", "--recipe", "dynamic-int8", "--out", out, "--overwrite")
    assert code == 0, err
    assert weights_path(out).stat().st_mtime_ns != first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # nothing staged is left behind


def test_unexpected_failure_is_one_line_exit_1_with_a_debug_hint(assets, tmp_path, capsys, monkeypatch):
    import bertcompress.io

    def broken(*args, **kwargs):
        raise ZeroDivisionError("boom\nsecond line")

    monkeypatch.setattr(bertcompress.io, "check_model_dir", broken)
    code, err = invoke(capsys, "bench", assets / "plain", "--repeats", 1, "-b", 1, "--seq-len", 8)
    lines = err.strip().splitlines()
    assert code == 1 and len(lines) == 1 and "--debug" in lines[0] and "boom\\nsecond line" in lines[0], err
    code, err = invoke(capsys, "--debug", "bench", assets / "plain", "--repeats", 1, "-b", 1, "--seq-len", 8)
    assert code == 1 and "Traceback" in err and "ZeroDivisionError" in err


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
def test_read_only_output_parent(assets, tmp_path, capsys):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    code, err = invoke(capsys, "compress", assets / "plain", "--recipe", "dynamic-int8", "--out", locked / "o")
    assert_one_error_line(code, err, "not writable")
