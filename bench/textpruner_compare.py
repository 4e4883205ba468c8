"""Compare TextPruner 1.1's head pruning with bertcompress's HeadPruning on the same teacher.

Teacher: the cached fine-tuned MiniLM (6 layers x 12 heads) on rotten_tomatoes, seed 0. Both tools score
heads on the same 512 training examples (max_length 64, batches of 32) and no recovery fine-tuning is run;
every result is the test accuracy of the pruned model plus its parameter count (total and non-zero).

TextPruner (``pip install --no-deps textpruner==1.1``) is tried three ways, each recorded as a result or as
the one-line reason it failed:

* ``TransformerPruner`` 'iterative' (n_iters=1, FFN kept at full size) with ``keep_shape=False`` - this ends
  in ``base_model.prune_heads``, which transformers 5 removed;
* the 'masks' route (``prune(head_mask=...)``) - always ``keep_shape=False``, so the same call;
* 'iterative' with ``keep_shape=True`` - TextPruner zeroes the pruned heads' q/k/v rows and output columns,
  the shape (and parameter count) stays the same.

As a diagnostic (not TextPruner's public API) it also applies TextPruner's own
``reorder_attention_heads(mask, keep_shape=False)``, which slices the weights physically; transformers 5's
BERT attention infers the head count from the weight shape, so that model runs.

bertcompress: ``HeadPruning(fraction=0.4 / 0.5)`` ranked globally (default) and per layer, and per layer
with TextPruner's exact head counts (7 and 6 heads kept in every layer).

Run ``python bench/textpruner_compare.py``; results go to ``bench/results/textpruner.json``
(BENCHMARKS.md is not touched).
"""
from __future__ import annotations

import copy
import json
import os
import platform
import sys
import tempfile
import time
import traceback
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")
os.environ.setdefault("BERTCOMPRESS_QUIET", "1")

import torch  # noqa: E402

import bertcompress as bc  # noqa: E402
from bertcompress.data.batching import encode  # noqa: E402
from bertcompress.evaluation.metrics import score  # noqa: E402
from bertcompress.training.loop import TrainConfig  # noqa: E402
from bertcompress.training.teacher import get_teacher  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "results" / "textpruner.json"
CALIBRATION = 512
BATCH = 32
MAX_LENGTH = 64
# heads kept per layer (of 12) -> fraction of all heads removed
KEEP_PER_LAYER = {7: "40%", 6: "50%"}


def one_line(error: BaseException) -> str:
    return f"{type(error).__name__}: {str(error).strip().splitlines()[0] if str(error).strip() else ''}"


def where(error: BaseException) -> str:
    frame = traceback.extract_tb(error.__traceback__)[-1]
    return f"{Path(frame.filename).name}:{frame.lineno} in {frame.name}: {frame.line}"


