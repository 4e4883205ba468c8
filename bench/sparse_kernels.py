"""Micro-benchmark: dense F.linear vs torch CSR (unstructured masks) and BSR (block masks) on this CPU,
for MiniLM-sized Linears, through the call SparseLinear makes (addmm, sparse weight first). Kernels are
timed in turn, round after round, so that load from other processes hits them alike. The numbers set
the kernel threshold in methods/pruning/sparse_linear.py. Writes the section sparse-kernels-<threads>t.

    python bench/sparse_kernels.py [--threads 1] [--repeats 5] [--smoke]"""
import statistics
import time
import warnings
from collections.abc import Callable

import torch
import torch.nn.functional as F

from bertcompress.benchmarks import Settings, publish
from bertcompress.measure import cpu_name
from bertcompress.methods.pruning.sparse_linear import sparse_linear

SHAPES = ((384, 384), (1536, 384), (384, 1536))  # (out, in): attention, FFN in, FFN out
INPUTS = {"32x64": 32 * 64, "1x64": 64}  # tokens per forward (batch x sequence)
SPARSITIES = (0.5, 0.7, 0.9, 0.95)
BLOCKS = (16, 32)


def paired_ms(kernels: dict[str, Callable[[], torch.Tensor]], repeats: int) -> dict[str, float]:
    """Median milliseconds per kernel, the kernels interleaved within each round."""
    for fn in kernels.values():
        fn()  # warm-up: first calls pay allocation and format conversion
    times: dict[str, list[float]] = {name: [] for name in kernels}
    for _ in range(repeats):
        for name, fn in kernels.items():
            began = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - began)
    return {f"{name}_ms": 1000 * statistics.median(values) for name, values in times.items()}


def masked(shape: tuple[int, int], sparsity: float, block: int = 1) -> torch.Tensor:
    """Random weights with the lowest-scored `sparsity` of their b×b blocks (b=1: single weights) zeroed."""
    grid = (shape[0] // block, shape[1] // block)
    scores = torch.randn(grid).abs().flatten() if block == 1 else torch.rand(grid).flatten()
    kept = torch.zeros(scores.numel(), dtype=torch.bool)
    kept[scores.argsort()[round(sparsity * scores.numel()):]] = True
    mask = kept.view(grid).repeat_interleave(block, 0).repeat_interleave(block, 1)
    return torch.randn(shape) * mask


def run(repeats: int, smoke: bool) -> list[dict]:
    rows = []
    for shape in SHAPES[:1] if smoke else SHAPES:
        for label, tokens in list(INPUTS.items())[-1:] if smoke else INPUTS.items():
            x, dense_weight, bias = torch.randn(tokens, shape[1]), torch.randn(shape), torch.randn(shape[0])
            for sparsity in SPARSITIES[-1:] if smoke else SPARSITIES:
                csr = masked(shape, sparsity).to_sparse_csr()
                kernels = {"dense": lambda: F.linear(x, dense_weight, bias),
                           "csr": lambda csr=csr: sparse_linear(x, csr, bias)}
                for block in BLOCKS:
                    bsr = masked(shape, sparsity, block).to_sparse_bsr((block, block))
                    kernels[f"bsr{block}"] = lambda bsr=bsr: sparse_linear(x, bsr, bias)
                rows.append({"shape": shape, "input": label, "sparsity": sparsity, **paired_ms(kernels, repeats)})
                print(rows[-1], flush=True)
    return rows


def markdown(rows: list[dict], threads: int) -> str:
    head = ("| weight (out×in) | tokens | sparsity | dense ms | CSR ms (×dense) | "
            + " | ".join(f"BSR{b} ms (×dense)" for b in BLOCKS) + " |")
    lines = [f"### Sparse kernels vs dense on {cpu_name()}, torch {torch.__version__}, {threads} thread(s)", "",
             head, "|" + "---|" * (5 + len(BLOCKS))]
    for r in rows:
        ratio = lambda key: f"{r[key]:.3f} ({r[key] / r['dense_ms']:.2f})"  # noqa: E731
        lines.append(f"| {r['shape'][0]}×{r['shape'][1]} | {r['input']} | {r['sparsity']:.0%} | "
                     f"{r['dense_ms']:.3f} | {ratio('csr_ms')} | " + " | ".join(ratio(f"bsr{b}_ms") for b in BLOCKS)
                     + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    settings = Settings.from_command_line(__doc__, repeats=5)
    threads = settings.threads or torch.get_num_threads()
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    warnings.filterwarnings("ignore", message=".*Sparse CSR tensor support is in beta.*")
    rows = run(settings.repeats, settings.smoke)
    print(markdown(rows, threads))
    publish(f"sparse-kernels-{threads}t", markdown(rows, threads), {"rows": rows, "threads": threads}, settings)
