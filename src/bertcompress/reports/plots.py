"""Accuracy vs size and accuracy vs latency scatter plots, one point per variant."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def scatter(rows: list[dict], x_key: str, x_label: str, path: Path, title: str) -> Path:
    figure, axes = plt.subplots(figsize=(6, 4.2), dpi=120)
    for row in rows:
        x, y = row[x_key], 100 * row["test_accuracy"]
        axes.scatter([x], [y], s=60, marker="*" if row["is_teacher"] else "o", zorder=3)
        axes.annotate(row["variant"], (x, y), textcoords="offset points", xytext=(6, 4), fontsize=8)
    axes.set_xlabel(x_label)
    axes.set_ylabel("test accuracy (%)")
    axes.set_title(title, fontsize=10)
    axes.grid(alpha=0.3)
    xs = [r[x_key] for r in rows]
    axes.set_xlim(0, max(xs) * 1.35)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return path


def write_plots(rows: list[dict], directory: Path) -> list[str]:
    scatter(rows, "size_mb", "size on disk (MB)", directory / "accuracy_vs_size.png", "Accuracy vs size")
    scatter(rows, "latency_b32_ms", "CPU latency, batch 32 (ms)", directory / "accuracy_vs_latency.png",
            "Accuracy vs latency")
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
