"""Quantization benchmark: every quantization method and two baselines users would pick instead, on the
Rotten Tomatoes teacher, measured in one run (accuracy, size on disk, CPU latency ratio vs FP32).

    python bench/quantization.py [--seeds 0 1 2] [--qat-epochs 1] [--repeats 20]

Finished variants are kept in bench/work/quantization/ so an interrupted run resumes where it stopped."""
from __future__ import annotations

import argparse
import copy
import json
import platform
import sys
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, mean_std, resumable_results, rotten_tomatoes, slug, write_section  # noqa: E402

import bertcompress as bc  # noqa: E402
from bertcompress.evaluation.latency import benchmark_many  # noqa: E402
from bertcompress.evaluation.metrics import score  # noqa: E402
from bertcompress.io import directory_bytes_of  # noqa: E402
from bertcompress.training.loop import TrainConfig  # noqa: E402
from bertcompress.training.teacher import get_teacher  # noqa: E402

WORK = ROOT / "bench" / "work" / "quantization"
MB = 1e6
# QAT's goal is the FP32 model's function, so Q8BERT distils only, at a low rate: label cross-entropy, or KD at
# 2e-5, keeps fine-tuning the teacher and moves accuracy by as much as a new seed does.
PURE_KD = {"hard_weight": 0.0, "distill_weight": 1.0}
TRAIN_OVERRIDES = {"Q8BERT QAT int8, per-tensor weights (+KD)": PURE_KD,
                   "Q8BERT QAT int8, per-channel weights (+KD)": PURE_KD}


def variants(args) -> dict[str, tuple[list, bool, str]]:
    """name -> (method configs, runs on every seed?, bits label). Methods that train run on every seed."""
    table = {
        "dynamic int8 (ours, PTQ)": ([bc.DynamicInt8()], False, "8"),
        "naive PTQ w8 (weight-only)": ([bc.NaivePTQ(weight_bits=8, embeddings=True)], False, "8"),
        "naive PTQ w4 (weight-only)": ([bc.NaivePTQ(weight_bits=4, embeddings=True)], False, "4"),
        "naive PTQ w4 g128 (weight-only)": ([bc.NaivePTQ(weight_bits=4, granularity="group", embeddings=True)], False, "4"),
        "naive PTQ w2 (weight-only)": ([bc.NaivePTQ(weight_bits=2, embeddings=True)], False, "2"),
        "naive PTQ w8a8 static min/max": ([bc.NaivePTQ(weight_bits=8, activation_bits=8)], False, "8/8"),
        "naive PTQ w8a8 static p99.99": ([bc.NaivePTQ(weight_bits=8, activation_bits=8, observer="percentile")], False, "8/8"),
        "naive PTQ w4a8 static p99.99": ([bc.NaivePTQ(weight_bits=4, activation_bits=8, observer="percentile")], False, "4/8"),
        "Q8BERT QAT int8, per-tensor weights (+KD)": (
            [bc.Q8BertQAT(epochs=args.qat_epochs, learning_rate=5e-6, granularity="tensor")], True, "8"),
        # MiniLM has outlier weights (layer 0's FFN output: per-tensor steps round 55% of it to zero)
        "Q8BERT QAT int8, per-channel weights (+KD)": (
            [bc.Q8BertQAT(epochs=args.qat_epochs, learning_rate=5e-6, granularity="channel")], True, "8"),
        "Quant-Noise int8 (+KD)": ([bc.QuantNoise(scheme="int8", p=0.5, epochs=args.qat_epochs)], True, "8"),
        "Quant-Noise iPQ (+KD)": ([bc.QuantNoise(scheme="ipq", p=0.1, epochs=args.qat_epochs)], True, "iPQ 256x8"),
    }
    if "qbert_mixed_precision" in bc.registered():
        config = bc.registered()["qbert_mixed_precision"]
        table["Q-BERT mixed precision (≤4 bits avg)"] = ([config(average_bits=4.0)], False, "≤4 avg")
    return table


