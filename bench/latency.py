"""Every saved benchmark variant timed against the FP32 teacher (seed 0) in one run, so all speed ratios
share one machine state. Run it on a quiet machine, after the other benchmarks have saved their models:

    python bench/latency.py [--repeats 20]

Variants are found under bench/work/<benchmark>/models/ (seed 0 only) and bench/work/quantization/onnx/."""
from __future__ import annotations

import argparse
import platform
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, write_section  # noqa: E402
from quantization import pytorch_dynamic  # noqa: E402

import bertcompress as bc  # noqa: E402
from bertcompress.evaluation.latency import benchmark_many  # noqa: E402
from bertcompress.io import directory_bytes_of  # noqa: E402
from bertcompress.training.loop import TrainConfig  # noqa: E402
from bertcompress.training.teacher import get_teacher  # noqa: E402

WORK = ROOT / "bench" / "work"
SKIP = ("naive-ptq-w2",)  # unusable accuracy: not worth timing


def saved_variants() -> dict[str, Path]:
    found = {}
    for models in sorted(WORK.glob("*/models")):
        for path in sorted(models.iterdir()):
            if (path / "manifest.json").exists() and "seed" not in path.name.replace("seed0", "") \
                    and not path.name.startswith(SKIP):
                found[f"{models.parent.name}/{path.name.removesuffix('-seed0')}"] = path
    return found


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    task = bc.tasks.get("rotten_tomatoes", seed=0)
    tokenizer = bc.load_tokenizer("minilm")
    cached = get_teacher("minilm", task, tokenizer, TrainConfig(seed=0))
    models = {"FP32 teacher": cached.model, "baseline/pytorch-quantize-dynamic": pytorch_dynamic(cached.model)}
    sizes = {"FP32 teacher": directory_bytes_of(cached.path, True)}
    for name, path in saved_variants().items():
        models[name] = bc.load(path)
        sizes[name] = directory_bytes_of(path, True)
    try:
        from bertcompress.evaluation.onnx_export import OrtModel
        for path in sorted((WORK / "quantization" / "onnx").glob("*.onnx")):
            models[f"onnxruntime/{path.stem}"] = OrtModel(path, cached.model.config, threads=torch.get_num_threads())
            sizes[f"onnxruntime/{path.stem}"] = path.stat().st_size
    except ImportError:
        pass
    print(f"timing {len(models)} models", flush=True)
    latency = benchmark_many(models, (1, 32), 64, args.repeats)
    base = latency["FP32 teacher"]
    lines = [
        "## Latency of every variant, one run (`bench/latency.py`)",
        "",
        f"{platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}, synthetic batches of "
        f"64 tokens, median of {args.repeats} interleaved repeats; speedup = teacher time / variant time, all "
        "measured in this one run. Accuracy for each variant is in its benchmark's section above.",
        "",
        "| variant | size on disk MB | b1 ms | speedup b1 | b32 ms | speedup b32 |",
        "|---|---|---|---|---|---|",
    ]
    for name, timing in latency.items():
        b1, b32 = timing["batch_1"]["median_ms"], timing["batch_32"]["median_ms"]
        size = f"{sizes[name] / 1e6:.1f}" if name in sizes else "–"
        lines.append(f"| {name} | {size} | {b1:.1f} | {base['batch_1']['median_ms'] / b1:.2f}x | {b32:.0f} | "
                     f"{base['batch_32']['median_ms'] / b32:.2f}x |")
    write_section("latency", "\n".join(lines), {"latency": latency, "sizes": sizes})


if __name__ == "__main__":
    main()
