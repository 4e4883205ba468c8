"""`predict` for every task type: answers for QA, a tag per word for taggers, vectors for embedders."""
import json

import pytest
import torch

import bertcompress as bc
from bertcompress.core.errors import BertCompressError
from bertcompress.predict import predict_file, PredictSettings
from bertcompress.data.tasks import Columns
from tests.conftest import tiny_model, tiny_tokenizer


def saved(tmp_path, task_type, **labels):
    model = tiny_model(task_type=task_type, **labels)
    return bc.save(model, tmp_path / task_type, tiny_tokenizer())


def rows_of(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_qa_predictions_are_spans_of_their_contexts(tmp_path):
    source = tmp_path / "questions.jsonl"
    contexts = ["the good film was dull", "superb actor and a bad plot"]
    source.write_text("".join(json.dumps({"q": "which film", "c": c}) + "\n" for c in contexts))
    settings = PredictSettings(columns=Columns(text="q", text_pair="c"), max_length=32)
    assert predict_file(str(saved(tmp_path, "question_answering")), source, tmp_path / "out.jsonl", settings) == 2
    for row, context in zip(rows_of(tmp_path / "out.jsonl"), contexts):
        assert row["prediction"] and row["prediction"] in context and row["c"] == context
    with pytest.raises(BertCompressError, match="context column"):
        predict_file(str(tmp_path / "question_answering"), source, tmp_path / "x.jsonl",
                     PredictSettings(columns=Columns(text="q")))


def test_tagger_predictions_give_one_known_tag_per_word(tmp_path):
    model = tiny_model(task_type="token_classification", num_labels=3)
    model.config.id2label = {0: "O", 1: "B-ENT", 2: "I-ENT"}
    path = bc.save(model, tmp_path / "tagger", tiny_tokenizer())
    source = tmp_path / "texts.csv"
    source.write_text("text\ngood film was dull\nsuperb\n")
    predict_file(str(path), source, tmp_path / "out.jsonl", PredictSettings(max_length=32))
    rows = rows_of(tmp_path / "out.jsonl")
    assert [len(r["prediction"].split()) for r in rows] == [4, 1]
    assert {tag for r in rows for tag in r["prediction"].split()} <= {"O", "B-ENT", "I-ENT"}


def test_embedder_predictions_are_its_unit_vectors(tmp_path):
    path = saved(tmp_path, "embedding")
    source = tmp_path / "texts.csv"
    source.write_text("text\ngood film\nthe plot was dull\n")
    predict_file(str(path), source, tmp_path / "out.jsonl", PredictSettings(max_length=32))
    vectors = torch.tensor([r["embedding"] for r in rows_of(tmp_path / "out.jsonl")])
    assert vectors.shape == (2, 32) and torch.allclose(vectors.norm(dim=-1), torch.ones(2), atol=1e-4)
