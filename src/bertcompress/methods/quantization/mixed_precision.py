"""Q-BERT mixed-precision quantization (Shen et al. 2020): rank components by the top eigenvalue of their
loss Hessian, give more bits to more sensitive ones within an average-bits budget, store group-wise packed.

Bit assignment (`assign_bits`), deterministic: every component starts at the lowest bit width; then, while
some upgrade fits the budget, the component whose next upgrade buys the largest estimated loss reduction
per stored bit is upgraded one step (ties go to the earlier component). The estimate follows the quadratic
model behind Q-BERT: rounding a block of n weights to b bits perturbs the loss by about
½ λ n Δ², with step Δ ∝ 2^-b, so moving from b to b' saves Ω n (4^-b - 4^-b') for n (b' - b) extra bits.
The gain per bit, Ω (4^-b - 4^-b') / (b' - b), falls as b grows, so of two components of the same size the
more sensitive one never ends with fewer bits."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any

import torch.nn as nn
from pydantic import Field, ValidationInfo, field_validator

from bertcompress.core.config import MethodConfig
from bertcompress.core.context import Context
from bertcompress.core.errors import BertCompressError
from bertcompress.core.registry import register
from bertcompress.core.report import StepReport
from bertcompress.methods.common import replace_each
from bertcompress.methods.quantization.hessian import (component_eigenvalues, components, labelled_batches,
                                                       summarize)
from bertcompress.methods.quantization.packed import PackedEmbedding, PackedLinear
from bertcompress.methods.quantization.quantizers import QuantSpec


class QBertMixedPrecision(MethodConfig):
    """Hessian-guided mixed-precision weight quantization (Q-BERT), group-wise, bit-packed."""

    method_name = "qbert_mixed_precision"
    bit_choices: list[Annotated[int, Field(ge=2, le=8)]] = Field(
        default_factory=lambda: [2, 3, 4, 8], min_length=1, description="bit widths a component may get, each 2..8")
    average_bits: float = Field(4.0, gt=0, le=8, description="budget: parameter-weighted average weight bits")
    group_size: int = Field(128, ge=1, description="weights sharing one range; must divide every row length")
    symmetric: bool = Field(True, description="symmetric (zero point 0) or asymmetric weights")
    batches: int = Field(4, ge=1, description="training batches; one eigenvalue per component per batch")
    batch_size: int = Field(16, ge=1, description="examples per Hessian batch")
    iterations: int = Field(20, ge=1, description="most power-iteration steps per eigenvalue")
    use_variance: bool = Field(True, description="Ω = |mean λ| + std λ over batches (else |mean λ|)")
    embeddings: bool = Field(True, description="include the word-embedding table as a component")
    seed: int = Field(0, description="seeds the batch sample and the power-iteration start vectors")

    @field_validator("bit_choices")
    @classmethod
    def _distinct_ascending(cls, value: list[int]) -> list[int]:
        return sorted(set(value))

    @field_validator("average_bits")
    @classmethod
    def _achievable(cls, value: float, info: ValidationInfo) -> float:
        choices = info.data.get("bit_choices")
        if choices and value < min(choices):
            raise ValueError(f"{value} is below the minimum achievable average, {min(choices)} bits "
                             "(every component at the lowest of bit_choices)")
        return value


def assign_bits(sensitivities: Mapping[str, float], sizes: Mapping[str, int], bit_choices: Sequence[int],
                average_bits: float) -> dict[str, int]:
    """Bits per component with Σ nᵢbᵢ ≤ average_bits · Σ nᵢ, greedily by loss saved per bit (module doc)."""
    choices = sorted(set(bit_choices))
    total = sum(sizes.values())
    capacity = average_bits * total * (1 + 1e-12)  # tolerate float rounding of an exactly met budget
    used = choices[0] * total
    if used > capacity:
        raise BertCompressError(f"average_bits: {average_bits} is below the minimum achievable average, "
                                f"{choices[0]} bits (every component at the lowest of bit_choices)")
    level = {name: 0 for name in sizes}
    while True:
        best: tuple[float, str, int] | None = None
        for name in sizes:
            if level[name] + 1 == len(choices):
                continue
            low, high = choices[level[name]], choices[level[name] + 1]
            extra = sizes[name] * (high - low)
            gain = sensitivities[name] * (4.0 ** -low - 4.0 ** -high) / (high - low)
            if used + extra <= capacity and (best is None or gain > best[0]):
                best = (gain, name, extra)
        if best is None:
            return {name: choices[i] for name, i in level.items()}
        level[best[1]] += 1
        used += best[2]


def _weight_count(modules: Mapping[str, nn.Module]) -> int:
    return sum(module.weight.numel() for module in modules.values())


def _check_group_size(groups: Mapping[str, Mapping[str, nn.Module]], group_size: int) -> None:
    """Fail before the (slow) Hessian pass if some row length is not a multiple of the group size."""
    spec = QuantSpec(8, True, "group", group_size)
    for modules in groups.values():
        for name, module in modules.items():
            spec.check_shape(module.weight.shape, name)


def _packed(module: nn.Module, spec: QuantSpec) -> nn.Module:
    if isinstance(module, nn.Embedding):
        return PackedEmbedding.from_embedding(module, spec)
    return PackedLinear.from_linear(module, spec)


def _embedding_finding(table: Mapping[str, Mapping[str, Any]]) -> tuple[bool | None, str]:
    """Whether the embeddings came out the most sensitive component, as a flag and a sentence."""
    ranked = sorted(table, key=lambda c: table[c]["sensitivity"], reverse=True)
    if "embeddings" not in table:
        return None, "embeddings excluded (embeddings: false); their sensitivity was not measured"
    rank, top = ranked.index("embeddings") + 1, ranked[0]
    omega = table["embeddings"]["sensitivity"]
    if rank == 1:
        runner_up = f"; next {ranked[1]} Ω={table[ranked[1]]['sensitivity']:.4g}" if len(ranked) > 1 else ""
        return True, f"embeddings came out the most sensitive component (Ω={omega:.4g}{runner_up})"
    return False, (f"embeddings were not the most sensitive component: ranked {rank} of {len(ranked)} "
                   f"(Ω={omega:.4g}); most sensitive: {top} (Ω={table[top]['sensitivity']:.4g})")


@register(QBertMixedPrecision, bytes_of="replaced_modules")
def apply_qbert_mixed_precision(model: nn.Module, config: QBertMixedPrecision, ctx: Context) -> StepReport:
    groups = components(model, config.embeddings)
    _check_group_size(groups, config.group_size)
    batches = labelled_batches(ctx, config.batches, config.batch_size, config.seed, config.method_name)
    eigenvalues = component_eigenvalues(model, groups, batches, config.iterations, config.seed)
    table = {c: {**summarize(values, config.use_variance), "parameters": _weight_count(groups[c]),
                 "per_batch": values} for c, values in eigenvalues.items()}
    bits = assign_bits({c: row["sensitivity"] for c, row in table.items()},
                       {c: row["parameters"] for c, row in table.items()}, config.bit_choices, config.average_bits)
    report = StepReport()
    for component, modules in groups.items():
        table[component]["bits"] = bits[component]
        spec = QuantSpec(bits[component], config.symmetric, "group", config.group_size)
        replace_each(model, modules, lambda _, module, spec=spec: _packed(module, spec), report)
    total = sum(row["parameters"] for row in table.values())
    most_sensitive, finding = _embedding_finding(table)
    report.metrics.update({
        "sensitivity": table,
        "sensitivity_measure": "|mean λ| + std λ" if config.use_variance else "|mean λ|",
        "average_bits": round(sum(row["parameters"] * row["bits"] for row in table.values()) / total, 4),
        "embeddings_most_sensitive": most_sensitive,
        "batches_used": len(batches),
    })
    report.notes.append(finding)
    report.notes.append("bits: " + ", ".join(f"{c}={b}" for c, b in bits.items()) + "; position/type embeddings, "
                        "biases, LayerNorms, pooler and classifier stay fp32")
    report.notes.append("weights stored bit-packed, dequantized to fp32 on load for compute (no sub-8-bit CPU "
                        "kernels): smaller on disk, not faster")
    return report


def plot_sensitivity(metrics: Mapping[str, Any], path: str | Path) -> Path:
    """Bar chart of Ω per component, each bar annotated with its bits; written with the Agg renderer."""
    from matplotlib.figure import Figure  # imported here: matplotlib is slow to import and only plots need it

    table = metrics["sensitivity"]
    names = list(table)
    values = [table[name]["sensitivity"] for name in names]
    figure = Figure(figsize=(max(6.0, 0.45 * len(names) + 2), 4.2), dpi=120)
    axes = figure.subplots()
    bars = axes.bar(range(len(names)), values, color=["tab:orange" if n == "embeddings" else "tab:blue" for n in names])
    for bar, name in zip(bars, names):
        axes.annotate(f"{table[name]['bits']}b", (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                      textcoords="offset points", xytext=(0, 2), ha="center", va="bottom", fontsize=8)
    axes.set_xticks(range(len(names)), names, rotation=60, ha="right", fontsize=8)
    if values and min(values) > 0:
        axes.set_yscale("log")  # eigenvalues often span orders of magnitude across layers
    axes.set_ylabel(f"Ω = {metrics.get('sensitivity_measure', '|mean λ| + std λ')}")
    axes.set_title(f"Q-BERT Hessian sensitivity (average {metrics['average_bits']:.2f} bits)", fontsize=10)
    axes.grid(alpha=0.3, axis="y")
    figure.tight_layout()
    figure.savefig(path)
    return Path(path)
