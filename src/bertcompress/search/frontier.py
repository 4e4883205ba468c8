"""The search's answer: the Pareto frontier of the trials on validation accuracy and the objective, the
model chosen within the accuracy budget, and the final measurement of the frontier beside the teacher and
the peers in one run (test accuracy reported, never used to choose)."""
from __future__ import annotations

from typing import Any

FRONTIER_KEYS = ("name", "recipe", "val_accuracy", "test_accuracy_mean", "test_accuracy_std", "seeds",
                 "delta_points", "speedup_b1", "speedup_b32", "size_mb", "size_ratio", "runtime", "cpu", "kind")


def pareto(results: list[dict[str, Any]], objective_key: str) -> list[dict[str, Any]]:
    """The results no other result beats on both validation accuracy and the objective (ties kept once)."""
    front, seen = [], set()
    for r in sorted(results, key=lambda r: (-r[objective_key], -r["val_accuracy"])):
        dominated = any(o["val_accuracy"] >= r["val_accuracy"] and o[objective_key] >= r[objective_key] and
                        (o["val_accuracy"] > r["val_accuracy"] or o[objective_key] > r[objective_key])
                        for o in results)
        if not dominated and r["name"] not in seen:
            seen.add(r["name"])
            front.append(r)
    return front


def chosen(results: list[dict[str, Any]], objective_key: str, teacher_val: float,
           max_drop_points: float) -> dict[str, Any] | None:
    """The best result on the objective whose validation accuracy is within the budget, or None."""
    within = [r for r in results if 100 * (teacher_val - r["val_accuracy"]) <= max_drop_points + 1e-9]
    return max(within, key=lambda r: (r[objective_key], r["val_accuracy"]), default=None)


def frontier_row(name: str, kind: str, measured: dict[str, Any], teacher: dict[str, Any], cpu: dict,
                 recipe: dict | None = None, runtime: str = "torch") -> dict[str, Any]:
    """One row of frontier.json, with exactly FRONTIER_KEYS."""
    row = {"name": name, "recipe": recipe or {}, "val_accuracy": measured["validation_accuracy"],
           "test_accuracy_mean": measured["test_accuracy"], "test_accuracy_std": 0.0, "seeds": [measured["seed"]],
           "delta_points": 100 * (measured["test_accuracy"] - teacher["test_accuracy"]),
           "speedup_b1": measured["speedup_b1"], "speedup_b32": measured["speedup_b32"],
           "size_mb": measured["size_mb"], "size_ratio": teacher["size_mb"] / measured["size_mb"],
           "runtime": runtime, "cpu": cpu, "kind": kind}
    assert tuple(row) == FRONTIER_KEYS
    return row


def markdown(rows: list[dict[str, Any]], summary: dict[str, Any]) -> str:
    """The frontier's table; `val_accuracy` and the test columns hold the task's score (`summary['score']`:
    accuracy, F1, entity F1, Spearman, ...), kept under the issue's key names."""
    scored_by = summary.get("score", "accuracy")
    lines = [f"# Frontier: {summary['task']}, objective {summary['objective']}, max drop "
             f"{summary['max_drop']:g} points of {scored_by}", "",
             f"{summary['trials']} trials ({summary['search_seconds'] / 60:.1f} min of search; "
             f"{summary.get('stopped_before_training', 0)} more stopped before training, their shapes no faster "
             "than a model already within the budget); chosen within the "
             f"budget on validation {scored_by}: **{summary['chosen'] or 'none within the budget'}**. "
             f"Test {scored_by} is measured for the frontier only and never used to choose.", "",
             f"Timed in one run on {summary['cpu']['name']} ({', '.join(summary['cpu']['features']) or '-'}); "
             "speedups are to the fp32 teacher in torch.", "", *searched_lines(summary),
             f"| model | kind | runtime | val {scored_by} | test {scored_by} | Δ test (points) | speedup b1 | "
             "speedup b32 | size MB | smaller |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['name']} | {r['kind']} | {r['runtime']} | {100 * r['val_accuracy']:.2f} | "
                     f"{100 * r['test_accuracy_mean']:.2f} | {r['delta_points']:+.2f} | {r['speedup_b1']:.2f}x | "
                     f"{r['speedup_b32']:.2f}x | {r['size_mb']:.1f} | {r['size_ratio']:.2f}x |")
    lines += ["", "![accuracy vs speedup](accuracy_vs_speedup.png) ![accuracy vs size](accuracy_vs_size.png)"]
    return "\n".join(lines) + "\n"


def searched_lines(summary: dict[str, Any]) -> list[str]:
    """The space the trials came from, one line (older runs did not record it)."""
    if "space" not in summary:
        return []
    knobs = "; ".join(f"{name} {', '.join(map(str, values))}" for name, values in summary["space"].items())
    extra = " Distillation also learned from the task's unlabelled text." if summary.get("unlabelled") else ""
    return [f"Space searched: {knobs}.{extra}", ""]
