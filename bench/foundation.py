"""Foundation benchmark: teacher accuracy over seeds, and dynamic int8 vs the fp32 teacher in one run.

    python bench/foundation.py --seeds 0 1 2 --repeats 30

Teachers come from the same cache as the main job (seed 0 is the main job's teacher)."""
from __future__ import annotations

import argparse
import copy
import platform
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import mean_std, write_section  # noqa: E402

import bertcompress as bc  # noqa: E402
from bertcompress.data.batching import encode  # noqa: E402
from bertcompress.evaluation.latency import benchmark_many  # noqa: E402
from bertcompress.evaluation.metrics import score  # noqa: E402
from bertcompress.evaluation.size import encoder_linear_bytes, size_on_disk  # noqa: E402
from bertcompress.training.loop import TrainConfig  # noqa: E402
from bertcompress.training.teacher import get_teacher  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()

    task = bc.tasks.get("rotten_tomatoes", seed=0)  # one split; seeds vary head init and data order
    tokenizer = bc.load_tokenizer("minilm")
    test = encode(task.split("test"), tokenizer, 64)
    rows = []
    for seed in args.seeds:
        config = TrainConfig(seed=seed)
        teacher = get_teacher("minilm", task, tokenizer, config)
        quantized = copy.deepcopy(teacher.model)
        bc.compress(quantized, bc.DynamicInt8(), bc.Context())
        fp32, _ = score(teacher.model, test, task.num_labels)
        int8, _ = score(quantized, test, task.num_labels)
        rows.append({"seed": seed, "fp32": fp32["accuracy"], "int8": int8["accuracy"],
                     "fp32_f1": fp32["macro_f1"], "int8_f1": int8["macro_f1"]})
        print(rows[-1], flush=True)
        last = (teacher.model, quantized)

    teacher_model, quantized = last
    linears = bc.DynamicInt8(embeddings=False)
    linears_only = copy.deepcopy(teacher_model)
    bc.compress(linears_only, linears, bc.Context())
    variants = {"fp32": teacher_model, "int8 (linears + embeddings)": quantized, "int8 (linears only)": linears_only}
    latency = benchmark_many(variants, (1, 32), 64, args.repeats, threads=args.threads)
    sizes = {name: size_on_disk(model)["total"] for name, model in variants.items()}
    linear_bytes = {name: encoder_linear_bytes(model) for name, model in variants.items()}

    drops = [r["fp32"] - r["int8"] for r in rows]
    config = TrainConfig()
    lines = [
        "## Foundation: teacher and dynamic int8 (`bench/foundation.py`)",
        "",
        f"Rotten Tomatoes, split seed 0 (10,201 / 1,275 / 1,276), test split; teacher = packaged MiniLM-L6 "
        f"fine-tuned {config.epochs:g} epochs, lr {config.learning_rate:g}, batch {config.batch_size}, "
        f"max length {config.max_length}, warm-up {config.warmup_ratio:g} + linear decay, weight decay "
        f"{config.weight_decay:g}; seeds {args.seeds} vary the head initialisation and data order.",
        "",
        "| | fp32 teacher | dynamic int8 | drop (points) |",
        "|---|---|---|---|",
        f"| test accuracy, mean ± std over {len(rows)} seeds | {mean_std([r['fp32'] for r in rows])} | "
        f"{mean_std([r['int8'] for r in rows])} | {100 * sum(drops) / len(drops):.2f} (target ≤ 1.0) |",
        f"| test macro-F1 | {mean_std([r['fp32_f1'] for r in rows])} | {mean_std([r['int8_f1'] for r in rows])} | |",
        "",
        "Per seed: " + "; ".join(f"seed {r['seed']}: {100 * r['fp32']:.2f} → {100 * r['int8']:.2f}" for r in rows),
        "",
        f"Size and CPU latency, measured interleaved in one run ({platform.machine()}, {args.threads} threads, "
        f"torch {torch.__version__}, seq 64, median of {args.repeats}):",
        "",
        "| variant | encoder Linear MB | size on disk MB | b1 ms | b32 ms | speedup b1 | speedup b32 |",
        "|---|---|---|---|---|---|---|",
    ]
    base = latency["fp32"]
    for name in variants:
        b1, b32 = latency[name]["batch_1"]["median_ms"], latency[name]["batch_32"]["median_ms"]
        lines.append(f"| {name} | {linear_bytes[name] / 1e6:.1f} ({linear_bytes['fp32'] / linear_bytes[name]:.2f}x "
                     f"smaller) | {sizes[name] / 1e6:.1f} ({sizes['fp32'] / sizes[name]:.2f}x smaller) | {b1:.1f} | "
                     f"{b32:.1f} | {base['batch_1']['median_ms'] / b1:.2f}x | {base['batch_32']['median_ms'] / b32:.2f}x |")
    write_section("foundation", "\n".join(lines), {"accuracy": rows, "latency": latency, "sizes": sizes,
                                                    "encoder_linear_bytes": linear_bytes})


if __name__ == "__main__":
    main()
