"""Micro-benchmark: dense F.linear vs torch CSR (unstructured masks) and BSR (block masks) on this CPU,
for MiniLM-sized Linears, through the call SparseLinear makes (addmm, sparse weight first). Kernels are
timed in turn, round after round, so that load from other processes hits them alike. The numbers set
the kernel threshold in methods/pruning/sparse_linear.py.

    python bench/sparse_kernels.py [--threads 1] [--repeats 5] [--write]"""
from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

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


def unstructured_weight(shape: tuple[int, int], sparsity: float) -> torch.Tensor:
    weight = torch.randn(shape)
    keep = weight.abs().flatten().argsort()[round(sparsity * weight.numel()):]
    mask = torch.zeros(weight.numel(), dtype=torch.bool)
    mask[keep] = True
    return weight * mask.view(shape)


def block_weight(shape: tuple[int, int], sparsity: float, block: int) -> torch.Tensor:
    grid = (shape[0] // block, shape[1] // block)
    scores = torch.rand(grid).flatten()
    kept = torch.zeros(scores.numel(), dtype=torch.bool)
    kept[scores.argsort()[round(sparsity * scores.numel()):]] = True
    mask = kept.view(grid).repeat_interleave(block, 0).repeat_interleave(block, 1)
    return torch.randn(shape) * mask


def run(repeats: int) -> list[dict]:
    rows = []
    for shape in SHAPES:
        for label, tokens in INPUTS.items():
            x, dense_weight, bias = torch.randn(tokens, shape[1]), torch.randn(shape), torch.randn(shape[0])
            for sparsity in SPARSITIES:
                csr = unstructured_weight(shape, sparsity).to_sparse_csr()
                kernels = {"dense": lambda: F.linear(x, dense_weight, bias),
                           "csr": lambda csr=csr: sparse_linear(x, csr, bias)}
                for block in BLOCKS:
                    bsr = block_weight(shape, sparsity, block).to_sparse_bsr((block, block))
                    kernels[f"bsr{block}"] = lambda bsr=bsr: sparse_linear(x, bsr, bias)
                row = {"shape": shape, "input": label, "sparsity": sparsity, **paired_ms(kernels, repeats)}
                rows.append(row)
                print(row, flush=True)
    return rows


def markdown(rows: list[dict], threads: int) -> str:
    head = ("| weight (out×in) | tokens | sparsity | dense ms | CSR ms (×dense) | "
            + " | ".join(f"BSR{b} ms (×dense)" for b in BLOCKS) + " |")
    lines = [f"### Sparse kernels vs dense on {platform.processor() or platform.machine()}, torch "
             f"{torch.__version__}, {threads} thread(s)", "", head, "|" + "---|" * (5 + len(BLOCKS))]
    for r in rows:
        ratio = lambda key: f"{r[key]:.3f} ({r[key] / r['dense_ms']:.2f})"  # noqa: E731
        lines.append(f"| {r['shape'][0]}×{r['shape'][1]} | {r['input']} | {r['sparsity']:.0%} | "
                     f"{r['dense_ms']:.3f} | {ratio('csr_ms')} | "
                     + " | ".join(ratio(f"bsr{b}_ms") for b in BLOCKS) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--write", action="store_true", help="write the table into BENCHMARKS.md")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    warnings.filterwarnings("ignore", message=".*Sparse CSR tensor support is in beta.*")
    rows = run(args.repeats)
    table = markdown(rows, args.threads)
    print(table)
    if args.write:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from common import write_section

        write_section(f"sparse-kernels-{args.threads}t", table, {"rows": rows, "threads": args.threads})


if __name__ == "__main__":
    main()
