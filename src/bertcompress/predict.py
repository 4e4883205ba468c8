"""`bertcompress predict`: label a file of texts with a saved or exported model, in the runtime it runs in."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from bertcompress import io
from bertcompress.core.errors import BertCompressError
from bertcompress.core.task_types import CLASSIFICATION, QUESTION_ANSWERING, TOKEN_CLASSIFICATION, task_type_of
from bertcompress.core.task_types import EMBEDDING as EMBEDDING_TYPE
from bertcompress.data.batching import encode
from bertcompress.data.qa import QAExample, best_answers
from bertcompress.data.tagging import TaggedExample, word_predictions
from bertcompress.data.tasks import Columns, Example, check_table_suffix, read_rows, read_texts, write_rows
from bertcompress.evaluation.metrics import outputs
from bertcompress.runtimes import open_model, require_runtime, runtime_of

PREDICTION, SCORE, EMBEDDING = "prediction", "score", "embedding"


@dataclass(frozen=True)
class PredictSettings:
    runtime: str | None = None  # None: the runtime the model directory is for
    columns: Columns = Columns()
    batch_size: int = 32
    max_length: int = 128
    threads: int | None = None
    overwrite: bool = False


def check_predict_request(model: str, source: Path, target: Path, settings: PredictSettings) -> str:
    """The cheap checks before any model is loaded; returns the runtime that will run."""
    io.check_source(model)
    if not Path(source).exists():
        raise BertCompressError(f"{source}: input file not found")
    if Path(target).resolve() == Path(source).resolve():
        raise BertCompressError(f"{target}: is the input file; choose another --output")
    if Path(target).is_dir():
        raise BertCompressError(f"{target}: is a directory; --output must be a .csv, .tsv or .jsonl file")
    check_table_suffix(target)
    if Path(target).exists() and not settings.overwrite:
        raise BertCompressError(f"{target}: already exists; pass --overwrite to replace it")
    runtime = settings.runtime or runtime_of(Path(model))
    require_runtime(runtime)
    return runtime


def predict_file(model: str, source: Path, target: Path, settings: PredictSettings = PredictSettings(),
                 on_batch: Callable[[int], None] | None = None, on_start: Callable[[int], None] | None = None) -> int:
    """Write each input row with what the model predicts for it; returns the number of rows. Classifiers:
    the label (by name) and its probability; QA (question in the text column, context in the pair column):
    the answer text; taggers (words split on spaces): one tag per word; embedders: the sentence vector.
    Batches are sorted by length so they pad little; the output keeps the input order."""
    runtime = check_predict_request(model, source, target, settings)
    rows = [row for _, row in read_rows(Path(source))]
    runner = open_model(io.resolve(model), runtime, settings.threads)
    task_type = task_type_of(runner)
    examples = _inputs(read_texts(source, settings.columns), task_type, source, settings.columns)
    data = encode(examples, io.load_tokenizer(model), settings.max_length)
    if on_start is not None:
        on_start(len(data))
    found = outputs(runner, data, settings.batch_size, on_batch, task_type)
    predicted = PREDICTORS[task_type](found, data, runner.config)
    write_rows(Path(target), [{**row, **extra} for row, extra in zip(rows, predicted)])
    return len(rows)


def _inputs(texts: list[Example], task_type: str, source: Path, columns: Columns) -> list:
    if task_type == QUESTION_ANSWERING:
        if columns.text_pair is None:
            raise BertCompressError(f"{source}: a QA model needs the question column (--text-column) and the "
                                    "context column (--text-pair-column)")
        return [QAExample(str(i), e.text, e.text_pair) for i, e in enumerate(texts)]
    if task_type == TOKEN_CLASSIFICATION:
        return [TaggedExample(tuple(e.text.split()), ()) for e in texts]
    return texts


def _labels(rows: list, data, config) -> list[dict]:
    probabilities = torch.stack(rows).softmax(-1) if rows else torch.zeros(0, 0)
    names = config.id2label
    return [{PREDICTION: names.get(int(best), str(int(best))), SCORE: round(float(p[best]), 6)}
            for p, best in zip(probabilities, probabilities.argmax(-1))]


def _answers(rows: list, data, config) -> list[dict]:
    answers = best_answers(rows, data)
    return [{PREDICTION: answers[e.id]} for e in data.extra["examples"]]


def _tags(rows: list, data, config) -> list[dict]:
    names = config.id2label
    return [{PREDICTION: " ".join(names.get(t, str(t)) for t in tags)} for tags in word_predictions(rows, data)]


def _vectors(rows: list, data, config) -> list[dict]:
    return [{EMBEDDING: [round(float(v), 6) for v in row]} for row in rows]


PREDICTORS = {CLASSIFICATION: _labels, QUESTION_ANSWERING: _answers, TOKEN_CLASSIFICATION: _tags,
              EMBEDDING_TYPE: _vectors}
