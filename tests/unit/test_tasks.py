import json

import pytest

from bertcompress.core.errors import BertCompressError
from bertcompress.data.tasks import Columns, Example, from_files, seeded_split


def _examples(n):
    return [Example(text=f"text {i}", label=i % 2) for i in range(n)]


def test_seeded_split_is_disjoint_deterministic_and_80_10_10():
    splits = seeded_split(_examples(100), seed=3)
    assert [len(splits[s]) for s in ("train", "validation", "test")] == [80, 10, 10]
    texts = [e.text for s in splits.values() for e in s]
    assert len(set(texts)) == 100
    assert seeded_split(_examples(100), seed=3) == splits
    assert seeded_split(_examples(100), seed=4)["test"] != splits["test"]


def test_csv_tsv_jsonl_with_pairs(tmp_path):
    (tmp_path / "d.csv").write_text("premise,hyp,y\n" + "".join(f"p{i},h{i},{'yes' if i % 2 else 'no'}\n"
                                                             for i in range(20)))
    task = from_files(tmp_path / "d.csv", columns=Columns(text="premise", text_pair="hyp", label="y"))
    assert task.label_names == ["no", "yes"] and task.is_pair
    assert sum(task.counts().values()) == 20
    (tmp_path / "d.tsv").write_text("text\tlabel\n" + "".join(f"t{i}\t{i % 3}\n" for i in range(12)))
    assert from_files(tmp_path / "d.tsv").num_labels == 3
    (tmp_path / "d.jsonl").write_text("".join(json.dumps({"text": f"t{i}", "label": i % 2}) + "\n" for i in range(10)))
    (tmp_path / "e.jsonl").write_text(json.dumps({"text": "x", "label": 1}) + "\n")
    task = from_files(tmp_path / "d.jsonl", tmp_path / "e.jsonl")
    assert task.counts() == {"train": 10, "validation": 1, "test": 1}


def test_missing_column_names_file_and_column(tmp_path):
    (tmp_path / "d.csv").write_text("sentence,label\na,1\nb,0\n")
    with pytest.raises(BertCompressError, match=r"d\.csv: missing column\(s\) \['text'\]"):
        from_files(tmp_path / "d.csv")


def test_empty_file_and_single_label_are_errors(tmp_path):
    (tmp_path / "empty.csv").write_text("text,label\n")
    with pytest.raises(BertCompressError, match="empty"):
        from_files(tmp_path / "empty.csv")
    (tmp_path / "one.csv").write_text("text,label\na,1\nb,1\n")
    with pytest.raises(BertCompressError, match="single label"):
        from_files(tmp_path / "one.csv")


def test_eval_labels_must_be_known(tmp_path):
    (tmp_path / "t.csv").write_text("text,label\na,0\nb,1\n")
    (tmp_path / "e.csv").write_text("text,label\nc,2\n")
    with pytest.raises(BertCompressError, match=r"e.csv:2: label '2' not seen"):
        from_files(tmp_path / "t.csv", tmp_path / "e.csv")


def test_unsupported_and_missing_files(tmp_path):
    with pytest.raises(BertCompressError, match="not found"):
        from_files(tmp_path / "nope.csv")
    (tmp_path / "d.xml").write_text("<x/>")
    with pytest.raises(BertCompressError, match="unsupported data file type"):
        from_files(tmp_path / "d.xml")
