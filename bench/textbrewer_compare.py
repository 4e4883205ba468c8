"""TextBrewer 0.2.1 (GeneralDistiller) on the same job as variant (c) of bench/distillation.py.

Same teacher (cached MiniLM-L6, seed 0), same student (teacher layers 1, 3, 5 kept with their weights), same
training batches in the same order (our length-grouped, seeded `global_batch`, dynamic padding, max_length 64,
batch 32, one epoch over Rotten Tomatoes train), AdamW 1e-4 with our weight-decay groups, linear warm-up 6% then
decay, gradient clipping 1.0, seed 0, CPU. Losses: CE on labels + KD on T=2 logits + hidden-state MSE (student
hidden 1, 2, 3 <- teacher 2, 4, 6; 0 = embeddings) + attention-probability MSE (student attention 0, 1, 2 <-
teacher 1, 3, 5), both models on eager attention. The trained student is scored with our `score`.

TextBrewer's loss semantics differ from ours, so `--weights` picks how the weights are set:
  matched (default): TextBrewer weights that reproduce our objective (0.5 CE + 0.5 T^2 KL + mean over layer pairs
      of hidden MSE + mean over layer pairs of attention MSE):
      * kd_loss_weight = 0.5 * T^2 = 2.0: TextBrewer's 'ce' KD loss is CE(p_T, p_S) at temperature T without the
        T^2 factor; CE = KL + H(p_T), so the gradient is that of KL and only the T^2 is missing.
      * hidden_mse weight 1/3 per pair: TextBrewer sums the matches, ours averages over the 3 mapped layers; the
        per-pair loss itself (MSE over hidden units, mean over real tokens) is the same.
      * attention_mse weight r/3 per pair: TextBrewer averages the squared error over (head, query, key) pairs of
        real tokens, ours sums over keys and averages over heads and real queries, i.e. ours = r_b x TextBrewer's
        with r_b = sum(n^2) / sum(n) over the batch's lengths n; r is the mean of r_b over the epoch's batches (an
        approximation: r_b varies a little between batches).
  brief: the nominal weights (kd 0.5, hard 0.5, every match 1), i.e. a 4x weaker KD gradient, 3x stronger hidden
      loss and about r/3 x weaker attention loss than ours.

    python bench/textbrewer_compare.py [--weights matched|brief]

Writes bench/results/textbrewer.json. If TextBrewer is missing or fails, the file records the one-line reason
instead (status "failed")."""
from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import sys
import tempfile
import time
import traceback
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, RESULTS  # noqa: E402

import bertcompress as bc  # noqa: E402
from bertcompress.data.batching import encode  # noqa: E402
from bertcompress.evaluation.metrics import score  # noqa: E402
from bertcompress.methods.distillation.students import keep_teacher_layers  # noqa: E402
from bertcompress.training.loop import TrainConfig, global_batch, total_steps  # noqa: E402
from bertcompress.training.teacher import get_teacher  # noqa: E402

OUTPUT = RESULTS / "textbrewer.json"
OURS = ROOT / "bench" / "work" / "distillation" / "results.json"  # read only, if bench/distillation.py has run
OURS_VARIANT = "(c) soft + hidden + attention"
SEED, TEMPERATURE, HARD, SOFT, HIDDEN, ATTENTION = 0, 2.0, 0.5, 0.5, 1.0, 1.0
TEACHER_HIDDEN, STUDENT_HIDDEN = [2, 4, 6], [1, 2, 3]  # hidden-state numbering, 0 = embeddings
TEACHER_ATTENTION, STUDENT_ATTENTION = [1, 3, 5], [0, 1, 2]  # attention list indices (0-based layers)


def one_line(error: BaseException) -> str:
    text = f"{type(error).__name__}: {error}".strip().splitlines()
    return text[0] if text else type(error).__name__


def adaptor(batch: dict, outputs) -> dict:
    """transformers 5 SequenceClassifierOutput -> TextBrewer's dict (labels are in the batch, so .loss is CE)."""
    return {"logits": outputs.logits, "losses": outputs.loss, "hidden": outputs.hidden_states,
            "attention": outputs.attentions, "inputs_mask": batch["attention_mask"]}


