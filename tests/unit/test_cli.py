"""The CLI as a user meets it: one-line errors with exit code 2, no traceback, nothing half-written."""
import contextlib
import io
import os
import subprocess
import sys

import pytest

from bertcompress.cli import main
from tests.conftest import tiny_model


def bertcompress(*args, cwd=None):
    """The CLI in-process (a subprocess per case costs seconds of imports); `test_entry_point` runs the real
    console script once."""
    out, err, previous = io.StringIO(), io.StringIO(), os.getcwd()
    try:
        os.chdir(cwd or previous)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                main([str(a) for a in args])
                code = 0
            except SystemExit as done:
                code = done.code
    finally:
        os.chdir(previous)
    return subprocess.CompletedProcess(args, code, out.getvalue(), err.getvalue())


def test_entry_point_runs_as_a_process():
    result = subprocess.run([sys.executable, "-m", "bertcompress.cli", "run", "--nope"], capture_output=True,
                            text=True, timeout=300, env={**os.environ, "BERTCOMPRESS_QUIET": "1"})
    assert_clean_error(result, "No such option: --nope")


def assert_clean_error(result, *fragments):
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one error line, got {len(lines)}:\n{result.stderr}"
    (text,) = lines
    assert text.startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment in text, text


def test_methods_lists_fields():
    result = bertcompress("methods")
    assert result.returncode == 0
    assert "dynamic_int8" in result.stdout and "reduce_range" in result.stdout


@pytest.fixture
def user_data(tmp_path):
    rows = "".join(f"{'good fine' if i % 2 else 'bad dull'} movie {i},{i % 2}\n" for i in range(40))
    (tmp_path / "data.csv").write_text("text,label\n" + rows)
    return tmp_path / "data.csv"


@pytest.mark.parametrize("args, fragments", [
    (["run", "--model", "/no/such/model"], ["/no/such/model", "not found"]),
    (["run", "--task", "imdb"], ["unknown task 'imdb'", "rotten_tomatoes"]),
    (["run", "--recipe", "missing.yaml"], ["recipe file missing.yaml not found"]),
    (["run", "--lr", "-1"], ["train.learning_rate"]),
])
def test_bad_input_is_one_line_exit_2(tmp_path, args, fragments, cache):
    result = bertcompress(*args, "--output", tmp_path / "runs", cwd=tmp_path)
    assert_clean_error(result, *fragments)
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_malformed_recipe(tmp_path, cache):
    (tmp_path / "bad.yaml").write_text("steps:\n  - method: dynamic_int8\n    bits: [\n")
    assert_clean_error(bertcompress("run", "--recipe", tmp_path / "bad.yaml"), "bad.yaml", "malformed YAML")


def test_missing_column_and_empty_data(tmp_path, user_data, cache):
    assert_clean_error(bertcompress("run", "--train", user_data, "--label-column", "stars"),
                       "data.csv", "missing column(s) ['stars']")
    (tmp_path / "empty.csv").write_text("text,label\n")
    assert_clean_error(bertcompress("run", "--train", tmp_path / "empty.csv"), "empty.csv", "empty")


def test_model_outside_the_family(tmp_path, cache):
    from transformers import GPT2Config, GPT2ForSequenceClassification

    GPT2ForSequenceClassification(GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=32)).save_pretrained(
        tmp_path / "gpt2")
    assert_clean_error(bertcompress("compress", tmp_path / "gpt2", "--out", tmp_path / "o", "--recipe",
                                    "dynamic-int8"), "'gpt2' is not a supported BERT-family encoder")
    assert not (tmp_path / "o").exists()


def test_labels_that_do_not_match_the_head(tmp_path, user_data, cache):
    import bertcompress as bc

    bc.save(tiny_model(num_labels=3), tmp_path / "three")
    assert_clean_error(bertcompress("eval", "--model", tmp_path / "three", "--train", user_data),
                       "has 3 labels but the task has 2")


def test_compress_and_bench_a_saved_model(tmp_path, tokenizer):
    import bertcompress as bc

    bc.save(tiny_model(), tmp_path / "fp32", tokenizer)
    result = bertcompress("compress", tmp_path / "fp32", "--out", tmp_path / "int8", "--recipe", "dynamic-int8")
    assert result.returncode == 0, result.stderr
    assert bc.load(tmp_path / "int8")._bertcompress_history[0]["method"] == "dynamic_int8"
    result = bertcompress("bench", tmp_path / "fp32", tmp_path / "int8", "--repeats", "3", "--seq-len", "16")
    assert result.returncode == 0, result.stderr
    assert "b32 speedup" in result.stdout and "1.00x" in result.stdout
