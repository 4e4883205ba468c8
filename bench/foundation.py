"""Foundation benchmark: the teacher over three seeds and dynamic int8 against it, timed in one run.

    python bench/foundation.py [--repeats 30] [--smoke]"""
import bertcompress as bc
from bertcompress.benchmarks import Row, Settings, Table, run_table
from bertcompress.training.loop import TrainConfig

SEEDS = (0, 1, 2)
TEACHER = TrainConfig()

# the figures this section showed before the variants pipeline, from the old script (AVX2 Zen 3 CPU)
BEFORE = {"fp32 teacher": "84.56 ± 0.68", "int8 (linears + embeddings)": "84.59 ± 1.15"}


def reproduction(results: list[dict]) -> str:
    """How the re-run through the variants pipeline compares with the figures published before it."""
    lines = ["Re-run through the variants pipeline against the figures before it (test accuracy, 3 seeds):", ""]
    for r in results:
        if r["name"] in BEFORE:
            lines.append(f"- {r['name']}: {100 * r['test_accuracy_mean']:.2f} ± {100 * r['test_accuracy_std']:.2f} "
                         f"now, {BEFORE[r['name']]} before")
    lines.append("- The teacher reproduces per seed exactly. int8 differs by CPU (FBGEMM's AVX2 and VNNI/AMX "
                 "kernels round differently), within one standard deviation; speed ratios are this CPU's.")
    return "\n".join(lines)


TABLE = Table(
    section="foundation",
    title="Foundation: teacher and dynamic int8 (`bench/foundation.py`)",
    description=(
        "Rotten Tomatoes, split seed 0 (10,201 / 1,275 / 1,276), test split; teacher = packaged MiniLM-L6 "
        f"fine-tuned {TEACHER.epochs:g} epochs, lr {TEACHER.learning_rate:g}, batch {TEACHER.batch_size}, max length "
        f"{TEACHER.max_length}, warm-up {TEACHER.warmup_ratio:g} + linear decay, weight decay {TEACHER.weight_decay:g}; "
        f"seeds {list(SEEDS)} vary the head initialisation and data order. Target: int8 within 1 point."),
    rows=[
        Row("fp32 teacher", seeds=SEEDS),
        Row("int8 (linears + embeddings)", (bc.DynamicInt8(embeddings=True),), seeds=SEEDS),
        Row("int8 (linears only)", (bc.DynamicInt8(embeddings=False),)),
    ],
    extra=reproduction,
)

if __name__ == "__main__":
    run_table(TABLE, Settings.from_command_line(__doc__))
