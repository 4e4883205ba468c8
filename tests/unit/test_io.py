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
