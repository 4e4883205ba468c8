"""Distillation benchmark: a 3-layer student cut from the MiniLM-L6 teacher (layers 2, 4, 6 with their
weights) trained (a) on labels only, (b) with soft targets, (c) with soft targets + hidden-state and
attention losses, on Rotten Tomatoes, each from the teacher of the same seed; timed against the teacher.

    python bench/distillation.py [--repeats 20] [--smoke]"""
import statistics

import bertcompress as bc
from bertcompress.benchmarks import Row, Settings, Table, run_table

SEEDS = (0, 1, 2)
STUDENT = dict(keep=3, strategy="every_other", epochs=1.0, learning_rate=1e-4)
SOFT = dict(soft_weight=0.5, hard_weight=0.5, temperature=2.0)


def minutes(result: dict) -> str:
    seconds = [r[-1]["metrics"]["train_seconds"] for r in result["reports"].values()]
    return f"{statistics.mean(seconds) / 60:.1f} min" if seconds else "–"


TABLE = Table(
    section="distillation",
    title="Distillation (`bench/distillation.py`)",
    description=(
        f"Rotten Tomatoes test split (1,276); teachers fine-tuned with seeds {list(SEEDS)}; each student is cut "
        "from its own seed's teacher (layers 2, 4, 6 kept with their weights, embeddings and classifier copied) "
        f"and trained {STUDENT['epochs']:g} epoch(s) at {STUDENT['learning_rate']:g}, batch 32. (b), (c): KL at "
        "T=2 weighted 0.5 plus CE 0.5; (c) adds TinyBERT hidden-state MSE and attention-distribution MSE (weight 1 "
        "each), uniform layer map (student 1, 2, 3 <- teacher 2, 4, 6). Mean ± std over seeds."),
    rows=[
        Row("teacher (6 layers)", seeds=SEEDS),
        Row("(a) labels only", (bc.Distillation(soft_weight=0.0, hard_weight=1.0, **STUDENT),), SEEDS),
        Row("(b) soft targets", (bc.Distillation(**SOFT, **STUDENT),), SEEDS),
        Row("(c) soft + hidden + attention", (bc.Distillation(
            **SOFT, hidden_mse_weight=1.0, attention_mse_weight=1.0, **STUDENT),), SEEDS),
    ],
    columns=(("train time / run", minutes),),
)

if __name__ == "__main__":
    run_table(TABLE, Settings.from_command_line(__doc__))
