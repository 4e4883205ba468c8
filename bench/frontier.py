"""Frontier: what `bertcompress optimize` finds on Rotten Tomatoes, its models re-trained on more seeds.

    python bench/frontier.py [--run runs/optimize-...] [--time-budget 10m] [--trials N] [--quick]
                             [--space layers=4,3 ...] [--unlabelled] [--seeds 0 1 2] [--only NAME ...]
                             [--remeasure]

Searches on seed 0 (or reads a finished `optimize` run with --run: give it the search's --space and
--unlabelled), then re-builds frontier models of ours (all, or those named by --only) on the other seeds (each
seed's own teacher, the same recipe and runtime) for test accuracy mean ± std; seed 0's figures are the run's
own. Speed and size come from the search's one-run measurement on seed 0, or with --remeasure from a new one:
the teacher, the run's saved models and the peers rebuilt, interleaved (for a search whose own measurement
shared the CPU with other work). Writes the `frontier` section of
BENCHMARKS.md and `bench/results/frontier.json`: rows with the keys name, recipe, val_accuracy,
test_accuracy_mean, test_accuracy_std, seeds, delta_points, speedup_b1, speedup_b32, size_mb, size_ratio,
runtime, cpu, kind."""
import argparse
import json
import statistics
from dataclasses import replace
from pathlib import Path

from rich.console import Console

from bertcompress.benchmarks import replace_section
from bertcompress.cli import parse_duration
from bertcompress.data import tasks
from bertcompress.data.batching import encode
from bertcompress.evaluation.latency import benchmark_many
from bertcompress.evaluation.metrics import score
from bertcompress.hardware import cpu_features, cpu_name
from bertcompress.io import load_tokenizer
from bertcompress.measure import latency_fields
from bertcompress.runtimes import open_model
from bertcompress.search.frontier import FRONTIER_KEYS, searched_lines
from bertcompress.search.optimize import (OptimizeOptions, default_space, model_depth, optimize, peer_models,
                                          trial_context)
from bertcompress.search.trials import candidate
from bertcompress.training.loop import TrainConfig
from bertcompress.training.teacher import get_teacher
from bertcompress.variants import slug

ROOT = Path(__file__).resolve().parents[1]


def test_accuracy(model, task, tokenizer) -> float:
    return score(model, encode(task.split("test"), tokenizer, 64), task.num_labels)[0]["accuracy"]


def seed_context(searched: OptimizeOptions, seed: int):
    """The search's trial context on one seed: that seed's teacher, the search's options otherwise."""
    task, tokenizer = tasks.get("rotten_tomatoes", seed=0), load_tokenizer("minilm")
    options = replace(searched, train=TrainConfig(seed=seed))
    teacher = get_teacher("minilm", task, tokenizer, options.train)
    depth = model_depth(teacher.model)
    return trial_context(task, options, default_space(options, depth), teacher, tokenizer, depth)


def reseeded(rows: list[dict], trials: list[dict], seeds: list[int], searched: OptimizeOptions,
             only: list[str] | None = None) -> list[dict]:
    """Frontier models of ours (those in `only`, default all) and the teacher again on every seed; mean ± std.
    A row already measured on a seed (the search's seed 0) keeps that figure rather than being rebuilt."""
    params = {t["name"]: t["params"] for t in trials}
    unknown = sorted(set(only or ()) - {r["name"] for r in rows if r["kind"] == "ours"})
    if unknown:
        raise SystemExit(f"--only {' '.join(unknown)}: not a frontier model of ours; "
                         f"these are: {', '.join(r['name'] for r in rows if r['kind'] == 'ours')}")
    wanted = [r for r in rows if r["kind"] == "teacher" or (r["kind"] == "ours" and (not only or r["name"] in only))]
    accuracies = {r["name"]: {s: r["test_accuracy_mean"] for s in r["seeds"]} for r in wanted}
    for seed in seeds:
        if all(seed in accuracies[r["name"]] for r in wanted):
            continue
        context = seed_context(searched, seed)
        for row in (r for r in wanted if seed not in accuracies[r["name"]]):
            if row["kind"] == "teacher":
                model = context.teacher
            else:
                _, model, _, _ = candidate(context, params[row["name"]])
            accuracies[row["name"]][seed] = test_accuracy(model, context.task, context.tokenizer)
            print(f"{row['name']} seed {seed}: {accuracies[row['name']][seed]:.4f}", flush=True)
    teacher_mean = statistics.mean(accuracies[rows[0]["name"]].values())
    for row in rows:
        found = accuracies.get(row["name"])
        if found:
            values = list(found.values())
            row.update(test_accuracy_mean=statistics.mean(values), seeds=sorted(found),
                       test_accuracy_std=statistics.stdev(values) if len(values) > 1 else 0.0,
                       delta_points=100 * (statistics.mean(values) - teacher_mean))
    return rows


def remeasured(rows: list[dict], run: Path, searched: OptimizeOptions, repeats: int) -> list[dict]:
    """Every row's speed again in one run: the seed-0 teacher, the run's saved models, the peers rebuilt."""
    context = seed_context(searched, 0)
    models = {rows[0]["name"]: context.teacher}
    models |= {r["name"]: open_model(run / "models" / slug(r["name"], "-_+.")) for r in rows if r["kind"] == "ours"}
    models |= {name: model for name, _, model, _ in peer_models(context, Console())}
    timed = benchmark_many(models, (1, 32), context.seq_len, repeats)
    cpu = {"name": cpu_name(), "features": cpu_features()}
    rows = [r for r in rows if r["name"] in timed]  # a peer that cannot be rebuilt here: no figure to mix in
    for row in rows:
        speed = latency_fields(timed[row["name"]], timed[rows[0]["name"]], (1, 32))
        row.update(speedup_b1=speed["speedup_b1"], speedup_b32=speed["speedup_b32"], cpu=cpu)
    return rows


