"""`bertcompress predict`: label a file of texts with a saved or exported model, in the runtime it runs in."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bertcompress import io
from bertcompress.core.errors import BertCompressError
from bertcompress.data.batching import encode
from bertcompress.data.tasks import Columns, check_table_suffix, read_rows, read_texts, write_rows
from bertcompress.evaluation.metrics import logits
from bertcompress.runtimes import open_model, require_runtime, runtime_of

PREDICTION, SCORE = "prediction", "score"


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
    """Write each input row with its predicted label (by name) and that label's probability; returns the
    number of rows. Batches are sorted by length so they pad little; the output keeps the input order."""
    runtime = check_predict_request(model, source, target, settings)
    examples, rows = read_texts(source, settings.columns), [row for _, row in read_rows(Path(source))]
    runner = open_model(io.resolve(model), runtime, settings.threads)
    data = encode(examples, io.load_tokenizer(model), settings.max_length)
    if on_start is not None:
        on_start(len(data))
    probabilities = logits(runner, data, settings.batch_size, on_batch).softmax(-1)
    names = runner.config.id2label
    labelled = [{**row, PREDICTION: names.get(int(best), str(int(best))), SCORE: round(float(p[best]), 6)}
                for row, p, best in zip(rows, probabilities, probabilities.argmax(-1))]
    write_rows(Path(target), labelled)
    return len(labelled)