def params(model: torch.nn.Module) -> dict:
    total = sum(p.numel() for p in model.parameters())
    nonzero = sum(int(torch.count_nonzero(p)) for p in model.parameters())
    attention = sum(p.numel() for n, p in model.named_parameters() if ".attention." in n)
    shaped, live = [], []
    for layer in model.bert.encoder.layer:
        att = layer.attention.self
        size = att.attention_head_size
        # weight shape, not Linear.out_features: TextPruner swaps in smaller weights without updating it
        shaped.append(att.query.weight.shape[0] // size)
        rows = att.query.weight.detach().reshape(-1, size * att.query.weight.shape[1])
        live.append(int((rows != 0).any(dim=1).sum()))
    return {"total": total, "nonzero": nonzero, "attention_total": attention,
            "heads_per_layer_by_shape": shaped, "heads_per_layer_nonzero": live}


def evaluate(model, test, num_labels) -> dict:
    model.eval()
    result = score(model, test, num_labels)[0]
    return {"accuracy": round(result["accuracy"], 4), "macro_f1": round(result["macro_f1"], 4)}


def textpruner_runs(teacher, calib, test, num_labels, n_layers, n_heads, ffn_size) -> dict:
    out: dict = {}
    try:
        import textpruner
        from textpruner import GeneralConfig, TransformerPruner, TransformerPruningConfig
    except Exception as error:  # noqa: BLE001 - record why, do not crash
        return {"available": False, "reason": one_line(error)}
    out["available"] = True
    out["version"] = getattr(textpruner, "__version__", "?")
    loader = torch.utils.data.DataLoader(list(range(len(calib))), batch_size=BATCH, shuffle=False,
                                         collate_fn=calib.batch)
    workdir = tempfile.mkdtemp(prefix="textpruner-")

    def pruner_for(model, keep, method):
        for p in model.parameters():
            p.requires_grad_(True)
        config = TransformerPruningConfig(target_num_of_heads=keep, target_ffn_size=ffn_size,
                                          pruning_method=method, n_iters=1)
        return TransformerPruner(model, transformer_pruning_config=config,
                                 general_config=GeneralConfig(use_device="cpu", output_dir=workdir))

    def attempt(model, call) -> dict:
        """One TextPruner route on `model`: accuracy and size, or the one-line failure; seconds either way."""
        started = time.perf_counter()
        try:
            call()
        except Exception as error:  # noqa: BLE001
            return {"status": "failed", "error": one_line(error), "at": where(error),
                    "seconds": round(time.perf_counter() - started, 2)}
        seconds = round(time.perf_counter() - started, 2)  # pruning only, not the evaluation
        return {"status": "ok", **evaluate(model, test, num_labels), "params": params(model), "seconds": seconds}

    for keep, label in KEEP_PER_LAYER.items():
        runs: dict = {"heads_kept_per_layer": keep, "heads_removed": (n_heads - keep) * n_layers}
        # 1. iterative, keep_shape=False (physical removal through base_model.prune_heads)
        model = copy.deepcopy(teacher)
        pruner = pruner_for(model, keep, "iterative")
        runs["iterative_keep_shape_false"] = attempt(
            model, lambda: pruner.prune(dataloader=loader, keep_shape=False, save_model=False))
        head_mask = pruner.head_mask.clone() if pruner.head_mask is not None else None
        if head_mask is not None:
            runs["head_mask_kept_per_layer"] = [int(v) for v in head_mask.sum(-1).tolist()]

        # 2. masks route: prune(head_mask=...) never passes keep_shape, so it is always keep_shape=False
        if head_mask is not None:
            model = copy.deepcopy(teacher)
            pruner2 = pruner_for(model, keep, "masks")
            runs["masks_route"] = attempt(model, lambda: pruner2.prune(head_mask=head_mask, save_model=False))

        # 3. iterative, keep_shape=True (weights of pruned heads zeroed, shapes unchanged)
        model = copy.deepcopy(teacher)
        pruner3 = pruner_for(model, keep, "iterative")
        runs["iterative_keep_shape_true"] = attempt(
            model, lambda: pruner3.prune(dataloader=loader, keep_shape=True, save_model=False))
        if runs["iterative_keep_shape_true"]["status"] == "ok":
            runs["same_mask_as_keep_shape_false"] = bool(head_mask is not None
                                                         and torch.equal(pruner3.head_mask, head_mask))

        # 4. diagnostic: TextPruner's own weight slicing (internal method), bypassing prune_heads
        if head_mask is not None:
            model = copy.deepcopy(teacher)
            pruner4 = pruner_for(model, keep, "masks")
            runs["internal_reorder_physical"] = attempt(
                model, lambda: pruner4.reorder_attention_heads(head_mask.float(), keep_shape=False))
        out[label] = runs
    return out


def ours(teacher, task, tok, test, fraction, scope) -> dict:
    model = copy.deepcopy(teacher)
    ctx = bc.Context(task=task, tokenizer=tok, teacher=teacher, train=TrainConfig(seed=0))
    started = time.perf_counter()
    try:
        report = bc.compress(model, bc.HeadPruning(fraction=fraction, scope=scope,
                                                   calibration_examples=CALIBRATION), ctx)
    except Exception as error:  # noqa: BLE001
        return {"status": "failed", "error": one_line(error), "at": where(error)}
    seconds = round(time.perf_counter() - started, 2)
    return {"status": "ok", "fraction": round(fraction, 4), "scope": scope,
            "heads_removed": report.metrics.get("heads_removed"), **evaluate(model, test, task.num_labels),
            "params": params(model), "seconds": seconds}


def main() -> int:
    started = time.perf_counter()
    torch.manual_seed(0)
    task = bc.tasks.get("rotten_tomatoes", seed=0)
    tok = bc.load_tokenizer("minilm")
    teacher = get_teacher("minilm", task, tok, TrainConfig(seed=0)).model
    teacher.eval()
    test = encode(task.split("test"), tok, MAX_LENGTH)
    calib = encode(task.split("train")[:CALIBRATION], tok, MAX_LENGTH)
    cfg = teacher.config
    n_layers, n_heads, ffn = cfg.num_hidden_layers, cfg.num_attention_heads, cfg.intermediate_size

    import transformers

    results: dict = {
        "setup": {"task": "rotten_tomatoes", "model": "minilm", "layers": n_layers, "heads_per_layer": n_heads,
                  "calibration_examples": CALIBRATION, "max_length": MAX_LENGTH, "recovery_finetuning": False,
                  "torch": torch.__version__, "transformers": transformers.__version__,
                  "python": platform.python_version(),
                  "has_prune_heads": hasattr(teacher.bert, "prune_heads")},
        "teacher": {**evaluate(teacher, test, task.num_labels), "params": params(teacher)},
    }
    try:
        results["textpruner"] = textpruner_runs(teacher, calib, test, task.num_labels, n_layers, n_heads, ffn)
    except Exception as error:  # noqa: BLE001 - never crash on TextPruner
        results["textpruner"] = {"available": True, "status": "failed", "error": one_line(error)}
    total = n_layers * n_heads
    results["bertcompress"] = {
        "global_40": ours(teacher, task, tok, test, 0.4, "global"),
        "global_50": ours(teacher, task, tok, test, 0.5, "global"),
        "layer_40": ours(teacher, task, tok, test, 0.4, "layer"),
        "layer_50": ours(teacher, task, tok, test, 0.5, "layer"),
        # TextPruner's exact counts: 5 of 12 removed per layer (30 of 72 = 41.7%)
        "layer_keep7": ours(teacher, task, tok, test, (n_heads - 7) * n_layers / total, "layer"),
    }
    results["wall_seconds"] = round(time.perf_counter() - started, 1)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
