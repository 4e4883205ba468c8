"""The main job's report.md, from the rows `measure` wrote."""
from __future__ import annotations

import json

from bertcompress.reports.tables import variant_table

MB = 1e6


def run_markdown(results: dict, plots: list[str]) -> str:
    task, env = results["task"], results["environment"]
    seq_len = next(iter(results["latency"].values()))["seq_len"]
    lines = [
        f"# bertcompress report: {task['name']}",
        "",
        f"- model: `{results['model']}`; task splits: {task['counts']}; labels: {task['labels']}",
        f"- teacher: {'reused from cache' if results['teacher']['cached'] else 'fine-tuned in this run'}"
        f" ({results['teacher']['train_seconds']} s of training); hyperparameters: `{json.dumps(results['train'])}`",
        f"- latency: {env['cpu']} ({', '.join(env.get('cpu_features', [])) or 'no AVX2/AVX-512/VNNI'}), "
        f"{env['threads']} thread(s), torch {env['torch']}, sequence length {seq_len}; "
        "medians of interleaved rounds; each speedup is the median of the teacher/variant time ratio over the "
        "rounds, with its interquartile range in brackets",
        f"- wall time: {results['wall_seconds']} s",
    ]
    if task.get("validation_is_test"):
        lines.append("- **validation and test are the same file (`--eval`)**: the test accuracy is not an unbiased "
                     "estimate for anything chosen on validation")
    lines += ["", variant_table(results["variants"], task.get("type", "classification")), ""]
    for row in results["variants"]:
        for step in row["steps"]:
            lines.append(f"- **{row['variant']}** / `{step['method']}`: {step['modules_changed']} modules changed, "
                         f"{step['bytes_before'] / MB:.1f} MB -> {step['bytes_after'] / MB:.1f} MB of their weights. "
                         + " ".join(step["notes"]))
    lines += ["", *[f"![{p}]({p})" for p in plots], ""]
    return "\n".join(lines)
