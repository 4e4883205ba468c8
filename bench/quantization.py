"""Quantization benchmark: every quantization method and the baselines users would pick instead (torch.ao
and ONNX Runtime dynamic int8) on the Rotten Tomatoes teacher, measured in one run (accuracy, size on disk,
CPU speedup vs FP32). Methods that train run from each seed's teacher; the others from seed 0's.

    python bench/quantization.py [--repeats 20] [--smoke]"""
from functools import partial

import bertcompress as bc
from bertcompress.benchmarks import Row, Settings, Table, onnx_runtime, run_table, torch_dynamic_int8

SEEDS = (0, 1, 2)
QAT_EPOCHS = 0.5  # 160 steps, as in the published figures
# QAT's goal is the FP32 model's function, so Q8BERT distils only, at a low rate: label cross-entropy, or KD at
# 2e-5, keeps fine-tuning the teacher and moves accuracy by as much as a new seed does.
PURE_KD = {"hard_weight": 0.0, "distill_weight": 1.0}


def q8bert(granularity: str) -> Row:
    name = f"Q8BERT QAT int8, per-{granularity} weights (+KD)"
    return Row(name, (bc.Q8BertQAT(epochs=QAT_EPOCHS, learning_rate=5e-6, granularity=granularity),), SEEDS,
               train=PURE_KD, info={"bits": "8"})


def ptq(name: str, bits: str, timed: bool = True, **fields) -> Row:
    return Row(name, (bc.NaivePTQ(**fields),), timed=timed, info={"bits": bits})


def notes(results: list[dict]) -> str:
    return "\n".join(f"- **{r['name']}**: {' '.join(r['notes']) or r['info']['note']}" +
                     (f" (loss: {', '.join(f'{k}={v:g}' for k, v in r['train'].items())})" if r.get("train") else "")
                     for r in results if r["notes"] or r.get("info", {}).get("note"))


TABLE = Table(
    section="quantization",
    title="Quantization (`bench/quantization.py`)",
    description=(
        f"Rotten Tomatoes test split (1,276), teachers fine-tuned with seeds {list(SEEDS)}; trained methods (QAT, "
        f"Quant-Noise) run {QAT_EPOCHS:g} epoch from each seed's teacher (mean ± std over seeds), the others from "
        "seed 0's teacher. Size: bytes on disk of weights + config + manifest (ONNX: the .onnx file; PyTorch "
        "baseline: its saved state dict). Δ: against the FP32 teacher of the same seeds."),
    rows=[
        Row("FP32 teacher", seeds=SEEDS, info={"bits": "32"}),
        Row("PyTorch dynamic int8 (baseline)", seeds=SEEDS, peer=torch_dynamic_int8,
            info={"bits": "8", "note": "torch.ao quantize_dynamic, Linears only, embeddings fp32"}),
        Row("dynamic int8 (ours, PTQ)", (bc.DynamicInt8(),), info={"bits": "8"}),
        ptq("naive PTQ w8 (weight-only)", "8", weight_bits=8, embeddings=True),
        ptq("naive PTQ w4 (weight-only)", "4", weight_bits=4, embeddings=True),
        ptq("naive PTQ w4 g128 (weight-only)", "4", weight_bits=4, granularity="group", embeddings=True),
        ptq("naive PTQ w2 (weight-only)", "2", timed=False, weight_bits=2, embeddings=True),  # unusable accuracy
        ptq("naive PTQ w8a8 static min/max", "8/8", weight_bits=8, activation_bits=8),
        ptq("naive PTQ w8a8 static p99.99", "8/8", weight_bits=8, activation_bits=8, observer="percentile"),
        ptq("naive PTQ w4a8 static p99.99", "4/8", weight_bits=4, activation_bits=8, observer="percentile"),
        q8bert("tensor"),
        # MiniLM has outlier weights (layer 0's FFN output: per-tensor steps round 55% of it to zero)
        q8bert("channel"),
        Row("Quant-Noise int8 (+KD)", (bc.QuantNoise(scheme="int8", p=0.5, epochs=QAT_EPOCHS),), SEEDS,
            info={"bits": "8"}),
        Row("Quant-Noise iPQ (+KD)", (bc.QuantNoise(scheme="ipq", p=0.1, epochs=QAT_EPOCHS),), SEEDS,
            info={"bits": "iPQ 256x8"}),
        Row("Q-BERT mixed precision (≤4 bits avg)", (bc.QBertMixedPrecision(average_bits=4.0),),
            info={"bits": "≤4 avg"}),
        Row("ONNX Runtime fp32", peer=onnx_runtime, info={"bits": "32"}),
        Row("ONNX Runtime dynamic int8 (baseline)", peer=partial(onnx_runtime, quantize=True),
            info={"bits": "8", "note": "onnxruntime.quantization.quantize_dynamic"}),
        Row("dynamic int8 (ours) exported to ONNX Runtime", peer=onnx_runtime, start="dynamic int8 (ours, PTQ)",
            info={"bits": "8", "note": "our int8 weights exported as DynamicQuantizeLinear + MatMulInteger (uint8 "
                                       "weights, zero point 128), fused by ORT"}),
    ],
    columns=(("bits (w/a)", lambda r: r["info"]["bits"]),),
    extra=notes,
)

if __name__ == "__main__":
    run_table(TABLE, Settings.from_command_line(__doc__))
