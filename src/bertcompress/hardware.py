"""What this CPU can do for a BERT encoder: instruction-set features, installed runtimes, and a few-second
probe of fp32, bf16 and int8 GEMMs at an encoder's FFN shape, with the precision that pays here."""
from __future__ import annotations

import importlib.metadata
import platform
import statistics
import time
from pathlib import Path

import torch

FEATURES = {  # /proc/cpuinfo flag -> what it means for us
    "avx2": "AVX2", "avx512f": "AVX-512", "avx512_vnni": "AVX-512 VNNI (int8 dot products)",
    "avx_vnni": "AVX-VNNI", "avx512_bf16": "AVX-512 BF16", "amx_tile": "AMX", "amx_int8": "AMX int8",
    "amx_bf16": "AMX bf16", "asimddp": "ARM dot product (int8)", "sve": "ARM SVE", "bf16": "ARM BF16",
}
RUNTIMES = ("torch", "onnxruntime", "openvino", "nncf")
# int8 x int8 dot products accumulated in int32 (no int16 pair sums that can saturate at 8-bit activations)
INT8_DOT_PRODUCT = ("avx512_vnni", "avx_vnni", "amx_int8", "asimddp")
PROBE_SHAPE = (2048, 384, 1536)  # tokens x hidden x FFN width: batch 32 x 64 tokens through MiniLM's FFN


def _cpuinfo() -> str:
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""


def cpu_flags(text: str | None = None) -> set[str]:
    """Feature flags of x86 ('flags') or ARM ('Features') lines of /proc/cpuinfo."""
    text = _cpuinfo() if text is None else text
    flags = set()
    for line in text.splitlines():
        if line.startswith(("flags", "Features")):
            flags.update(line.split(":", 1)[1].split())
    return flags


def cpu_name() -> str:
    for line in _cpuinfo().splitlines():
        if line.startswith(("model name", "Model name")):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def cpu_features(text: str | None = None) -> list[str]:
    """The features that matter here, by their cpuinfo names ('avx512_vnni', ...), in a stable order."""
    flags = cpu_flags(text)
    return [flag for flag in FEATURES if flag in flags]


def has_int8_dot_product(features: list[str] | None = None) -> bool:
    return bool(set(cpu_features() if features is None else features) & set(INT8_DOT_PRODUCT))


def runtimes() -> dict[str, str | None]:
    found = {}
    for name in RUNTIMES:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = None
    return found


def _median_ms(run, repeats: int) -> float:
    run()  # warm-up: packing, allocation
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return 1000 * statistics.median(times)


def gemm_probe(repeats: int = 10, shape: tuple[int, int, int] = PROBE_SHAPE) -> dict[str, float | None]:
    """Median ms of one (tokens x hidden) @ (hidden x ffn) product in fp32, bf16 and dynamic int8."""
    from bertcompress.methods.quantization.int8_modules import DynamicInt8Linear

    tokens, hidden, width = shape
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(tokens, hidden, generator=generator)
    linear = torch.nn.Linear(hidden, width)
    results: dict[str, float | None] = {}
    with torch.inference_mode():
        results["fp32_ms"] = _median_ms(lambda: linear(x), repeats)
        bf16, x16 = torch.nn.Linear(hidden, width).to(torch.bfloat16), x.to(torch.bfloat16)
        results["bf16_ms"] = _median_ms(lambda: bf16(x16), repeats)
        for reduce_range in (True, False):
            int8 = DynamicInt8Linear.from_linear(linear, reduce_range=reduce_range)
            key = "int8_7bit_ms" if reduce_range else "int8_ms"
            results[key] = _median_ms(lambda: int8(x), repeats)
    return {k: round(v, 3) for k, v in results.items()}


def advice(features: list[str], probe: dict[str, float], installed: dict[str, str | None] | None = None) -> list[str]:
    """Which precision pays on this CPU, from the probe's measured ratios, the int8 kernel option, and where
    int8 dot products and OpenVINO are both here, the fastest int8 path measured on such CPUs."""
    fp32 = probe["fp32_ms"]
    lines = []
    vnni = has_int8_dot_product(features)
    best_int8 = min(probe["int8_ms"], probe["int8_7bit_ms"])
    lines.append(f"int8 GEMM {fp32 / best_int8:.2f}x fp32 here: "
                 + ("use int8 (dynamic_int8 / q8bert_qat)" if fp32 / best_int8 > 1.2 else "int8 saves size, not time"))
    if vnni:
        lines.append("int8 dot products present: dynamic_int8 uses full 8-bit activations here (reduce_range "
                     "chosen automatically; the 7-bit grid is only for CPUs without them)")
    else:
        lines.append("no int8 dot products (VNNI): dynamic_int8 uses 7-bit activations here (u8 x s8 pairs "
                     "can overflow int16 at 8 bits)")
    ratio = fp32 / probe["bf16_ms"]
    lines.append(f"bf16 GEMM {ratio:.2f}x fp32 here: "
                 + ("bf16 pays (hardware BF16)" if ratio > 1.2 else "bf16 does not pay on this CPU"))
    if vnni and (installed or {}).get("openvino"):
        lines.append("fastest int8 measured on such CPUs (BENCHMARKS.md, runtimes): static int8 with every "
                     "MatMul quantized in OpenVINO: `--recipe q8bert-static-int8`, then `export --to openvino` "
                     "(or `export --to openvino --int8 static` on any model: NNCF)")
    return lines


def report(repeats: int = 10) -> dict:
    features, found_runtimes = cpu_features(), runtimes()
    probe = gemm_probe(repeats)
    return {"cpu": cpu_name(), "machine": platform.machine(), "features": features,
            "threads": torch.get_num_threads(), "runtimes": found_runtimes, "gemm_probe": probe,
            "probe_shape": list(PROBE_SHAPE), "advice": advice(features, probe, found_runtimes)}
