"""Extractive question answering: SQuAD-format files, checked answer by answer; questions turned into model
inputs with a document stride (long contexts become several overlapping windows); and the best span of
each question's windows mapped back to its text."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from bertcompress.core.errors import BertCompressError

MAX_ANSWER_TOKENS = 30  # the SQuAD convention, as in the Transformers QA examples
BEST_OF = 20  # start and end candidates per window


@dataclass(frozen=True)
class Answer:
    text: str
    start: int  # character offset in the context


@dataclass(frozen=True)
class QAExample:
    id: str
    question: str
    context: str
    answers: tuple[Answer, ...] = ()

    @property
    def label(self) -> int:  # shared with classification examples: -1 marks text without a label
        return 0 if self.answers else -1

    @property
    def text(self) -> str:
        return self.question

    @property
    def text_pair(self) -> str:
        return self.context


def _field(path: Path, where: str, item: dict, name: str, kind: type):
    value = item.get(name) if isinstance(item, dict) else None
    if not isinstance(value, kind):
        raise BertCompressError(f"{path}: {where}: field {name!r} is missing or not "
                                f"{'a list' if kind is list else 'text' if kind is str else kind.__name__}")
    return value


REPAIR_WINDOW = 20  # characters an answer_start may be off by in a packaged set before it is dropped


def _repaired(context: str, text: str, start: int) -> int | None:
    """The answer's real start when a packaged set misplaces it by a few characters (or None)."""
    nearest = context.find(text, max(0, start - REPAIR_WINDOW))
    return nearest if 0 <= nearest <= start + REPAIR_WINDOW else None


def _answers(path: Path, where: str, qa: dict, context: str, strict: bool) -> tuple[Answer, ...]:
    found = []
    for number, answer in enumerate(_field(path, where, qa, "answers", list)):
        place = f"{where} answer {number}"
        text, start = _field(path, place, answer, "text", str), answer.get("answer_start")
        if not isinstance(start, int) or isinstance(start, bool):
            raise BertCompressError(f"{path}: {place}: field 'answer_start' is missing or not an integer")
        if context[start : start + len(text)] != text and not strict:
            start = _repaired(context, text, start)
            if start is None:
                continue
        elif context[start : start + len(text)] != text:
            raise BertCompressError(f"{path}: {place}: answer {text[:40]!r} is not in the context at "
                                    f"answer_start {start}")
        found.append(Answer(text, start))
    return tuple(found)


def read_squad(path: Path, need_answers: bool = True, strict: bool = True) -> list[QAExample]:
    """Every question of a SQuAD v1.1-format JSON file; any malformed entry names the file, the article,
    paragraph and question, and the field. Not `strict` (packaged sets with a few misplaced answers): an
    answer a few characters off is moved to where its text is, one not found nearby is dropped, and so is
    a question left without answers."""
    path = Path(path)
    if not path.exists():
        raise BertCompressError(f"{path}: data file not found")
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise BertCompressError(f"{path}: not a SQuAD JSON file ({error})") from None
    examples = []
    for a, article in enumerate(_field(path, "top level", document, "data", list)):
        for p, paragraph in enumerate(_field(path, f"article {a}", article, "paragraphs", list)):
            where = f"article {a} paragraph {p}"
            context = _field(path, where, paragraph, "context", str)
            for q, qa in enumerate(_field(path, where, paragraph, "qas", list)):
                place = f"{where} question {q}"
                question = _field(path, place, qa, "question", str)
                answers = _answers(path, f"{place} (id {qa.get('id')})", qa, context, strict)
                if not answers and not strict:
                    continue
                if need_answers and not answers:
                    raise BertCompressError(f"{path}: {place}: no answers (SQuAD v1.1 questions all have one)")
                examples.append(QAExample(str(qa.get("id", f"{a}-{p}-{q}")), question.strip(), context, answers))
    if not examples:
        raise BertCompressError(f"{path}: no questions found")
    return examples


@dataclass
class Windows:
    """Per window (model input): the question it belongs to and, per token, the context characters it
    covers (None outside the context)."""

    example: list[int] = field(default_factory=list)
    offsets: list[list[tuple[int, int] | None]] = field(default_factory=list)


def encode_questions(examples: list[QAExample], tokenizer, max_length: int, stride: int | None = None):
    """Question + context windows of at most `max_length` tokens overlapping by `stride` tokens (default a
    quarter of the length). Labels are the (start, end) tokens of the first answer, or the [CLS] token
    (0, 0) where a window does not hold it, as in BERT's SQuAD recipe; -1 for unanswered questions."""
    from bertcompress.data.batching import Encoded

    stride = max_length // 4 if stride is None else stride
    out = tokenizer([e.question for e in examples], [e.context for e in examples], truncation="only_second",
                    max_length=max_length, stride=stride, return_overflowing_tokens=True,
                    return_offsets_mapping=True, padding=False)
    windows, labels = Windows(), []
    for index, offsets in enumerate(out["offset_mapping"]):
        example = examples[out["overflow_to_sample_mapping"][index]]
        sequence = out.sequence_ids(index)
        spans = [tuple(o) if s == 1 else None for o, s in zip(offsets, sequence)]
        windows.example.append(out["overflow_to_sample_mapping"][index])
        windows.offsets.append(spans)
        labels.append(_span_label(spans, example.answers[0]) if example.answers else (-1, -1))
    type_ids = out.get("token_type_ids")
    return Encoded(out["input_ids"], type_ids, labels, tokenizer.pad_token_id or 0,
                   extra={"windows": windows, "examples": examples})


def _span_label(spans: list[tuple[int, int] | None], answer: Answer) -> tuple[int, int]:
    first, last = answer.start, answer.start + len(answer.text)
    inside = [i for i, s in enumerate(spans) if s is not None]
    if not inside or spans[inside[0]][0] > first or spans[inside[-1]][1] < last:
        return (0, 0)
    start = next(i for i in inside if spans[i][1] > first)
    end = next(i for i in reversed(inside) if spans[i][0] < last)
    return (start, end)


def best_answers(span_rows: list, encoded) -> dict[str, str]:
    """Each question's answer text: the highest start + end logit over its windows, among spans inside the
    context with start <= end and at most MAX_ANSWER_TOKENS tokens (the Transformers QA post-processing)."""
    windows, examples = encoded.extra["windows"], encoded.extra["examples"]
    best: dict[int, tuple[float, str]] = {}
    for row, example_index, spans in zip(span_rows, windows.example, windows.offsets):
        context = examples[example_index].context
        starts = row[:, 0].topk(min(BEST_OF, len(row))).indices.tolist()
        ends = row[:, 1].topk(min(BEST_OF, len(row))).indices.tolist()
        for s in starts:
            for e in ends:
                if spans[s] is None or spans[e] is None or e < s or e - s + 1 > MAX_ANSWER_TOKENS:
                    continue
                value = float(row[s, 0] + row[e, 1])
                if example_index not in best or value > best[example_index][0]:
                    best[example_index] = (value, context[spans[s][0] : spans[e][1]])
    return {example.id: best.get(i, (0.0, ""))[1] for i, example in enumerate(examples)}
