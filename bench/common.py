"""Helpers shared by benchmark scripts: write a section of BENCHMARKS.md between markers, mean ± std."""
from __future__ import annotations

import json
import statistics
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = ROOT / "BENCHMARKS.md"
RESULTS = ROOT / "bench" / "results"


def mean_std(values: list[float]) -> str:
    if len(values) == 1:
        return f"{100 * values[0]:.2f}"
    return f"{100 * statistics.mean(values):.2f} ± {100 * statistics.stdev(values):.2f}"


def write_section(name: str, markdown: str, data: dict) -> None:
    """Replace the section `name` of BENCHMARKS.md (or append it) and keep the raw numbers as JSON."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(data, indent=2))
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    block = f"{start}\n{markdown.strip()}\n{end}"
    text = BENCHMARKS.read_text() if BENCHMARKS.exists() else "# Benchmarks\n"
    if start in text:
        before, rest = text.split(start, 1)
        text = before + block + rest.split(end, 1)[1]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    BENCHMARKS.write_text(text)


def resumable_results(work: Path) -> tuple[dict, Path]:
    """Results of the variants already finished (so an interrupted run resumes) and their file."""
    work.mkdir(parents=True, exist_ok=True)
    path = work / "results.json"
    return (json.loads(path.read_text()) if path.exists() else {}), path


def rotten_tomatoes():
    """(task, tokenizer, encoded test split) shared by the benchmarks: seed-0 split, 64 tokens."""
    import bertcompress as bc
    from bertcompress.data.batching import encode

    task = bc.tasks.get("rotten_tomatoes", seed=0)
    tokenizer = bc.load_tokenizer("minilm")
    return task, tokenizer, encode(task.split("test"), tokenizer, 64)


def slug(name: str) -> str:
    """A variant's name as a folder name."""
    return "".join(c if c.isalnum() else "-" for c in name).strip("-").lower()
