"""Structured pruning benchmark on the Rotten Tomatoes teacher (seed 0), measured in one run:
accuracy vs % heads removed (one-shot, no recovery), 40% heads with recovery, heads 50% + FFN 50% with
recovery (latency), and a LayerDrop-trained model cut to 3 of 6 layers vs the teacher cut the same way.

    python bench/structured.py [--recovery-epochs 1] [--repeats 20]"""
from __future__ import annotations

import argparse
import copy
import json
import platform
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, resumable_results, rotten_tomatoes, write_section  # noqa: E402

import bertcompress as bc  # noqa: E402
from bertcompress.evaluation.latency import benchmark_many  # noqa: E402
from bertcompress.evaluation.metrics import score  # noqa: E402
from bertcompress.evaluation.size import size_on_disk  # noqa: E402
from bertcompress.training.loop import TrainConfig  # noqa: E402
from bertcompress.training.teacher import get_teacher  # noqa: E402

WORK = ROOT / "bench" / "work" / "structured"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--recovery-epochs", type=float, default=1.0)
    parser.add_argument("--flop-epochs", type=float, default=1.0)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--skip-latency", action="store_true", help="accuracy and size only (busy machine)")
    args = parser.parse_args()
    results, state_path = resumable_results(WORK)
    task, tokenizer, test = rotten_tomatoes()
    teacher = get_teacher("minilm", task, tokenizer, TrainConfig(seed=0)).model
    ctx = bc.Context(task=task, tokenizer=tokenizer, teacher=teacher, train=TrainConfig(seed=0))

    def accuracy(model) -> float:
        return score(model, test, task.num_labels)[0]["accuracy"]

    def variant(name: str, steps: list) -> torch.nn.Module:
        path = WORK / "models" / name
        if path.exists() and name in results:
            return bc.load(path)
        model = copy.deepcopy(teacher)
        reports = [bc.compress(model, step, ctx) for step in steps]
        bc.save(model, path)
        results[name] = {"accuracy": accuracy(model), "size": size_on_disk(model)["total"],
                         "notes": [n for r in reports for n in r.notes]}
        state_path.write_text(json.dumps(results, indent=2))
        print(name, results[name]["accuracy"], flush=True)
        return model

    results.setdefault("teacher", {"accuracy": accuracy(teacher), "size": size_on_disk(teacher)["total"], "notes": []})
    sweep = {}
    for percent in range(0, 100, 10):
        key = f"heads -{percent}% one-shot"
        if key not in results:
            model = copy.deepcopy(teacher)
            if percent:
                bc.compress(model, bc.HeadPruning(fraction=percent / 100), ctx)
            results[key] = {"accuracy": accuracy(model), "size": size_on_disk(model)["total"], "notes": []}
            state_path.write_text(json.dumps(results, indent=2))
            print(key, results[key]["accuracy"], flush=True)
        sweep[percent] = results[key]["accuracy"]

    recovery = dict(recovery_epochs=args.recovery_epochs, distill=True)
    for percent in (20, 40, 60, 80):
        variant(f"heads-{percent}-recovery", [bc.HeadPruning(fraction=percent / 100, **recovery)])
    models = {"teacher": teacher}
    for label, (name, steps) in LABELS.items():
        if name.startswith("flop"):
            steps = [bc.FLOP(target_density=0.5, epochs=args.flop_epochs)]
        models[label] = variant(name, steps(recovery) if callable(steps) else steps)
    latency = {} if args.skip_latency else benchmark_many(models, (1, 32), 64, args.repeats)
    write_report(results, sweep, latency, args)


# table label -> (saved variant name, steps given the recovery settings)
LABELS = {
    "heads -40% + recovery": ("heads-40-recovery", lambda r: [bc.HeadPruning(fraction=0.4, **r)]),
    "heads -50% + FFN -50% + recovery": ("heads50-ffn50-recovery", lambda r: [
        bc.HeadPruning(fraction=0.5), bc.FFNPruning(fraction=0.5, **r)]),
    "teacher cut to 3 layers": ("cut3", [bc.LayerRemoval(keep=3)]),
    "LayerDrop p=0.2, cut to 3 layers": ("layerdrop-cut3", lambda r: [
        bc.LayerDrop(p=0.2, epochs=r["recovery_epochs"], distill=True, keep=3)]),
    "FLOP, 50% of encoder Linear weights": ("flop-50", None),
}


def write_report(results: dict, sweep: dict, latency: dict, args) -> None:
    base = results["teacher"]["accuracy"]
    recovered = {p: results[f"heads-{p}-recovery"]["accuracy"] for p in sweep if f"heads-{p}-recovery" in results}
    lines = [
        "## Structured pruning (`bench/structured.py`)",
        "",
        "Rotten Tomatoes test split (1,276), seed-0 teacher, gradient head importance (Michel et al.) from 512 "
        f"training examples, global ranking, at least one head per layer. Recovery: {args.recovery_epochs:g} epoch "
        "distilled from the unpruned teacher. Every variant is physically smaller (surgery) and reloads from disk.",
        "",
        "Accuracy vs heads removed, one-shot, and with recovery:",
        "",
        "| heads removed | " + " | ".join(f"{p}%" for p in sweep) + " |",
        "|---|" + "---|" * len(sweep),
        "| one-shot, no recovery | " + " | ".join(f"{100 * a:.2f}" for a in sweep.values()) + " |",
        "| + recovery | " + " | ".join(f"{100 * recovered[p]:.2f}" if p in recovered else "–" for p in sweep) + " |",
        "",
        f"Measured in one run ({platform.machine()}, {torch.get_num_threads()} threads, seq 64, median of "
        f"{args.repeats} interleaved repeats):",
        "",
        "| variant | test accuracy | Δ (points) | size on disk MB | speedup b1 | speedup b32 |",
        "|---|---|---|---|---|---|",
    ]
    for label, (name, _) in {"teacher": ("teacher", None), **LABELS}.items():
        if name not in results:
            continue
        entry, timing = results[name], latency.get(label)
        ratio = ["–", "–"]
        if timing:
            ratio = [f"{latency['teacher'][f'batch_{b}']['median_ms'] / timing[f'batch_{b}']['median_ms']:.2f}x"
                     for b in (1, 32)]
        lines.append(f"| {label} | {100 * entry['accuracy']:.2f} | {100 * (entry['accuracy'] - base):+.2f} | "
                     f"{entry['size'] / 1e6:.1f} | {ratio[0]} | {ratio[1]} |")
    write_section("structured", "\n".join(lines), {"results": results, "sweep": sweep, "latency": latency})


if __name__ == "__main__":
    main()