def markdown(rows: list[dict], summary: dict) -> str:
    cpu = rows[0]["cpu"]
    space = "the space below" if "space" in summary else "quick space" if summary.get("quick") else "full space"
    lines = ["## Frontier: `bertcompress optimize` on Rotten Tomatoes (`bench/frontier.py`)", "",
             f"Search on seed 0: {summary['trials']} trials in {summary['search_seconds'] / 60:.1f} min "
             f"({space}), objective {summary['objective']}, "
             f"max drop {summary['max_drop']:g} points on validation; chosen: **{summary['chosen']}**. Speed and "
             f"size measured in one run on {cpu['name']} ({', '.join(cpu['features'])}), 2 threads, seq 64; "
             "test accuracy mean ± std over the seeds listed (each seed with its own teacher).", "",
             *searched_lines(summary),
             "| model | kind | runtime | seeds | val acc (seed 0) | test acc | Δ test (points) | speedup b1 | "
             "speedup b32 | size MB | smaller |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        spread = f" ± {100 * r['test_accuracy_std']:.2f}" if len(r["seeds"]) > 1 else ""
        lines.append(f"| {r['name']} | {r['kind']} | {r['runtime']} | {','.join(map(str, r['seeds']))} | "
                     f"{100 * r['val_accuracy']:.2f} | {100 * r['test_accuracy_mean']:.2f}{spread} | "
                     f"{r['delta_points']:+.2f} | {r['speedup_b1']:.2f}x | {r['speedup_b32']:.2f}x | "
                     f"{r['size_mb']:.1f} | {r['size_ratio']:.2f}x |")
    if max(len(r["seeds"]) for r in rows) == 1:
        lines += ["", "One seed only so far: the re-training on seeds 1 and 2 (`--seeds 0 1 2`) has not run."]
    return "\n".join(lines + ["", targets(rows, summary["max_drop"])])


def targets(rows: list[dict], max_drop: float) -> str:
    """The issue's targets against the fastest model of ours within the budget on test, and the best peer."""
    ours = [r for r in rows if r["kind"] == "ours" and r["delta_points"] >= -max_drop]
    peers = [r for r in rows if r["kind"] == "peer"]
    if not ours or not peers:
        return "Targets: no model of ours within the budget on test, or no peer measured."
    best = max(ours, key=lambda r: r["speedup_b32"])
    peer32, peer1 = (max(peers, key=lambda r: r[key]) for key in ("speedup_b32", "speedup_b1"))
    checks = [(f"{best['speedup_b32']:.2f}x at batch 32", best["speedup_b32"] >= 10, "10x"),
              (f"{best['speedup_b32'] / peer32['speedup_b32']:.2f}x the fastest peer at batch 32 ({peer32['name']})",
               best["speedup_b32"] >= 1.8 * peer32["speedup_b32"], "1.8x"),
              (f"{best['speedup_b1'] / peer1['speedup_b1']:.2f}x the fastest peer at batch 1 ({peer1['name']})",
               best["speedup_b1"] >= 1.5 * peer1["speedup_b1"], "1.5x"),
              (f"{best['size_ratio']:.2f}x smaller", best["size_ratio"] >= 10, "10x")]
    return (f"Targets within {max_drop:g} point(s) of the teacher on test: the fastest such model of ours, "
            f"{best['name']} ({best['delta_points']:+.2f}), runs " +
            "; ".join(f"{text} ({'met' if met else 'missed'}: target {goal})" for text, met, goal in checks) + ".")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--run", type=Path, help="a finished optimize run directory to read instead of searching")
    parser.add_argument("--time-budget", default="10m")
    parser.add_argument("--trials", type=int)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--space", action="append", default=[], help="knob=v1,v2 as in `optimize --space`")
    parser.add_argument("--unlabelled", action="store_true", help="distillation also learns from the plot rows")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--only", nargs="+", help="re-seed only these frontier models (default: all of ours)")
    parser.add_argument("--remeasure", action="store_true", help="time every row again in one new run")
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    options = OptimizeOptions(time_budget=parse_duration(args.time_budget), trials=args.trials, quick=args.quick,
                              space_overrides=tuple(args.space), unlabelled=args.unlabelled,
                              output=ROOT / "bench" / "work" / "frontier", overwrite=True)
    run = args.run or optimize(tasks.get("rotten_tomatoes", seed=0), options)
    rows = json.loads((run / "frontier.json").read_text())
    found = json.loads((run / "trials.json").read_text())
    summary = {**found["summary"], "quick": args.quick or "quick" in str(run)}
    searched = replace(options, quick=summary["quick"])
    summary.setdefault("unlabelled", args.unlabelled)  # runs before session 12 did not record these
    summary.setdefault("space", default_space(searched, 6).choices(6))
    if args.seeds != [0]:
        rows = reseeded(rows, found["trials"], args.seeds, searched, args.only)
    if args.remeasure:  # after the training, so that nothing else shares the CPU
        rows = remeasured(rows, run, searched, args.repeats)
    assert all(tuple(r) == FRONTIER_KEYS for r in rows)
    replace_section("frontier", markdown(rows, summary), rows)


if __name__ == "__main__":
    main()
