"""Structured pruning benchmark on the seed-0 teacher: accuracy vs % heads removed (one-shot), heads with
recovery, heads 50% + FFN 50% with recovery, LayerDrop cut to 3 layers vs the teacher cut the same way, FLOP.

    python bench/structured.py [--repeats 20] [--smoke]"""
import bertcompress as bc
from bertcompress.benchmarks import Row, Settings, Table, run_table

RECOVERY = dict(recovery_epochs=0.25, distill=True)
SWEEP = range(10, 100, 10)
RECOVERED = (20, 40, 60, 80)


def sweep_table(results: list[dict]) -> str:
    accuracy = {r["name"]: f"{100 * r['test_accuracy_mean']:.2f}" for r in results}
    return "\n".join([
        "Accuracy vs heads removed, one-shot and with recovery:", "",
        "| heads removed | 0% | " + " | ".join(f"{p}%" for p in SWEEP) + " |",
        "|---|---|" + "---|" * len(SWEEP),
        f"| one-shot, no recovery | {accuracy['teacher']} | "
        + " | ".join(accuracy[f"heads -{p}% one-shot"] for p in SWEEP) + " |",
        "| + recovery | – | " + " | ".join(accuracy.get(f"heads -{p}% + recovery", "–") for p in SWEEP) + " |",
    ])


TABLE = Table(
    section="structured",
    title="Structured pruning (`bench/structured.py`)",
    description=(
        "Rotten Tomatoes test split (1,276), seed-0 teacher, gradient head importance (Michel et al.) from 512 "
        f"training examples, global ranking, at least one head per layer. Recovery: {RECOVERY['recovery_epochs']:g} "
        "epoch distilled from the unpruned teacher. Every variant is physically smaller (surgery) and reloads."),
    rows=[
        Row("teacher"),
        *[Row(f"heads -{p}% one-shot", (bc.HeadPruning(fraction=p / 100),), timed=False) for p in SWEEP],
        *[Row(f"heads -{p}% + recovery", (bc.HeadPruning(fraction=p / 100, **RECOVERY),), timed=p == 40)
          for p in RECOVERED],
        Row("heads -50% + FFN -50% + recovery", (bc.HeadPruning(fraction=0.5), bc.FFNPruning(fraction=0.5, **RECOVERY))),
        Row("teacher cut to 3 layers", (bc.LayerRemoval(keep=3),)),
        Row("LayerDrop p=0.2, cut to 3 layers", (bc.LayerDrop(p=0.2, epochs=0.25, distill=True, keep=3),)),
        Row("FLOP, 50% of encoder Linear weights", (bc.FLOP(target_density=0.5, epochs=1.0),)),
    ],
    extra=sweep_table,
)

if __name__ == "__main__":
    run_table(TABLE, Settings.from_command_line(__doc__))
