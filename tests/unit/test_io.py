import json

import pytest
import torch
from transformers import GPT2Config, GPT2ForSequenceClassification

import bertcompress as bc
from bertcompress.io import write_atomically
from tests.conftest import random_batch, tiny_model


def test_plain_model_saves_and_reloads_to_identical_logits(model, tokenizer, tmp_path):
    batch = random_batch()
    path = bc.save(model, tmp_path / "m", tokenizer)
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["model_type"] == "bert" and manifest["modules"]["classifier"]["class"] == "Linear"
    reloaded = bc.load(path)
    with torch.no_grad():
        assert torch.equal(reloaded(**batch).logits, model(**batch).logits)
    assert bc.load_tokenizer(path)("good movie")["input_ids"] == tokenizer("good movie")["input_ids"]


def test_hugging_face_directory_loads_with_new_head(tmp_path):
    tiny_model(num_labels=2).bert.save_pretrained(tmp_path / "hf")
    model = bc.load(tmp_path / "hf", num_labels=3)
    assert model.classifier.out_features == 3


def test_missing_model_path_is_a_clear_error(tmp_path):
    with pytest.raises(bc.BertCompressError, match="not found"):
        bc.load(tmp_path / "nowhere")


def test_model_outside_the_family_is_a_clear_error(tmp_path):
    GPT2ForSequenceClassification(GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=32)).save_pretrained(
        tmp_path / "gpt2")
    with pytest.raises(bc.BertCompressError, match="'gpt2' is not a supported"):
        bc.load(tmp_path / "gpt2")


def test_label_count_mismatch_is_a_clear_error(model, tmp_path):
    bc.save(model, tmp_path / "m")
    with pytest.raises(bc.BertCompressError, match="head has 2 labels but the task has 3"):
        bc.load(tmp_path / "m", num_labels=3)


def test_failed_write_leaves_nothing_behind(tmp_path):
    def fill(directory):
        (directory / "half.txt").write_text("partial")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        write_atomically(tmp_path / "out", fill)
    assert list(tmp_path.iterdir()) == []


def test_weights_file_and_config_follow_what_plain_transformers_can_hold(tokenizer, tmp_path):
    from bertcompress.io import COMPRESSED_WEIGHTS, MANIFEST, WEIGHTS
    from bertcompress.surgery.ffn import prune_ffn_neurons

    plain = tiny_model()
    plain._bertcompress_history = [{"method": "ffn_pruning"}]
    prune_ffn_neurons(plain, {0: list(range(8)), 1: list(range(8))})  # uniform: 48 -> 40 neurons in both layers
    saved = bc.save(plain, tmp_path / "plain", tokenizer)
    assert (saved / WEIGHTS).exists() and not (saved / COMPRESSED_WEIGHTS).exists()
    assert not (saved / "README.md").exists()
    assert json.loads((saved / "config.json").read_text())["intermediate_size"] == 40
    manifest = json.loads((saved / MANIFEST).read_text())
    assert manifest["architecture"] == "BertForSequenceClassification"
    assert manifest["history"] == [{"method": "ffn_pruning"}] and manifest["attributes"]
    assert bc.load(saved)._bertcompress_history == [{"method": "ffn_pruning"}]

    int8 = tiny_model()
    bc.compress(int8, bc.DynamicInt8())
    saved = bc.save(int8, tmp_path / "int8", tokenizer)
    assert (saved / COMPRESSED_WEIGHTS).exists() and not (saved / WEIGHTS).exists()
    assert "is a bertcompress Int8" in (saved / "README.md").read_text()
    entries = json.loads((saved / MANIFEST).read_text())["modules"]
    assert entries["bert.encoder.layer.0.attention.self.query"]["class"] == "DynamicInt8Linear"


def test_directory_bytes_can_leave_out_the_tokenizer_and_notes(tokenizer, tmp_path):
    from bertcompress.io import directory_bytes_of

    model = tiny_model()
    bc.compress(model, bc.DynamicInt8())
    saved = bc.save(model, tmp_path / "m", tokenizer)
    files = {f.name: f.stat().st_size for f in saved.iterdir() if f.is_file()}
    assert directory_bytes_of(saved) == sum(files.values())
    kept = {"bertcompress.safetensors", "manifest.json", "config.json"}
    assert directory_bytes_of(saved, exclude_tokenizer=True) == sum(v for k, v in files.items() if k in kept)
    assert directory_bytes_of(saved, exclude_tokenizer=True) < directory_bytes_of(saved)
