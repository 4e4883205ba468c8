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
with TextPruner's exact head counts (7 heads kept in every layer), built through the variants API.

    python bench/textpruner_compare.py [--smoke]

Results go to ``bench/results/textpruner.json`` (BENCHMARKS.md is not touched)."""
import copy
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
from bertcompress.benchmarks import Settings, task_and_tokenizer, teacher_context, write_json  # noqa: E402
from bertcompress.data.batching import encode  # noqa: E402
from bertcompress.measure import accuracy_rows  # noqa: E402
from bertcompress.recipe import Recipe  # noqa: E402
from bertcompress.variants import Variant, VariantCache, build_all  # noqa: E402

CALIBRATION, BATCH, MAX_LENGTH = 512, 32, 64
KEEP_PER_LAYER = {7: "40%", 6: "50%"}  # heads kept per layer (of 12) -> fraction of all heads removed


def failure(error: BaseException, started: float) -> dict:
    frame = traceback.extract_tb(error.__traceback__)[-1]
    return {"status": "failed", "error": f"{type(error).__name__}: {(str(error).strip() or ' ').splitlines()[0]}",
            "at": f"{Path(frame.filename).name}:{frame.lineno} in {frame.name}: {frame.line}",
            "seconds": round(time.perf_counter() - started, 2)}


def params(model: torch.nn.Module) -> dict:
    shaped, live = [], []
    for layer in model.bert.encoder.layer:
        att = layer.attention.self
        size = att.attention_head_size
        # weight shape, not Linear.out_features: TextPruner swaps in smaller weights without updating it
        shaped.append(att.query.weight.shape[0] // size)
        rows = att.query.weight.detach().reshape(-1, size * att.query.weight.shape[1])
        live.append(int((rows != 0).any(dim=1).sum()))
    return {"total": sum(p.numel() for p in model.parameters()),
            "nonzero": sum(int(torch.count_nonzero(p)) for p in model.parameters()),
            "attention_total": sum(p.numel() for n, p in model.named_parameters() if ".attention." in n),
            "heads_per_layer_by_shape": shaped, "heads_per_layer_nonzero": live}


def evaluate(model, task, tokenizer) -> dict:
    row = accuracy_rows({"model": model.eval()}, task, tokenizer, MAX_LENGTH)[0]
    return {"accuracy": round(row["test_accuracy"], 4), "macro_f1": round(row["test_macro_f1"], 4),
            "params": params(model)}


def textpruner_runs(textpruner, teacher, calib, task, tokenizer) -> dict:
    config = teacher.config
    loader = torch.utils.data.DataLoader(list(range(len(calib))), batch_size=BATCH, shuffle=False,
                                         collate_fn=calib.batch)
    workdir = tempfile.mkdtemp(prefix="textpruner-")

    def pruner_for(model, keep, method):
        for p in model.parameters():
            p.requires_grad_(True)
        pruning = textpruner.TransformerPruningConfig(target_num_of_heads=keep, pruning_method=method, n_iters=1,
                                                      target_ffn_size=config.intermediate_size)
        return textpruner.TransformerPruner(model, transformer_pruning_config=pruning, general_config=
                                            textpruner.GeneralConfig(use_device="cpu", output_dir=workdir))

    def attempt(keep: int, method: str, call) -> tuple[dict, object]:
        """One TextPruner route on a copy of the teacher: accuracy and size, or the one-line failure."""
        model = copy.deepcopy(teacher)
        pruner, started = pruner_for(model, keep, method), time.perf_counter()
        try:
            call(pruner)
        except Exception as error:  # noqa: BLE001 - record why, do not crash
            return failure(error, started), pruner
        seconds = round(time.perf_counter() - started, 2)  # pruning only, not the evaluation
        return {"status": "ok", **evaluate(model, task, tokenizer), "seconds": seconds}, pruner

    out: dict = {"available": True, "version": getattr(textpruner, "__version__", "?")}
    for keep, label in KEEP_PER_LAYER.items():
        runs: dict = {"heads_kept_per_layer": keep, "heads_removed": (config.num_attention_heads - keep)
                      * config.num_hidden_layers}
        # 1. iterative, keep_shape=False (physical removal through base_model.prune_heads)
        runs["iterative_keep_shape_false"], pruner = attempt(
            keep, "iterative", lambda p: p.prune(dataloader=loader, keep_shape=False, save_model=False))
        mask = pruner.head_mask.clone() if pruner.head_mask is not None else None
        if mask is not None:
            runs["head_mask_kept_per_layer"] = [int(v) for v in mask.sum(-1).tolist()]
            # 2. masks route: prune(head_mask=...) never passes keep_shape, so it is always keep_shape=False
            runs["masks_route"], _ = attempt(keep, "masks", lambda p: p.prune(head_mask=mask, save_model=False))
        # 3. iterative, keep_shape=True (weights of pruned heads zeroed, shapes unchanged)
        runs["iterative_keep_shape_true"], pruner = attempt(
            keep, "iterative", lambda p: p.prune(dataloader=loader, keep_shape=True, save_model=False))
        if runs["iterative_keep_shape_true"]["status"] == "ok":
            runs["same_mask_as_keep_shape_false"] = bool(mask is not None and torch.equal(pruner.head_mask, mask))
        if mask is not None:  # 4. diagnostic: TextPruner's own weight slicing (internal method), no prune_heads
            runs["internal_reorder_physical"], _ = attempt(
                keep, "masks", lambda p: p.reorder_attention_heads(mask.float(), keep_shape=False))
        out[label] = runs
    return out


def ours(teacher, ctx, task, tokenizer) -> dict:
    config = teacher.model.config
    per_layer = config.num_attention_heads
    settings = {"global_40": (0.4, "global"), "global_50": (0.5, "global"), "layer_40": (0.4, "layer"),
                "layer_50": (0.5, "layer"),
                "layer_keep7": ((per_layer - 7) / per_layer, "layer")}  # TextPruner's 5 of 12 removed per layer
    variants = [Variant(name, Recipe(name, [bc.HeadPruning(fraction=fraction, scope=scope,
                                                               calibration_examples=CALIBRATION)]))
                for name, (fraction, scope) in settings.items()]
    built = build_all(teacher.model, variants, ctx, VariantCache(teacher.path.name), tokenizer)
    return {name: {"status": "ok", "fraction": round(fraction, 4), "scope": scope,
                   "heads_removed": built[name].reports[0]["metrics"].get("heads_removed"),
                   **evaluate(built[name].model, task, tokenizer), "seconds": built[name].reports[0]["seconds"]}
            for name, (fraction, scope) in settings.items()}


def main(settings: Settings) -> None:
    try:
        import textpruner
    except ImportError as error:
        sys.exit(f"TextPruner is not installed ({error}): .venv/bin/pip install --no-deps textpruner==1.1")
    started = time.perf_counter()
    torch.manual_seed(0)
    task, tokenizer = task_and_tokenizer(settings)
    teacher, ctx = teacher_context("minilm", task, tokenizer, 0, settings)
    calib = encode(task.split("train")[:CALIBRATION], tokenizer, MAX_LENGTH)
    config = teacher.model.config
    import transformers

    results: dict = {
        "setup": {"task": task.name, "model": "minilm", "layers": config.num_hidden_layers,
                  "heads_per_layer": config.num_attention_heads, "calibration_examples": len(calib),
                  "max_length": MAX_LENGTH, "recovery_finetuning": False, "torch": torch.__version__,
                  "transformers": transformers.__version__, "python": platform.python_version(),
                  "has_prune_heads": hasattr(teacher.model.bert, "prune_heads")},
        "teacher": evaluate(teacher.model, task, tokenizer)}
    try:
        results["textpruner"] = textpruner_runs(textpruner, teacher.model, calib, task, tokenizer)
    except Exception as error:  # noqa: BLE001 - never crash on TextPruner
        results["textpruner"] = {"available": True, **failure(error, started)}
    results["bertcompress"] = ours(teacher, ctx, task, tokenizer)
    results["wall_seconds"] = round(time.perf_counter() - started, 1)
    print(f"written to {write_json('textpruner', results, settings)}")


if __name__ == "__main__":
    main(Settings.from_command_line(__doc__))
