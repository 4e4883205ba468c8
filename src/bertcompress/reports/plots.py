"""Accuracy vs size and accuracy vs latency scatter plots, one point per variant."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


MARKERS = "os^Dvp<>hX8P"
MIN_SPAN_POINTS = 4.0  # a y-axis narrower than this turns a few examples into a cliff


def scatter(rows: list[dict], x_key: str, x_label: str, path: Path, title: str,
            y_key: str = "test_accuracy", y_label: str = "test accuracy (%)") -> Path:
    """One numbered point per variant, its name in a legend beside the plot (never on top of other points)."""
    figure, axes = plt.subplots(figsize=(8.4, 4.4), dpi=120)
    for index, row in enumerate(rows):
        x, y = row[x_key], 100 * row[y_key]
        marker = "*" if row.get("is_teacher") else MARKERS[index % len(MARKERS)]
        axes.scatter([x], [y], s=110 if marker == "*" else 55, marker=marker, zorder=3,
                     label=f"{index + 1}. {row['variant']}")
        axes.annotate(str(index + 1), (x, y), textcoords="offset points", xytext=(5, 5), fontsize=8)
    ys = [100 * r[y_key] for r in rows]
    middle, span = (max(ys) + min(ys)) / 2, max(max(ys) - min(ys), MIN_SPAN_POINTS) * 1.2
    axes.set_ylim(middle - span / 2, middle + span / 2)
    axes.set_xlim(0, max(r[x_key] for r in rows) * 1.15)
    axes.set_xlabel(x_label)
    axes.set_ylabel(y_label)
    axes.set_title(title, fontsize=10)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0, frameon=False)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return path


Y_AXES = {"embedding": {"y_key": "neighbour_recall_at_10", "y_label": "recall@10 of the teacher's neighbours (%)"},
          "question_answering": {"y_label": "test F1 (%)"}, "token_classification": {"y_label": "test entity F1 (%)"}}


def write_plots(rows: list[dict], directory: Path, task_type: str = "classification") -> list[str]:
    """Test accuracy (embedders: recall@10 of the teacher's neighbours) against size and latency."""
    y = Y_AXES.get(task_type, {})
    scatter(rows, "size_mb", "size on disk (MB)", directory / "accuracy_vs_size.png", "Accuracy vs size", **y)
    scatter(rows, "latency_b32_ms", "CPU latency, batch 32 (ms)", directory / "accuracy_vs_latency.png",
            "Accuracy vs latency", **y)
    return ["accuracy_vs_size.png", "accuracy_vs_latency.png"]


def curves(series: dict[str, list[tuple[float, float]]], x_label: str, path: Path, title: str,
           reference: float | None = None) -> Path:
    """Accuracy (y, fraction) against one x per point, a line per series; `reference`: the teacher."""
    figure, axes = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    for label, points in series.items():
        if points:
            xs, ys = zip(*sorted(points))
            axes.plot(xs, [100 * y for y in ys], marker="o", label=label)
    if reference is not None:
        axes.axhline(100 * reference, color="grey", linestyle="--", linewidth=1, label="teacher")
    axes.set_xlabel(x_label)
    axes.set_ylabel("test accuracy (%)")
    axes.set_title(title, fontsize=10)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return path