def pytorch_dynamic(model: torch.nn.Module) -> torch.nn.Module:
    """The baseline PyTorch users know: torch.ao quantize_dynamic on every Linear (deprecated, still shipped)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from torch.ao.quantization import quantize_dynamic

        return quantize_dynamic(copy.deepcopy(model), {torch.nn.Linear}, dtype=torch.qint8)


def state_bytes(model: torch.nn.Module) -> int:
    path = WORK / "tmp_state.pt"
    torch.save(model.state_dict(), path)
    size = path.stat().st_size
    path.unlink()
    return size


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--qat-epochs", type=float, default=1.0)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--skip-latency", action="store_true", help="accuracy and size only (busy machine)")
    parser.add_argument("--only", nargs="*", default=None, help="variant names to run (default: all)")
    args = parser.parse_args()
    results, partial_path = resumable_results(WORK)
    task, tokenizer, test = rotten_tomatoes()
    teachers = {seed: get_teacher("minilm", task, tokenizer, TrainConfig(seed=seed)) for seed in args.seeds}
    first = teachers[args.seeds[0]]

    def record(name: str, seed: int, model, bits: str, size: int, note: str = "") -> None:
        accuracy, _ = score(model, test, task.num_labels)
        results.setdefault(name, {"bits": bits, "note": note, "accuracy": {}, "size": size})
        results[name]["accuracy"][str(seed)] = accuracy["accuracy"]
        results[name]["size"] = size
        partial_path.write_text(json.dumps(results, indent=2))
        print(f"{name} seed {seed}: {100 * accuracy['accuracy']:.2f}  {size / MB:.1f} MB", flush=True)

    for seed, teacher in teachers.items():
        if str(seed) not in results.get("FP32 teacher", {}).get("accuracy", {}):
            record("FP32 teacher", seed, teacher.model, "32", directory_bytes_of(teacher.path, True))
        if str(seed) not in results.get("PyTorch dynamic int8 (baseline)", {}).get("accuracy", {}):
            baseline = pytorch_dynamic(teacher.model)
            record("PyTorch dynamic int8 (baseline)", seed, baseline, "8", state_bytes(baseline),
                   "torch.ao quantize_dynamic, Linears only, embeddings fp32")

    table = variants(args)
    for name, (steps, trains, bits) in table.items():
        if args.only and name not in args.only:
            continue
        for seed in (args.seeds if trains else args.seeds[:1]):
            if str(seed) in results.get(name, {}).get("accuracy", {}):
                continue
            teacher = teachers[seed]
            model = copy.deepcopy(teacher.model)
            train = TrainConfig(seed=seed, **TRAIN_OVERRIDES.get(name, {}))
            ctx = bc.Context(task=task, tokenizer=tokenizer, teacher=teacher.model, train=train, seed=seed)
            reports = [bc.compress(model, step, ctx) for step in steps]
            saved = bc.save(model, WORK / "models" / f"{slug(name)}-seed{seed}")
            overrides = ", ".join(f"{k}={v:g}" for k, v in TRAIN_OVERRIDES.get(name, {}).items())
            record(name, seed, model, bits, directory_bytes_of(saved, True),
                   " ".join(n for r in reports for n in r.notes) + (f" (loss: {overrides})" if overrides else ""))
            if "sensitivity" in reports[-1].metrics:
                results[name]["sensitivity"] = reports[-1].metrics["sensitivity"]
                partial_path.write_text(json.dumps(results, indent=2))

    latency_models = {"FP32 teacher": first.model, "PyTorch dynamic int8 (baseline)": pytorch_dynamic(first.model)}
    seed0 = args.seeds[0]
    for name in table:
        path = WORK / "models" / f"{slug(name)}-seed{seed0}"
        if path.exists():
            latency_models[name] = bc.load(path)
    latency_models.update(onnx_variants(first, latency_models.get("dynamic int8 (ours, PTQ)"), results, test, task))
    partial_path.write_text(json.dumps(results, indent=2))
    latency = {} if args.skip_latency else benchmark_many(latency_models, (1, 32), 64, args.repeats)
    write_report(results, latency, args)


def onnx_variants(teacher, ours, results: dict, test, task) -> dict:
    """ONNX Runtime fp32, its own dynamic int8 quantization (the other baseline users pick), and our int8
    model exported to ONNX (int8 weights kept, run by ORT's int8 kernels)."""
    try:
        from bertcompress.evaluation.onnx_export import OrtModel, export_onnx, ort_dynamic_int8
    except ImportError:
        return {}
    fp32_path = export_onnx(copy.deepcopy(teacher.model), WORK / "onnx" / "fp32.onnx")
    int8_path = ort_dynamic_int8(fp32_path, WORK / "onnx" / "ort-int8.onnx")
    candidates = [("ONNX Runtime fp32", fp32_path, "32"), ("ONNX Runtime dynamic int8 (baseline)", int8_path, "8")]
    if ours is not None:
        candidates.append(("dynamic int8 (ours) exported to ONNX Runtime", export_onnx(copy.deepcopy(ours), WORK / "onnx" / "ours.onnx"),
                           "8"))
    models = {}
    for name, path, bits in candidates:
        model = OrtModel(path, teacher.model.config, threads=torch.get_num_threads())
        accuracy, _ = score(model, test, task.num_labels)
        results[name] = {"bits": bits, "note": {"ONNX Runtime dynamic int8 (baseline)": "onnxruntime.quantization.quantize_dynamic", "dynamic int8 (ours) exported to ONNX Runtime": "our int8 weights exported as DynamicQuantizeLinear + MatMulInteger (uint8 weights, zero point 128), fused by ORT"}.get(name, ""),
                         "accuracy": {"0": accuracy["accuracy"]}, "size": path.stat().st_size}
        models[name] = model
    return models


def write_report(results: dict, latency: dict, args) -> None:
    base_size = results["FP32 teacher"]["size"]
    fp32 = results["FP32 teacher"]["accuracy"]
    lines = [
        "## Quantization (`bench/quantization.py`)",
        "",
        f"Rotten Tomatoes test split (1,276), teachers fine-tuned with seeds {args.seeds}; trained methods (QAT, "
        f"Quant-Noise) run {args.qat_epochs:g} epoch from each seed's teacher (mean ± std over seeds), the others "
        f"from seed {args.seeds[0]}'s teacher. Latency: {platform.machine()}, {torch.get_num_threads()} threads, torch "
        f"{torch.__version__}, seq 64, median of {args.repeats} interleaved repeats, ratios to FP32 measured in "
        "the same run. Size: bytes on disk of weights + config + manifest (ONNX: the .onnx file; PyTorch "
        "baseline: its saved state dict).",
        "",
        "| method | bits (w/a) | test accuracy | Δ vs FP32 of the same seeds (points) | size on disk MB | smaller | speedup b1 | speedup b32 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    base_latency = latency.get("FP32 teacher")
    for name, entry in results.items():
        values = list(entry["accuracy"].values())
        # each method against the FP32 teacher of the same seed(s)
        delta = 100 * sum(a - fp32[seed] for seed, a in entry["accuracy"].items()) / len(values)
        speed = ("–", "–")
        if base_latency and name in latency:
            speed = tuple(f"{base_latency[f'batch_{b}']['median_ms'] / latency[name][f'batch_{b}']['median_ms']:.2f}x"
                          for b in (1, 32))
        lines.append(f"| {name} | {entry['bits']} | {mean_std(values)} | {delta:+.2f} | {entry['size'] / MB:.1f} | "
                     f"{base_size / entry['size']:.2f}x | {speed[0]} | {speed[1]} |")
    notes = [f"- **{name}**: {entry['note']}" for name, entry in results.items() if entry.get("note")]
    lines += ["", *notes]
    write_section("quantization", "\n".join(lines), {"results": results, "latency": latency})


if __name__ == "__main__":
    main()
