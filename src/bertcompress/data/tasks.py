"""Task specs: labelled single texts or text pairs, with a fixed seeded train/validation/test split."""
from __future__ import annotations

import bz2
import csv
import hashlib
import json
import random
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

from bertcompress.core.errors import BertCompressError
from bertcompress.core.task_types import (CLASSIFICATION, EMBEDDING, QUESTION_ANSWERING, TOKEN_CLASSIFICATION,
                                          check_task_type)
from bertcompress.data import assets

SPLIT_FRACTIONS = (0.8, 0.1, 0.1)  # train / validation / test


@dataclass(frozen=True)
class Example:
    text: str
    label: int
    text_pair: str | None = None


@dataclass
class Task:
    name: str
    label_names: list[str]
    splits: dict[str, list[Example]]
    description: str = ""
    meta: dict = field(default_factory=dict)
    unlabelled: list[Example] = field(default_factory=list)  # in-domain text without labels (label -1)
    type: str = CLASSIFICATION  # see core.task_types; an embedding task's labels (if any) only score neighbours

    @property
    def num_labels(self) -> int:
        return len(self.label_names)

    @property
    def is_pair(self) -> bool:
        return any(e.text_pair is not None for e in self.splits.get("train", [])[:50])

    def split(self, name: str) -> list[Example]:
        if name not in self.splits:
            raise BertCompressError(f"task {self.name!r} has no split {name!r}; it has {sorted(self.splits)}")
        return self.splits[name]

    def sliced(self, train: int | None = None, evaluation: int | None = None) -> "Task":
        """A smaller copy: the first `train` training and `evaluation` validation/test examples."""
        cut = {"train": train, "validation": evaluation, "test": evaluation}
        splits = {k: v[: cut.get(k)] if cut.get(k) else list(v) for k, v in self.splits.items()}
        return replace(self, splits=splits, meta={**self.meta, "sliced": cut},
                       unlabelled=self.unlabelled[:train] if train else list(self.unlabelled))

    def fingerprint(self) -> str:
        """Hash of labels and all examples: the teacher cache key changes whenever the data does."""
        digest = hashlib.sha256(json.dumps(self.label_names).encode())
        if self.type != CLASSIFICATION:  # classification fingerprints stay what they were (cached teachers)
            digest.update(self.type.encode())
        for split_name in sorted(self.splits):
            digest.update(split_name.encode())
            for example in self.splits[split_name]:
                digest.update(f"{example.label}\t{example.text}\t{example.text_pair}\n".encode())
                if not isinstance(example, Example):  # questions and tagged sentences: their labels too
                    digest.update(repr(getattr(example, "answers", getattr(example, "tags", getattr(example, "score", None)))).encode())
        return digest.hexdigest()[:16]

    def counts(self) -> dict[str, int]:
        return {name: len(examples) for name, examples in self.splits.items()}


def seeded_split(examples: list[Example], seed: int) -> dict[str, list[Example]]:
    if not examples:
        raise BertCompressError("dataset is empty: no labelled examples to split")
    order = list(range(len(examples)))
    random.Random(seed).shuffle(order)
    n_train = int(len(order) * SPLIT_FRACTIONS[0])
    n_valid = int(len(order) * SPLIT_FRACTIONS[1])
    pick = lambda idx: [examples[i] for i in idx]  # noqa: E731
    return {
        "train": pick(order[:n_train]),
        "validation": pick(order[n_train : n_train + n_valid]),
        "test": pick(order[n_train + n_valid :]),
    }