def optimizer_for(model: torch.nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """AdamW with the parameter groups of our loop: no decay on biases and LayerNorm."""
    decay, no_decay = [], []
    for name, parameter in model.named_parameters():
        if parameter.requires_grad:
            (no_decay if parameter.ndim < 2 or "LayerNorm" in name else decay).append(parameter)
    return torch.optim.AdamW([{"params": decay, "weight_decay": config.weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}], lr=config.learning_rate)


def weights(mode: str, ratio: float) -> dict:
    pairs = len(TEACHER_HIDDEN)
    if mode == "brief":
        return {"kd_loss_weight": SOFT, "hard_label_weight": HARD, "hidden_per_pair": HIDDEN,
                "attention_per_pair": ATTENTION}
    return {"kd_loss_weight": SOFT * TEMPERATURE**2, "hard_label_weight": HARD, "hidden_per_pair": HIDDEN / pairs,
            "attention_per_pair": ATTENTION * ratio / pairs}


def run(args) -> dict:
    import textbrewer
    from textbrewer import DistillationConfig, GeneralDistiller, TrainingConfig
    from transformers import get_linear_schedule_with_warmup
    from accelerate.utils import set_seed

    task = bc.tasks.get("rotten_tomatoes", seed=SEED)
    tokenizer = bc.load_tokenizer("minilm")
    config = TrainConfig(seed=SEED, epochs=1.0, learning_rate=1e-4)  # batch 32, warm-up 6%, max_length 64, clip 1.0
    teacher = get_teacher("minilm", task, tokenizer, TrainConfig(seed=SEED)).model
    student = copy.deepcopy(teacher)
    kept = keep_teacher_layers(student, 3, "every_other")
    for model in (teacher, student):
        model.set_attn_implementation("eager")  # transformers 5 returns attention maps only from eager attention
    train_data = encode(task.split("train"), tokenizer, config.max_length)
    test = encode(task.split("test"), tokenizer, config.max_length)

    steps = total_steps(len(train_data), config)
    lengths = [len(ids) for ids in train_data.ids]
    order = [global_batch(lengths, step, config) for step in range(steps)]  # our exact batches, in our order
    batches = [train_data.batch(indices) for indices in order]
    ratio = sum(sum(lengths[i] ** 2 for i in b) / sum(lengths[i] for i in b) for b in order) / len(order)
    w = weights(args.weights, ratio)
    matches = [{"layer_T": t, "layer_S": s, "feature": "hidden", "loss": "hidden_mse", "weight": w["hidden_per_pair"]}
               for t, s in zip(TEACHER_HIDDEN, STUDENT_HIDDEN)]
    matches += [{"layer_T": t, "layer_S": s, "feature": "attention", "loss": "attention_mse",
                 "weight": w["attention_per_pair"]} for t, s in zip(TEACHER_ATTENTION, STUDENT_ATTENTION)]
    distill_config = DistillationConfig(temperature=TEMPERATURE, kd_loss_type="ce", kd_loss_weight=w["kd_loss_weight"],
                                        hard_label_weight=w["hard_label_weight"], intermediate_matches=matches)
    warmup = int(config.warmup_ratio * steps)
    with tempfile.TemporaryDirectory() as output_dir:  # TextBrewer saves a state dict at the end of the epoch
        train_config = TrainingConfig(device="cpu", output_dir=output_dir, log_dir=None)
        distiller = GeneralDistiller(train_config, distill_config, model_T=teacher, model_S=student,
                                     adaptor_T=adaptor, adaptor_S=adaptor)
        optimizer = optimizer_for(student, config)
        set_seed(config.seed)  # as our loop does just before training: same dropout stream
        began = time.perf_counter()
        with distiller:
            distiller.train(optimizer, batches, num_epochs=1, max_grad_norm=config.max_grad_norm,
                            scheduler_class=get_linear_schedule_with_warmup,
                            scheduler_args={"num_warmup_steps": warmup, "num_training_steps": steps},
                            output_hidden_states=True, output_attentions=True)
        seconds = time.perf_counter() - began
    result, _ = score(student, test, task.num_labels)

    ours = json.loads(OURS.read_text()).get(OURS_VARIANT, {}) if OURS.exists() else {}
    import transformers
    return {
        "status": "ok",
        "textbrewer": {"accuracy": result["accuracy"], "macro_f1": result["macro_f1"], "n_test": result["n"],
                       "train_seconds": round(seconds, 1), "train_steps": steps},
        "ours_c_seed0_from_bench_work": {"accuracy": ours.get("accuracy", {}).get(str(SEED)),
                                         "train_seconds": ours.get("train_seconds", {}).get(str(SEED))},
        "settings": {
            "weights_mode": args.weights, "weights": w, "attention_length_ratio_r": round(ratio, 3),
            "distiller": "GeneralDistiller", "kd_loss_type": "ce", "temperature": TEMPERATURE,
            "intermediate_matches": matches, "student_kept_teacher_layers": kept, "batch_size": config.batch_size,
            "batches": "bertcompress global_batch (length-grouped, seed 0), dynamic padding",
            "max_length": config.max_length, "epochs": 1, "learning_rate": config.learning_rate,
            "weight_decay": config.weight_decay, "warmup_steps": warmup, "scheduler": "linear warm-up then decay",
            "max_grad_norm": config.max_grad_norm, "seed": SEED, "device": "cpu", "attention": "eager",
            "train_examples": len(train_data),
        },
        "environment": {"textbrewer": textbrewer.__version__, "torch": torch.__version__,
                        "transformers": transformers.__version__, "python": platform.python_version(),
                        "threads": torch.get_num_threads(), "load_average_at_end": os.getloadavg()},
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--weights", choices=["matched", "brief"], default="matched")
    args = parser.parse_args()
    try:
        data = run(args)
    except Exception as error:  # noqa: BLE001 - record why TextBrewer could not run instead of crashing
        traceback.print_exc()
        data = {"status": "failed", "reason": one_line(error), "weights_mode": args.weights}
    RESULTS.mkdir(parents=True, exist_ok=True)
    OUTPUT.write_text(json.dumps(data, indent=2))
    if data["status"] == "ok":
        tb = data["textbrewer"]
        print(f"TextBrewer GeneralDistiller: test accuracy {100 * tb['accuracy']:.2f}, "
              f"train {tb['train_seconds']:.0f} s ({tb['train_steps']} steps)")
    else:
        print(f"TextBrewer failed: {data['reason']}")


if __name__ == "__main__":
    main()
