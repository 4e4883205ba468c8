"""Extractive QA: SQuAD files checked entry by entry, windows with a document stride whose labels point at the
answer's tokens, spans mapped back to text, and the official SQuAD v1.1 exact match and F1."""
import json

import pytest
import torch

import bertcompress as bc
from bertcompress.core.errors import BertCompressError
from bertcompress.data.batching import encode
from bertcompress.data.qa import Answer, QAExample, best_answers, read_squad
from bertcompress.evaluation.metrics import outputs, score
from bertcompress.training.finetune import finetune
from bertcompress.evaluation.spans import exact_match, normalize_answer, squad_scores, token_f1
from tests.conftest import tiny_model, tiny_tokenizer, toy_qa_task


def squad_file(tmp_path, qas, context="the good film was very dull"):
    path = tmp_path / "squad.json"
    path.write_text(json.dumps({"version": "1.1", "data": [{"title": "t", "paragraphs": [
        {"context": context, "qas": qas}]}]}))
    return path


def test_read_squad_keeps_questions_and_answers(tmp_path):
    path = squad_file(tmp_path, [{"id": "q1", "question": " what film? ", "answers": [
        {"text": "good film", "answer_start": 4}, {"text": "film", "answer_start": 9}]}])
    (example,) = read_squad(path)
    assert example.id == "q1" and example.question == "what film?"
    assert example.answers == (Answer("good film", 4), Answer("film", 9))


@pytest.mark.parametrize("qa, message", [
    ({"id": "q", "question": "x", "answers": [{"text": "dull", "answer_start": 3}]},
     "article 0 paragraph 0 question 0 \\(id q\\) answer 0: answer 'dull' is not in the context at answer_start 3"),
    ({"id": "q", "answers": [{"text": "dull", "answer_start": 22}]}, "question 0: field 'question' is missing"),
    ({"id": "q", "question": "x", "answers": [{"text": "dull"}]}, "field 'answer_start' is missing"),
    ({"id": "q", "question": "x", "answers": []}, "question 0: no answers"),
])
def test_malformed_squad_entries_name_the_file_place_and_field(tmp_path, qa, message):
    with pytest.raises(BertCompressError, match=f"squad.json: .*{message}"):
        read_squad(squad_file(tmp_path, [qa]))


def test_a_file_that_is_not_squad_json_is_refused(tmp_path):
    path = tmp_path / "squad.json"
    path.write_text("[1, 2]")
    with pytest.raises(BertCompressError, match="field 'data' is missing"):
        read_squad(path)


def test_long_contexts_become_overlapping_windows_whose_labels_point_at_the_answer():
    tokenizer = tiny_tokenizer()
    words = ("good fine bad dull awful movie film plot actor story " * 4).split()
    context = " ".join(words)
    start = context.index("superb") if "superb" in context else None
    assert start is None
    context = context + " superb ending"
    example = QAExample("q", "which", context, (Answer("superb", context.index("superb")),))
    data = encode([example], tokenizer, max_length=16)
    assert len(data) > 3  # windows of 16 tokens over a 42-token context
    windows = data.extra["windows"]
    holding = [i for i, label in enumerate(data.labels) if label != (0, 0)]
    assert holding, "the last window holds the answer"
    for i in holding:
        start_token, end_token = data.labels[i]
        spans = windows.offsets[i]
        assert context[spans[start_token][0]:spans[end_token][1]] == "superb"
    for i in set(range(len(data))) - set(holding):
        assert data.labels[i] == (0, 0)
    # consecutive windows overlap: the stride repeats context tokens
    first, second = [s for s in windows.offsets[0] if s], [s for s in windows.offsets[1] if s]
    assert second[0][0] < first[-1][1]


def test_best_answers_maps_the_highest_scoring_valid_span_back_to_text():
    tokenizer = tiny_tokenizer()
    example = QAExample("q", "which", "the good film was dull", (Answer("good film", 4),))
    data = encode([example], tokenizer, max_length=32)
    spans = data.extra["windows"].offsets[0]
    good = next(i for i, s in enumerate(spans) if s and s[0] == 4)
    film = next(i for i, s in enumerate(spans) if s and s[0] == 9)
    the = next(i for i, s in enumerate(spans) if s and s[0] == 0)
    dull = next(i for i, s in enumerate(spans) if s and s[0] == 18)
    row = torch.full((len(spans), 2), -10.0)
    row[good, 0], row[film, 1] = 5.0, 5.0
    row[0, :] = 50.0  # [CLS] scores highest but lies outside the context: never an answer
    row[dull, 0], row[the, 1] = 9.0, 9.0  # scores more, but ends before it starts
    assert best_answers([row], data) == {"q": "good film"}


def test_official_squad_normalisation_exact_match_and_f1():
    assert normalize_answer("The  Good, Film!") == "good film"
    assert exact_match("a good film", "Good film.") == 1.0
    assert token_f1("good film", "the good old film") == pytest.approx(2 * 1.0 * (2 / 3) / (1 + 2 / 3))
    assert token_f1("dull", "good film") == 0.0
    scores = squad_scores({"a": "good film", "b": "dull"}, {"a": ["bad", "Good film"], "b": ["film"], "c": ["x"]})
    assert scores == {"exact_match": pytest.approx(1 / 3), "f1": pytest.approx(1 / 3), "n": 3}


def test_a_qa_model_learns_the_toy_task_and_is_scored_by_f1():
    tokenizer, model = tiny_tokenizer(), tiny_model(task_type="question_answering")
    task = toy_qa_task()
    data = encode(task.split("train"), tokenizer, 32)
    before, _ = score(model, data, 0)
    ctx = bc.Context(task=task, tokenizer=tokenizer, train=bc.TrainConfig(batch_size=8, max_length=32))
    finetune(model, ctx, "qa", epochs=8, learning_rate=3e-3)
    after, answers = score(model, data, 0)
    assert after["f1"] > before["f1"] + 0.3 and after["accuracy"] == after["f1"]
    assert set(answers) == {e.id for e in task.split("train")}
    again, _ = score(model, data, 0, answers)
    assert again["agreement"] == 1.0


def test_per_token_outputs_keep_only_each_windows_real_tokens():
    tokenizer, model = tiny_tokenizer(), tiny_model(task_type="question_answering")
    data = encode(toy_qa_task().split("test"), tokenizer, 32)
    rows = outputs(model, data)
    assert [len(r) for r in rows] == [len(ids) for ids in data.ids] and rows[0].shape[-1] == 2
