"""Token classification: CoNLL and JSONL files checked line by line, tags aligned to first word pieces, and
entity-level F1 by seqeval's rules."""
import json

import pytest

import bertcompress as bc
from bertcompress.core.errors import BertCompressError
from bertcompress.data.batching import IGNORED, encode
from bertcompress.data.tagging import TaggedExample, read_conll, read_tagged
from bertcompress.evaluation.entities import entity_scores
from bertcompress.evaluation.metrics import score
from bertcompress.training.finetune import finetune
from tests.conftest import tiny_model, tiny_tokenizer, toy_tagging_task

CONLL = """-DOCSTART- -X- -X- O

EU NNP B-NP B-ORG
rejects VBZ B-VP O
German JJ B-NP B-MISC

Peter NNP B-NP B-PER
Blackburn NNP I-NP I-PER
"""


def test_read_conll_splits_sentences_skips_document_starts_and_keeps_the_last_column(tmp_path):
    path = tmp_path / "train.txt"
    path.write_text(CONLL)
    sentences, labels = read_conll(path)
    assert [s.words for s in sentences] == [("EU", "rejects", "German"), ("Peter", "Blackburn")]
    assert labels == ["B-ORG", "O", "B-MISC", "B-PER", "I-PER"]
    assert sentences[1].tags == (3, 4)


def test_a_tag_outside_the_label_set_names_the_file_and_line(tmp_path):
    path = tmp_path / "eval.txt"
    path.write_text(CONLL.replace("B-MISC", "B-XYZ"))
    with pytest.raises(BertCompressError, match=r"eval.txt:5: tag 'B-XYZ' is not in the label set"):
        read_conll(path, {"O": 0, "B-ORG": 1, "B-MISC": 2, "B-PER": 3, "I-PER": 4})


def test_a_line_without_a_tag_is_refused(tmp_path):
    path = tmp_path / "bad.conll"
    path.write_text("EU B-ORG\nrejects\n")
    with pytest.raises(BertCompressError, match="bad.conll:2: expected a word and its tag"):
        read_conll(path)


def test_jsonl_tags_read_and_checked(tmp_path):
    path = tmp_path / "tags.jsonl"
    path.write_text(json.dumps({"tokens": ["good", "film"], "tags": ["B-ENT", "I-ENT"]}) + "\n"
                    + json.dumps({"tokens": ["bad"], "tags": ["O", "O"]}) + "\n")
    with pytest.raises(BertCompressError, match="tags.jsonl:2: 1 tokens but 2 tags"):
        read_tagged(path)
    path.write_text(json.dumps({"tokens": ["good", "film"], "tags": ["B-ENT", "I-ENT"]}) + "\n")
    sentences, labels = read_tagged(path)
    assert sentences == [TaggedExample(("good", "film"), (0, 1))] and labels == ["B-ENT", "I-ENT"]


def test_tags_sit_on_each_words_first_piece_only():
    tokenizer = tiny_tokenizer()
    example = TaggedExample(("good", "filmgood", "bad"), (1, 2, 0))  # 'filmgood' -> film ##good? or [UNK]
    data = encode([example], tokenizer, 32)
    labels, firsts = data.labels[0], data.extra["first_pieces"][0]
    assert len(firsts) == 3 and labels[0] == IGNORED and labels[-1] == IGNORED  # [CLS], [SEP]
    assert [labels[i] for i in firsts] == [1, 2, 0]
    assert sum(label != IGNORED for label in labels) == 3


def test_entity_f1_counts_an_entity_only_when_type_and_span_match():
    names = ["O", "B-PER", "I-PER", "B-ORG"]
    gold = [[1, 2, 0, 3]]
    assert entity_scores([[1, 2, 0, 3]], gold, names)["f1"] == 1.0
    half = entity_scores([[1, 0, 0, 3]], gold, names)  # PER span cut short: wrong; ORG right
    assert half["precision"] == pytest.approx(0.5) and half["recall"] == pytest.approx(0.5)
    assert half["word_accuracy"] == pytest.approx(0.75) and type(half["f1"]) is float  # JSON-serialisable
    truncated = entity_scores([[1, 2]], gold, names)  # words past the kept pieces count as O
    assert truncated["recall"] == pytest.approx(0.5) and truncated["precision"] == 1.0


def test_a_tagger_learns_the_toy_task_and_is_scored_by_entity_f1():
    tokenizer, model = tiny_tokenizer(), tiny_model(task_type="token_classification", num_labels=3)
    task = toy_tagging_task()
    data = encode(task.split("train"), tokenizer, 16)
    before, _ = score(model, data, 3, label_names=task.label_names)
    ctx = bc.Context(task=task, tokenizer=tokenizer, train=bc.TrainConfig(batch_size=8, max_length=16))
    finetune(model, ctx, "tags", epochs=10, learning_rate=3e-3)
    after, predicted = score(model, data, 3, label_names=task.label_names)
    assert after["f1"] > max(before["f1"] + 0.3, 0.8) and after["accuracy"] == after["f1"]
    assert [len(p) for p in predicted] == [len(e.words) for e in task.split("train")]
    again, _ = score(model, data, 3, predicted, label_names=task.label_names)
    assert again["agreement"] == 1.0
