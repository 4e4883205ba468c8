"""TextBrewer 0.2.1 (GeneralDistiller) on the same job as variant (c) of bench/distillation.py.

Same teacher (cached MiniLM-L6, seed 0), same student (teacher layers 1, 3, 5 kept with their weights), same
training batches in the same order (our length-grouped, seeded `global_batch`, dynamic padding, max_length 64,
batch 32, one epoch over Rotten Tomatoes train), AdamW 1e-4 with our weight-decay groups, linear warm-up 6% then
decay, gradient clipping 1.0, seed 0, CPU. Losses: CE on labels + KD on T=2 logits + hidden-state MSE (student
hidden 1, 2, 3 <- teacher 2, 4, 6; 0 = embeddings) + attention-probability MSE (student attention 0, 1, 2 <-
teacher 1, 3, 5), both models on eager attention. The trained student is scored like every variant.

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

    python bench/textbrewer_compare.py [--weights matched|brief] [--smoke]

Writes bench/results/textbrewer.json (if TextBrewer fails on our stack, its one-line reason, status "failed")."""
import copy
import os
import platform
import sys
import tempfile
import time

import torch

import bertcompress as bc
from bertcompress.benchmarks import Settings, read_results, task_and_tokenizer, teacher_context, write_json
from bertcompress.data.batching import encode
from bertcompress.measure import accuracy_rows
from bertcompress.training.loop import TrainConfig, global_batch, total_steps

SEED, TEMPERATURE, HARD, SOFT, HIDDEN, ATTENTION = 0, 2.0, 0.5, 0.5, 1.0, 1.0
TEACHER_HIDDEN, STUDENT_HIDDEN = [2, 4, 6], [1, 2, 3]  # hidden-state numbering, 0 = embeddings
TEACHER_ATTENTION, STUDENT_ATTENTION = [1, 3, 5], [0, 1, 2]  # attention list indices (0-based layers)
OURS = "(c) soft + hidden + attention"


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
    if mode == "brief":
        return {"kd_loss_weight": SOFT, "hard_label_weight": HARD, "hidden_per_pair": HIDDEN,
                "attention_per_pair": ATTENTION}
    pairs = len(TEACHER_HIDDEN)
    return {"kd_loss_weight": SOFT * TEMPERATURE**2, "hard_label_weight": HARD, "hidden_per_pair": HIDDEN / pairs,
            "attention_per_pair": ATTENTION * ratio / pairs}