def _rotten_tomatoes(seed: int) -> Task:
    path = assets.member_path("rotten_tomatoes", "rotten_tomatoes_corpus_full.csv.bz2")
    labels = {"rotten": 0, "fresh": 1}
    seen: set[str] = set()
    examples, plots = [], {}
    with bz2.open(path, "rt", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            text = row["text"].strip()
            if row["category"] == "plot" and text:  # unlabelled in-domain text, for distillation
                plots.setdefault(text, Example(text=text, label=-1))
            if row["category"] not in labels or not text or text in seen:
                continue  # drops 'plot' rows and duplicate snippets
            seen.add(text)
            examples.append(Example(text=text, label=labels[row["category"]]))
    return Task("rotten_tomatoes", ["rotten", "fresh"], seeded_split(examples, seed),
                "Rotten Tomatoes review snippets (source of SST-2), fresh vs rotten",
                unlabelled=[e for text, e in plots.items() if text not in seen])


def _vitaminc(seed: int) -> Task:
    path = assets.member_path("vitaminc", "vitaminc_fact_verification/task.json")
    label_names = ["True", "False", "Neither"]
    examples = []
    for item in json.loads(path.read_text(encoding="utf-8"))["examples"]:
        evidence, _, claim = item["input"].partition("\nClaim: ")
        winners = [k for k, v in item["target_scores"].items() if v == 1]
        if len(winners) != 1 or not claim:
            continue
        examples.append(Example(text=evidence.strip(), text_pair=claim.strip(),
                                label=label_names.index(winners[0])))
    return Task("vitaminc", label_names, seeded_split(examples, seed),
                "VitaminC fact verification (BIG-bench): evidence/claim -> supports / refutes / neither")


SQUAD_TRAIN = ("new_wiki_v1.0.json", "nyt_v1.0.json", "reddit_v1.0.json", "amazon_reviews_v1.0.json")


def _squad(seed: int) -> Task:
    """Train on the four SQuAD-format sets of Miller et al. (2020) (new Wikipedia articles, NYT, Reddit,
    Amazon reviews: 37,621 questions; 15 whose answers are not in their context dropped); validate and test
    on SQuAD v1.1 dev (10,565 questions), its paragraphs split in two halves by a seeded shuffle (no
    context in both): 5,209 / 5,356 with seed 0."""
    from bertcompress.data.qa import read_squad

    train = [e for name in SQUAD_TRAIN for e in read_squad(assets.member_path("squad", name), strict=False)]
    dev = read_squad(assets.member_path("squad", "squaddev_v1.1.json"), strict=False)
    contexts = sorted({e.context for e in dev})
    random.Random(seed).shuffle(contexts)
    validation = set(contexts[: len(contexts) // 2])
    return Task("squad", [], {"train": train, "validation": [e for e in dev if e.context in validation],
                              "test": [e for e in dev if e.context not in validation]},
                "SQuAD v1.1 dev (validation/test) and SQuAD-shift sets (train): extractive QA",
                type=QUESTION_ANSWERING)


CONLL_LABELS = ("O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC")


def _conll2003(seed: int) -> Task:
    """CoNLL-2003 English NER with its own train / validation (testa) / test (testb) split; `seed` unused."""
    from bertcompress.data.tagging import read_conll

    ids = {name: i for i, name in enumerate(CONLL_LABELS)}
    splits = {split: read_conll(assets.member_path("conll2003", f"en/{name}.txt"), ids)[0]
              for split, name in (("train", "train"), ("validation", "valid"), ("test", "test"))}
    return Task("conll2003", list(CONLL_LABELS), splits, "CoNLL-2003 English named entities (PER, ORG, LOC, MISC)",
                type=TOKEN_CLASSIFICATION)


BUILTIN: dict[str, Callable[[int], Task]] = {"rotten_tomatoes": _rotten_tomatoes, "vitaminc": _vitaminc,
                                             "squad": _squad, "conll2003": _conll2003}


def get(name: str, seed: int = 0, task_type: str | None = None) -> Task:
    """A built-in task; `task_type` embedding turns a single-text classification task into an embedding task
    (its texts to embed, its labels kept to score nearest neighbours)."""
    try:
        builder = BUILTIN[name]
    except KeyError:
        raise BertCompressError(f"unknown task {name!r}; built-in tasks: {', '.join(sorted(BUILTIN))}") from None
    return as_type(builder(seed), task_type)


def as_type(task: Task, task_type: str | None) -> Task:
    """The task as `task_type` (None: as it is). Classification tasks of single texts can be embedding tasks."""
    if task_type is None or task_type == task.type:
        return task
    if check_task_type(task_type) == EMBEDDING and task.type == CLASSIFICATION:
        if task.is_pair:
            raise BertCompressError(f"task {task.name!r} holds text pairs; an embedding task embeds single texts")
        return replace(task, type=EMBEDDING, description=f"{task.description} (sentence embeddings)")
    raise BertCompressError(f"task {task.name!r} is a {task.type} task and cannot be used as {task_type}")


CSV_FIELD_LIMIT = 64 * 1024 * 1024  # long documents are legitimate; the stdlib default is 128 KiB


def read_rows(path: Path) -> list[tuple[int, dict]]:
    """(line number, row) pairs from a .csv/.tsv/.jsonl file; every problem names the file and line."""
    if not path.exists():
        raise BertCompressError(f"{path}: data file not found")
    if path.is_dir():
        raise BertCompressError(f"{path}: is a directory, expected a .csv, .tsv or .jsonl file")
    check_table_suffix(path)
    suffix = path.suffix.lower()
    try:
        with open(path, encoding="utf-8", newline="") as handle:
            return _json_lines(path, handle) if suffix in (".jsonl", ".json") else _csv_rows(path, handle, suffix)
    except UnicodeDecodeError as error:
        raise BertCompressError(f"{path}: not UTF-8 text ({error.reason} at byte {error.start}); "
                                "save it as UTF-8") from None


def write_rows(path: Path, rows: list[dict]) -> None:
    """Rows to a .csv/.tsv/.jsonl file (by its suffix), written whole or not at all."""
    from bertcompress.files import atomic_file

    path = Path(path)
    suffix = path.suffix.lower()
    with atomic_file(path) as tmp, open(tmp, "w", encoding="utf-8", newline="") as handle:
        if suffix in (".jsonl", ".json"):
            handle.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
            return
        columns = list(dict.fromkeys(key for row in rows for key in row))
        writer = csv.DictWriter(handle, columns, delimiter="\t" if suffix == ".tsv" else ",")
        writer.writeheader()
        writer.writerows(rows)


def check_table_suffix(path: Path) -> None:
    if Path(path).suffix.lower() not in (".jsonl", ".json", ".csv", ".tsv"):
        raise BertCompressError(f"{path}: unsupported data file type {Path(path).suffix!r}; use .csv, .tsv or .jsonl")


def _json_lines(path: Path, handle) -> list[tuple[int, dict]]:
    rows = []
    for number, line in enumerate(handle, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            raise BertCompressError(f"{path}:{number}: not valid JSON ({error.msg})") from None
        if not isinstance(row, dict):
            raise BertCompressError(f"{path}:{number}: each line must be a JSON object, got {type(row).__name__}")
        rows.append((number, row))
    return rows


def _csv_rows(path: Path, handle, suffix: str) -> list[tuple[int, dict]]:
    csv.field_size_limit(CSV_FIELD_LIMIT)
    reader = csv.DictReader(handle, delimiter="\t" if suffix == ".tsv" else ",")
    rows = []
    try:
        for row in reader:
            rows.append((reader.line_num, row))
    except csv.Error as error:
        raise BertCompressError(f"{path}:{reader.line_num}: malformed {suffix[1:].upper()} ({error})") from None
    return rows


@dataclass(frozen=True)
class Columns:
    text: str = "text"
    label: str = "label"
    text_pair: str | None = None


def _cell(path: Path, line: int, row: dict, column: str) -> str:
    """A text or label cell; missing, null, empty or non-text values are errors naming file:line:column."""
    value = row.get(column)
    if value is None:
        raise BertCompressError(f"{path}:{line}: column {column!r} is missing or null")
    if isinstance(value, (dict, list)):
        raise BertCompressError(f"{path}:{line}: column {column!r} must be text, got {type(value).__name__}")
    text = str(value).strip()
    if not text:
        raise BertCompressError(f"{path}:{line}: column {column!r} is empty")
    return text


def _label_order(raw_labels: list[str]) -> dict[str, int]:
    """Numeric labels in numeric order, then the others alphabetically."""
    def key(label: str):
        numeric = label.lstrip("-").isdigit()
        return (not numeric, int(label) if numeric else 0, label)

    return {name: i for i, name in enumerate(sorted(set(raw_labels), key=key))}


def _rows_with(path: Path, columns: list[str | None]) -> list[tuple[int, dict]]:
    """The file's rows, after checking it has some and that its first row has every named column."""
    rows = read_rows(path)
    if not rows:
        raise BertCompressError(f"{path}: dataset is empty")
    missing = [c for c in columns if c and c not in rows[0][1]]
    if missing:
        raise BertCompressError(f"{path}: missing column(s) {missing}; found {sorted(map(str, rows[0][1]))}")
    return rows


def _texts(path: Path, rows: list[tuple[int, dict]], columns: Columns) -> tuple[list[str], list[str | None]]:
    texts = [_cell(path, line, row, columns.text) for line, row in rows]
    pairs = [_cell(path, line, row, columns.text_pair) if columns.text_pair else None for line, row in rows]
    return texts, pairs


def read_texts(path: Path, columns: Columns = Columns()) -> list[Example]:
    """Unlabelled examples (label -1) from a .csv/.tsv/.jsonl file: inputs to predict or to check an export."""
    path = Path(path)
    texts, pairs = _texts(path, _rows_with(path, [columns.text, columns.text_pair]), columns)
    return [Example(text=text, label=-1, text_pair=pair) for text, pair in zip(texts, pairs)]


def _examples(path: Path, columns: Columns, label_ids: dict[str, int] | None) -> tuple[list[Example], list[str]]:
    rows = _rows_with(path, [columns.text, columns.label, columns.text_pair])
    texts, pairs = _texts(path, rows, columns)
    raw_labels = [_cell(path, line, row, columns.label) for line, row in rows]
    label_ids = label_ids if label_ids is not None else _label_order(raw_labels)
    for (line, _), label in zip(rows, raw_labels):
        if label not in label_ids:
            raise BertCompressError(f"{path}:{line}: label {label!r} not seen in the training file "
                                    f"({sorted(label_ids)})")
    examples = [Example(text=text, label=label_ids[label], text_pair=pair)
                for text, pair, label in zip(texts, pairs, raw_labels)]
    return examples, list(label_ids)


def from_files(train: Path, evaluation: Path | None = None, columns: Columns = Columns(), seed: int = 0,
               name: str | None = None, task_type: str = CLASSIFICATION) -> Task:
    """A task from the user's CSV/TSV/JSONL: one file split 80/10/10, or a train file plus an eval file.
    Embedding tasks also read .txt (one text a line) and need no label column (labels, where given, score
    nearest neighbours); with a second-text column they read pairs scored by similarity (STS-style)."""
    if check_task_type(task_type) == EMBEDDING:
        return _embedding_files(Path(train), evaluation and Path(evaluation), columns, seed, name)
    if task_type in (QUESTION_ANSWERING, TOKEN_CLASSIFICATION):
        return _span_or_tag_files(Path(train), evaluation and Path(evaluation), seed, name, task_type)
    train = Path(train)
    examples, label_names = _examples(train, columns, None)
    if len(label_names) < 2:
        raise BertCompressError(f"{train}: column {columns.label!r} has a single label value; need at least 2")
    if evaluation is None:
        splits = seeded_split(examples, seed)
    else:
        held_out, _ = _examples(Path(evaluation), columns, {n: i for i, n in enumerate(label_names)})
        splits = {"train": examples, "validation": held_out, "test": held_out}
    return Task(name or train.stem, label_names, splits, f"user data from {train.name}",
                {"validation_is_test": evaluation is not None})


def _span_or_tag_files(train: Path, evaluation: Path | None, seed: int, name: str | None, task_type: str) -> Task:
    """SQuAD JSON questions, or CoNLL / JSONL tagged sentences (tags of the eval file must be the train file's)."""
    from bertcompress.data.qa import read_squad
    from bertcompress.data.tagging import read_tagged

    if task_type == QUESTION_ANSWERING:
        examples, labels = read_squad(train), []
        held_out = read_squad(evaluation) if evaluation else None
    else:
        examples, labels = read_tagged(train)
        held_out = read_tagged(evaluation, {n: i for i, n in enumerate(labels)})[0] if evaluation else None
    splits = seeded_split(examples, seed) if held_out is None else \
        {"train": examples, "validation": held_out, "test": held_out}
    return Task(name or train.stem, labels, splits, f"user data from {train.name}",
                {"validation_is_test": evaluation is not None}, type=task_type)


def _text_lines(path: Path) -> list[Example]:
    if not path.exists():
        raise BertCompressError(f"{path}: data file not found")
    try:
        lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    except UnicodeDecodeError as error:
        raise BertCompressError(f"{path}: not UTF-8 text ({error.reason} at byte {error.start})") from None
    return [Example(text=line, label=-1) for line in lines if line]


def _embedding_examples(path: Path, columns: Columns, label_ids: dict[str, int] | None
                        ) -> tuple[list[Example], list[str]]:
    """Texts (a label, where given, scores neighbours), or with a second-text column, pairs whose label column
    holds their similarity score."""
    if path.suffix.lower() == ".txt":
        return _text_lines(path), []
    if columns.text_pair:
        from bertcompress.data.similarity import read_scored_pairs

        rows = _rows_with(path, [columns.text, columns.text_pair, columns.label])
        return read_scored_pairs(path, rows, columns.text, columns.text_pair, columns.label, _cell), []
    rows = _rows_with(path, [columns.text])
    if columns.label in rows[0][1]:
        return _examples(path, columns, label_ids)
    return read_texts(path, columns), []


def _embedding_files(train: Path, evaluation: Path | None, columns: Columns, seed: int, name: str | None) -> Task:
    examples, label_names = _embedding_examples(train, columns, None)
    # scored pairs are ranked within a split: each split needs several (10% of 50 = 5)
    unit = "pairs" if columns.text_pair else "texts"
    least = 50 if columns.text_pair and evaluation is None else 20
    if len(examples) < least:
        raise BertCompressError(f"{train}: {len(examples)} {unit}; an embedding task needs at least {least} "
                                "(its scores are computed within each split)")
    if evaluation is None:
        splits = seeded_split(examples, seed)
    else:
        held_out, _ = _embedding_examples(evaluation, columns, {n: i for i, n in enumerate(label_names)} or None)
        alike = [e for e in held_out if type(e) is type(examples[0])]
        if len(alike) < 5:
            raise BertCompressError(f"{evaluation}: {len(alike)} {unit} to evaluate on; give at least 5 "
                                    f"({unit}, like the training file)")
        splits = {"train": examples, "validation": held_out, "test": held_out}
    return Task(name or train.stem, label_names, splits, f"user texts from {train.name} (sentence embeddings)",
                {"validation_is_test": evaluation is not None}, type=EMBEDDING)
