"""Markdown tables from result rows."""
from __future__ import annotations


def markdown_table(headers: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.2f}"


def speedup(row: dict, batch: int) -> str:
    """'1.52x (1.48–1.56)': the paired median with its interquartile range, when the rounds were kept."""
    text = f"{row[f'speedup_b{batch}']:.2f}x"
    if f"speedup_b{batch}_q1" in row:
        text += f" ({row[f'speedup_b{batch}_q1']:.2f}–{row[f'speedup_b{batch}_q3']:.2f})"
    return text


QUALITY_HEADERS = {
    "classification": ["val acc", "test acc", "test macro-F1", "agreement w/ teacher"],
    "question_answering": ["val F1", "test F1", "test exact match", "same answer as teacher"],
    "token_classification": ["val entity F1", "test entity F1", "test precision", "same tag as teacher"],
    "embedding": ["val 10-NN acc", "test 10-NN acc", "mean cosine w/ teacher", "recall@10 of teacher's neighbours"],
}
SECOND_SCORE = {"classification": "test_macro_f1", "question_answering": "test_exact_match",
                "token_classification": "test_precision"}


def variant_table(rows: list[dict], task_type: str = "classification") -> str:
    """One row per variant; embedders show 10-NN accuracy, mean cosine and neighbour recall to the teacher."""
    quality = QUALITY_HEADERS.get(task_type, QUALITY_HEADERS["classification"])
    if rows and "test_spearman" in rows[0]:  # scored pairs: the score is Spearman's rho, not 10-NN accuracy
        quality = ["val Spearman", "test Spearman", *quality[2:]]
    runtimes = any(r.get("runtime", "torch") != "torch" for r in rows)  # a column only when some differ
    headers = ["variant", *(["runtime"] if runtimes else []), *quality, "size on disk (MB)",
               "stored elements (M)", "encoder Linear MB", "latency b1 (ms)", "latency b32 (ms)",
               "speedup b1", "speedup b32", "peak RSS (MB)", "model+inference RSS (MB)"]
    body = [[
        r["variant"], *([r.get("runtime", "torch")] if runtimes else []), *_quality_cells(r, task_type),
        f"{r['size_mb']:.1f}", _figure(r, "parameters_m", "{:.2f}"), _figure(r, "encoder_linear_mb", "{:.1f}"),
        f"{r['latency_b1_ms']:.1f}", f"{r['latency_b32_ms']:.1f}", speedup(r, 1), speedup(r, 32),
        r.get("peak_rss_mb", "–"), r.get("model_and_inference_mb", "–"),
    ] for r in rows]
    return markdown_table(headers, body)


def _figure(row: dict, key: str, form: str) -> str:
    """A figure, or a dash where the row has none (an export in its runtime has no PyTorch parameters)."""
    return "–" if row.get(key) is None else form.format(row[key])


def _quality_cells(row: dict, task_type: str) -> list[str]:
    if task_type == "embedding":
        return [pct(row["validation_accuracy"]), pct(row["test_accuracy"]), f"{row['mean_cosine']:.4f}",
                f"{row['neighbour_recall_at_10']:.3f}"]
    return [pct(row["validation_accuracy"]), pct(row["test_accuracy"]), pct(row.get(SECOND_SCORE[task_type])),
            pct(row["agreement"])]
