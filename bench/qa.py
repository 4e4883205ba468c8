"""Extractive QA: MiniLM fine-tuned on SQuAD-format questions, then int8 and a 3-layer distilled student,
scored by the official SQuAD v1.1 exact match and F1, timed in one run at sequence length 384.

    python bench/qa.py [--repeats 20] [--smoke]

CPU budget (2 cores): the teacher trains 1 epoch on the first 8,000 training questions (new Wikipedia
articles of the SQuAD-shift sets) with 256-token windows (stride 64); scores on the first 1,000 questions of
each SQuAD v1.1 dev half. Writes the `qa` section of BENCHMARKS.md and `bench/results/qa.json`."""
import bertcompress as bc
from bertcompress.benchmarks import Row, Settings, Table, run_table

TABLE = Table(
    section="qa",
    title="Extractive QA: SQuAD v1.1 (`bench/qa.py`)",
    description=(
        "The packaged MiniLM fine-tuned for extractive QA for 1 epoch on the first 8,000 questions of the "
        "SQuAD-shift training sets (new Wikipedia articles; `bigbench==1.0.0` sdist), question + context windows "
        "of 256 tokens with a 64-token stride; scored on the first 1,000 questions of the SQuAD v1.1 dev test half "
        "by the official exact match / F1 normalisation (best span over a question's windows, at most 30 tokens). "
        "A budget run on 2 cores: published MiniLM-L6 SQuAD figures come from 88k questions and several epochs. "
        "Student: teacher layers 0, 2, 4, distilled (start/end KL) for 1 epoch."),
    rows=[
        Row("teacher"),
        Row("int8 (dynamic)", (bc.DynamicInt8(),)),
        Row("3-layer student", (bc.Distillation(keep=3, epochs=1.0, learning_rate=1e-4),)),
        Row("3-layer student + int8", (bc.DynamicInt8(),), start="3-layer student"),
    ],
    task="squad",
    teacher_train={"max_length": 256, "epochs": 1.0, "learning_rate": 1e-4},
    metric="test F1",
    seq_len=384,
    sliced=(8000, 1000),
    columns=(("test EM", lambda r: f"{100 * r['test_exact_match']:.2f}" if "test_exact_match" in r else "–"),),
)

if __name__ == "__main__":
    run_table(TABLE, Settings.from_command_line(__doc__))
