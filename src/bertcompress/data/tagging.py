"""Token classification: tagged sentences from CoNLL-style or JSONL files, checked line by line; word tags
aligned to word pieces (a word's first piece carries its tag, the other pieces none); and predictions read
back per word, for entity-level scores."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bertcompress.core.errors import BertCompressError

DOCUMENT_START = "-DOCSTART-"


@dataclass(frozen=True)
class TaggedExample:
    words: tuple[str, ...]
    tags: tuple[int, ...]  # one label id per word; empty for untagged text

    @property
    def label(self) -> int:  # shared with classification examples: -1 marks text without labels
        return 0 if self.tags else -1

    @property
    def text(self) -> str:
        return " ".join(self.words)

    @property
    def text_pair(self) -> None:
        return None


def _tag_id(path: Path, line: int, tag: str, label_ids: dict[str, int] | None, seen: dict[str, int]) -> int:
    if label_ids is None:
        return seen.setdefault(tag, len(seen))
    if tag not in label_ids:
        raise BertCompressError(f"{path}:{line}: tag {tag!r} is not in the label set ({', '.join(label_ids)})")
    return label_ids[tag]


def read_conll(path: Path, label_ids: dict[str, int] | None = None) -> tuple[list[TaggedExample], list[str]]:
    """Sentences of a CoNLL file (one `word ... tag` line per word, the tag in the last column, a blank line
    between sentences, -DOCSTART- lines skipped) and the label names (`label_ids`' order, or first seen)."""
    path = Path(path)
    if not path.exists():
        raise BertCompressError(f"{path}: data file not found")
    seen: dict[str, int] = {}
    sentences, words, tags = [], [], []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as error:
        raise BertCompressError(f"{path}: not UTF-8 text ({error.reason} at byte {error.start})") from None
    for number, line in enumerate([*lines, ""], 1):
        columns = line.split()
        if not columns or columns[0] == DOCUMENT_START:
            if words:
                sentences.append(TaggedExample(tuple(words), tuple(tags)))
            words, tags = [], []
            continue
        if len(columns) < 2:
            raise BertCompressError(f"{path}:{number}: expected a word and its tag, found {line.strip()!r}")
        words.append(columns[0])
        tags.append(_tag_id(path, number, columns[-1], label_ids, seen))
    if not sentences:
        raise BertCompressError(f"{path}: no tagged sentences found")
    return sentences, list(label_ids or seen)


def read_tag_jsonl(path: Path, label_ids: dict[str, int] | None = None) -> tuple[list[TaggedExample], list[str]]:
    """Sentences of a JSONL file, one {"tokens": [...], "tags": [...]} object a line."""
    from bertcompress.data.tasks import read_rows

    seen: dict[str, int] = {}
    sentences = []
    for number, row in read_rows(Path(path)):
        tokens, tags = row.get("tokens"), row.get("tags")
        if not isinstance(tokens, list) or not isinstance(tags, list) or not tokens:
            raise BertCompressError(f"{path}:{number}: fields 'tokens' and 'tags' must be non-empty lists")
        if len(tokens) != len(tags):
            raise BertCompressError(f"{path}:{number}: {len(tokens)} tokens but {len(tags)} tags")
        ids = tuple(_tag_id(Path(path), number, str(tag), label_ids, seen) for tag in tags)
        sentences.append(TaggedExample(tuple(map(str, tokens)), ids))
    return sentences, list(label_ids or seen)


def read_tagged(path: Path, label_ids: dict[str, int] | None = None) -> tuple[list[TaggedExample], list[str]]:
    """CoNLL (.conll, .txt, .iob, .bio, .tsv) or JSONL tagged sentences, by the file's suffix."""
    suffix = Path(path).suffix.lower()
    return (read_tag_jsonl if suffix in (".jsonl", ".json") else read_conll)(path, label_ids)


def encode_tagged(examples: list[TaggedExample], tokenizer, max_length: int):
    """Word pieces of each sentence (truncated to `max_length`) with each word's tag on its first piece;
    `extra["first_pieces"]` lists, per sentence, the piece that stands for each word kept."""
    from bertcompress.data.batching import IGNORED, Encoded

    out = tokenizer([list(e.words) for e in examples], is_split_into_words=True, truncation=True,
                    max_length=max_length, padding=False)
    labels, first_pieces = [], []
    for index, example in enumerate(examples):
        word_ids = out.word_ids(index)
        firsts = [i for i, w in enumerate(word_ids) if w is not None and (i == 0 or word_ids[i - 1] != w)]
        row = [IGNORED] * len(word_ids)
        for piece in firsts:
            row[piece] = example.tags[word_ids[piece]] if example.tags else IGNORED
        labels.append(row)
        first_pieces.append(firsts)
    return Encoded(out["input_ids"], out.get("token_type_ids"), labels, tokenizer.pad_token_id or 0,
                   extra={"examples": examples, "first_pieces": first_pieces})


def word_predictions(rows: list, encoded) -> list[list[int]]:
    """Each sentence's predicted tag ids, one per word kept (the argmax at its first piece)."""
    return [row[firsts].argmax(-1).tolist() for row, firsts in zip(rows, encoded.extra["first_pieces"])]
