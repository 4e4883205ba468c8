"""Foundation benchmark: the teacher over three seeds and dynamic int8 against it, timed in one run.

    python bench/foundation.py [--repeats 30] [--smoke]"""
import bertcompress as bc
from bertcompress.benchmarks import Row, Settings, Table, run_table
from bertcompress.training.loop import TrainConfig

SEEDS = (0, 1, 2)
TEACHER = TrainConfig()

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
)

if __name__ == "__main__":
    run_table(TABLE, Settings.from_command_line(__doc__))
