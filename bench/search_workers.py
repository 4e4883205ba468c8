"""Search wall time with 1 and with 2 worker processes on one study (`optimize --workers`).

    python bench/search_workers.py [--trials 4] [--workers 1 2]

The same small search (6 layers; heads 25% or 50%; FFN 0% or 25%; int8 with int8 embeddings; a quarter epoch
of recovery; no peers) runs once per worker count, each from an empty variant cache and study (the teacher and
data are shared, read-only), so no run reuses another's models. Writes the `search-workers` section of
BENCHMARKS.md and `bench/results/search-workers.json`."""
import argparse
import json
import os
import time
from pathlib import Path

from bertcompress.benchmarks import replace_section
from bertcompress.data import tasks
from bertcompress.data.assets import CACHE_ENV, cache_dir
from bertcompress.hardware import cpu_features, cpu_name
from bertcompress.search.optimize import OptimizeOptions, optimize

ROOT = Path(__file__).resolve().parents[1]
SPACE = ("layers=6", "head_fractions=0.25,0.5", "ffn_fractions=0,0.25", "vocabulary=no",
         "quantization=int8+embeddings", "distill_epochs=1", "recovery_epochs=0.25")
SHARED = ("assets", "teachers")  # read-only inputs every run may share


def fresh_cache(shared_from: Path, workdir: Path) -> Path:
    """A new cache folder that links the shared inputs and starts with no variants, studies or exports."""
    root = workdir / f"cache-{time.strftime('%Y%m%d-%H%M%S')}"
    root.mkdir(parents=True)
    for name in SHARED:
        (root / name).symlink_to(shared_from / name, target_is_directory=True)
    return root


def timed_search(workers: int, trials: int, workdir: Path, shared_from: Path) -> dict:
    os.environ[CACHE_ENV] = str(fresh_cache(shared_from, workdir))
    options = OptimizeOptions(trials=trials, workers=workers, space_overrides=SPACE, peers=False,
                              output=workdir, name=f"search-{workers}-workers", overwrite=True)
    started = time.perf_counter()
    run = optimize(tasks.get("rotten_tomatoes", seed=0), options)
    wall = time.perf_counter() - started
    summary = json.loads((run / "trials.json").read_text())["summary"]
    return {"workers": workers, "trials": trials, "completed": summary["trials"],
            "stopped_before_training": summary["stopped_before_training"],
            "search_seconds": summary["search_seconds"], "wall_seconds": wall, "chosen": summary["chosen"],
            "cpu": {"name": cpu_name(), "features": cpu_features(), "cores": os.cpu_count()}}


def markdown(rows: list[dict]) -> str:
    cpu = rows[0]["cpu"]
    lines = ["## Search wall time with 1 and 2 workers (`bench/search_workers.py`)", "",
             f"One small search on Rotten Tomatoes ({rows[0]['trials']} trials: "
             f"`{' '.join('--space ' + s for s in SPACE)}`, no peers), run once per worker count from an empty "
             f"variant cache, on {cpu['name']} ({', '.join(cpu['features'])}), {cpu['cores']} cores. "
             "Workers share one study (a journal file) and split the cores between them. Wall time includes "
             "loading, the search and the frontier's final measurement.", "",
             "| workers | trials completed | stopped before training | search min | wall min | vs 1 worker | chosen |",
             "|---|---|---|---|---|---|---|"]
    one = next((r for r in rows if r["workers"] == 1), rows[0])
    for r in rows:
        lines.append(f"| {r['workers']} | {r['completed']} | {r['stopped_before_training']} | "
                     f"{r['search_seconds'] / 60:.1f} | {r['wall_seconds'] / 60:.1f} | "
                     f"{one['wall_seconds'] / r['wall_seconds']:.2f}x | {r['chosen']} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--trials", type=int, default=4)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    shared_from, workdir = cache_dir(), ROOT / "bench" / "work" / "search-workers"
    rows = [timed_search(n, args.trials, workdir, shared_from) for n in args.workers]
    replace_section("search-workers", markdown(rows), rows)


if __name__ == "__main__":
    main()
