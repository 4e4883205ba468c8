"""Distillation benchmark: a 3-layer student cut from the MiniLM-L6 teacher (layers 2, 4, 6 with their
weights) trained (a) on labels only, (b) with soft targets, (c) with soft targets + hidden-state and
attention losses, on Rotten Tomatoes, each from the teacher of the same seed; latency of the student vs
the teacher measured in one run.

    python bench/distillation.py [--seeds 0 1 2] [--epochs 1] [--skip-latency]

Finished runs are kept in bench/work/distillation/ so an interrupted run resumes where it stopped."""
from __future__ import annotations

import argparse
import copy
import json
import platform
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, mean_std, resumable_results, rotten_tomatoes, slug, write_section  # noqa: E402

import bertcompress as bc  # noqa: E402
from bertcompress.evaluation.latency import benchmark_many  # noqa: E402
from bertcompress.evaluation.metrics import score  # noqa: E402
from bertcompress.io import directory_bytes_of  # noqa: E402
from bertcompress.training.loop import TrainConfig  # noqa: E402
from bertcompress.training.teacher import get_teacher  # noqa: E402

WORK = ROOT / "bench" / "work" / "distillation"


def variants(epochs: float) -> dict[str, bc.Distillation]:
    student = dict(keep=3, strategy="every_other", epochs=epochs, learning_rate=1e-4)
    return {
        "(a) labels only": bc.Distillation(soft_weight=0.0, hard_weight=1.0, **student),
        "(b) soft targets": bc.Distillation(soft_weight=0.5, hard_weight=0.5, temperature=2.0, **student),
        "(c) soft + hidden + attention": bc.Distillation(soft_weight=0.5, hard_weight=0.5, temperature=2.0,
                                                         hidden_mse_weight=1.0, attention_mse_weight=1.0, **student),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--skip-latency", action="store_true")
    args = parser.parse_args()
    results, state_path = resumable_results(WORK)
    task, tokenizer, test = rotten_tomatoes()

    def record(name: str, seed: int, model, size: int, seconds: float | None = None) -> None:
        entry = results.setdefault(name, {"accuracy": {}, "size": size, "train_seconds": {}})
        entry["accuracy"][str(seed)] = score(model, test, task.num_labels)[0]["accuracy"]
        if seconds is not None:
            entry["train_seconds"][str(seed)] = seconds
        state_path.write_text(json.dumps(results, indent=2))
        print(f"{name} seed {seed}: {100 * entry['accuracy'][str(seed)]:.2f}", flush=True)

    teachers = {}
    for seed in args.seeds:
        cached = get_teacher("minilm", task, tokenizer, TrainConfig(seed=seed))
        teachers[seed] = cached.model
        if str(seed) not in results.get("teacher (6 layers)", {}).get("accuracy", {}):
            record("teacher (6 layers)", seed, cached.model, directory_bytes_of(cached.path, True))
    for seed in args.seeds:
        for name, config in variants(args.epochs).items():
            if str(seed) in results.get(name, {}).get("accuracy", {}):
                continue
            student = copy.deepcopy(teachers[seed])
            ctx = bc.Context(task=task, tokenizer=tokenizer, teacher=teachers[seed], train=TrainConfig(seed=seed),
                             seed=seed, workdir=WORK / "ckpt" / f"{slug(name)}-seed{seed}")
            report = bc.compress(student, config, ctx)
            saved = bc.save(student, WORK / "models" / f"{slug(name)}-seed{seed}")
            record(name, seed, student, directory_bytes_of(saved, True), report.metrics["train_seconds"])

    latency = {}
    if not args.skip_latency:
        seed = args.seeds[0]
        student_path = WORK / "models" / f"{slug('(c) soft + hidden + attention')}-seed{seed}"
        latency = benchmark_many({"teacher (6 layers)": teachers[seed], "3-layer student": bc.load(student_path)},
                                 (1, 32), 64, args.repeats)
    write_report(results, latency, args)


def write_report(results: dict, latency: dict, args) -> None:
    teacher = results["teacher (6 layers)"]
    base = statistics.mean(teacher["accuracy"].values())
    lines = [
        "## Distillation (`bench/distillation.py`)",
        "",
        f"Rotten Tomatoes test split (1,276); teachers fine-tuned with seeds {args.seeds}; each student is cut "
        "from its own seed's teacher (layers 2, 4, 6 kept with their weights, embeddings and classifier copied) "
        f"and trained {args.epochs:g} epoch(s) at 1e-4, batch 32. (b), (c): KL at T=2 weighted 0.5 plus CE 0.5; "
        "(c) adds TinyBERT hidden-state MSE and attention-distribution MSE (weight 1 each), uniform layer map "
        "(student 1, 2, 3 <- teacher 2, 4, 6). Mean ± std over seeds.",
        "",
        "| variant | test accuracy | Δ vs teacher (points) | % of teacher | size on disk MB | train time / run |",
        "|---|---|---|---|---|---|",
    ]
    for name, entry in results.items():
        values = list(entry["accuracy"].values())
        delta = 100 * statistics.mean(a - teacher["accuracy"][s] for s, a in entry["accuracy"].items())
        seconds = entry.get("train_seconds") or {}
        minutes = f"{statistics.mean(seconds.values()) / 60:.1f} min" if seconds else "–"
        lines.append(f"| {name} | {mean_std(values)} | {delta:+.2f} | {100 * statistics.mean(values) / base:.1f}% | "
                     f"{entry['size'] / 1e6:.1f} | {minutes} |")
    if latency:
        ratio = {b: latency["teacher (6 layers)"][f"batch_{b}"]["median_ms"] / latency["3-layer student"][f"batch_{b}"]["median_ms"]
                 for b in (1, 32)}
        lines += ["", f"Speed of the 3-layer student vs the teacher, measured in one run ({platform.machine()}, "
                  f"{torch.get_num_threads()} threads, seq 64, median of {args.repeats} interleaved repeats): "
                  f"**{ratio[32]:.2f}x at batch 32, {ratio[1]:.2f}x at batch 1**."]
    write_section("distillation", "\n".join(lines), {"results": results, "latency": latency})


if __name__ == "__main__":
    main()