def run(settings: Settings, textbrewer) -> dict:
    from transformers import get_linear_schedule_with_warmup
    from accelerate.utils import set_seed

    task, tokenizer = task_and_tokenizer(settings)
    teacher, ctx = teacher_context("minilm", task, tokenizer, SEED, settings)
    config = TrainConfig(seed=SEED, epochs=1.0, learning_rate=1e-4)  # batch 32, warm-up 6%, max_length 64, clip 1.0
    student = copy.deepcopy(teacher.model)
    kept = bc.compress(student, bc.LayerRemoval(keep=3, strategy="every_other"), ctx).metrics["kept_layers"]
    for model in (teacher.model, student):
        model.set_attn_implementation("eager")  # transformers 5 returns attention maps only from eager attention
    train_data = encode(task.split("train"), tokenizer, config.max_length)
    steps = total_steps(len(train_data), config)
    lengths = [len(ids) for ids in train_data.ids]
    order = [global_batch(lengths, step, config) for step in range(steps)]  # our exact batches, in our order
    ratio = sum(sum(lengths[i] ** 2 for i in b) / sum(lengths[i] for i in b) for b in order) / len(order)
    w = weights(settings.options["weights"], ratio)
    matches = [{"layer_T": t, "layer_S": s, "feature": "hidden", "loss": "hidden_mse", "weight": w["hidden_per_pair"]}
               for t, s in zip(TEACHER_HIDDEN, STUDENT_HIDDEN)]
    matches += [{"layer_T": t, "layer_S": s, "feature": "attention", "loss": "attention_mse",
                 "weight": w["attention_per_pair"]} for t, s in zip(TEACHER_ATTENTION, STUDENT_ATTENTION)]
    distill_config = textbrewer.DistillationConfig(
        temperature=TEMPERATURE, kd_loss_type="ce", kd_loss_weight=w["kd_loss_weight"],
        hard_label_weight=w["hard_label_weight"], intermediate_matches=matches)
    warmup = int(config.warmup_ratio * steps)
    with tempfile.TemporaryDirectory() as output_dir:  # TextBrewer saves a state dict at the end of the epoch
        distiller = textbrewer.GeneralDistiller(
            textbrewer.TrainingConfig(device="cpu", output_dir=output_dir, log_dir=None), distill_config,
            model_T=teacher.model, model_S=student, adaptor_T=adaptor, adaptor_S=adaptor)
        optimizer = optimizer_for(student, config)
        set_seed(config.seed)  # as our loop does just before training: same dropout stream
        began = time.perf_counter()
        with distiller:
            distiller.train(optimizer, [train_data.batch(indices) for indices in order], num_epochs=1,
                            max_grad_norm=config.max_grad_norm, scheduler_class=get_linear_schedule_with_warmup,
                            scheduler_args={"num_warmup_steps": warmup, "num_training_steps": steps},
                            output_hidden_states=True, output_attentions=True)
        seconds = time.perf_counter() - began
    scored = accuracy_rows({"TextBrewer": student}, task, tokenizer, config.max_length)[0]
    ours = next((r for r in read_results("distillation", settings).get("rows", []) if r["name"] == OURS), {})
    import transformers

    return {
        "status": "ok",
        "textbrewer": {"accuracy": scored["test_accuracy"], "macro_f1": scored["test_macro_f1"],
                       "n_test": len(task.split("test")), "train_seconds": round(seconds, 1), "train_steps": steps},
        "ours_c_seed0_from_bench_work": {
            "accuracy": ours.get("test_accuracy", {}).get(str(SEED)),
            "train_seconds": ours.get("reports", {}).get(str(SEED), [{}])[-1].get("metrics", {}).get("train_seconds")},
        "settings": {
            "weights_mode": settings.options["weights"], "weights": w, "attention_length_ratio_r": round(ratio, 3),
            "distiller": "GeneralDistiller", "kd_loss_type": "ce", "temperature": TEMPERATURE,
            "intermediate_matches": matches, "student_kept_teacher_layers": kept, "batch_size": config.batch_size,
            "batches": "bertcompress global_batch (length-grouped, seed 0), dynamic padding",
            "max_length": config.max_length, "epochs": 1, "learning_rate": config.learning_rate,
            "weight_decay": config.weight_decay, "warmup_steps": warmup, "scheduler": "linear warm-up then decay",
            "max_grad_norm": config.max_grad_norm, "seed": SEED, "device": "cpu", "attention": "eager",
            "train_examples": len(train_data)},
        "environment": {"textbrewer": textbrewer.__version__, "torch": torch.__version__,
                        "transformers": transformers.__version__, "python": platform.python_version(),
                        "threads": torch.get_num_threads(), "load_average_at_end": os.getloadavg()},
    }


if __name__ == "__main__":
    settings = Settings.from_command_line(__doc__, options={"--weights": dict(choices=["matched", "brief"],
                                                                               default="matched")})
    try:
        import textbrewer
    except ImportError as error:
        sys.exit(f"TextBrewer is not installed ({error}): .venv/bin/pip install -e '.[peers]'")
    try:
        data = run(settings, textbrewer)
    except Exception as error:  # noqa: BLE001 - record why TextBrewer could not run on our stack
        data = {"status": "failed", "reason": f"{type(error).__name__}: {error}".splitlines()[0],
                "weights_mode": settings.options["weights"]}
    write_json("textbrewer", data, settings)
    print(f"TextBrewer GeneralDistiller: test accuracy {100 * data['textbrewer']['accuracy']:.2f}, train "
          f"{data['textbrewer']['train_seconds']:.0f} s" if data["status"] == "ok" else f"TextBrewer failed: {data['reason']}")
