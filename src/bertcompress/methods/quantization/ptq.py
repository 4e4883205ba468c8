"""Naive post-training quantization: round-to-nearest weights (the truncation baseline), optionally
static activation quantization with ranges calibrated on N training examples."""
from __future__ import annotations

from typing import Literal

import torch.nn as nn
from pydantic import Field, model_validator

from bertcompress.core.context import Context
from bertcompress.core.registry import register
from bertcompress.core.report import StepReport
from bertcompress.methods.common import LinearTargets, chosen_linears, replace_each, word_embeddings
from bertcompress.methods.quantization.calibration import observe_input_ranges
from bertcompress.methods.quantization.packed import PackedEmbedding, PackedLinear
from bertcompress.methods.quantization.quantizers import QuantSpec


class NaivePTQ(LinearTargets):
    """Round-to-nearest post-training quantization, weight-only or weight + static activation."""

    method_name = "naive_ptq"
    weight_bits: int = Field(8, ge=2, le=8, description="bits per weight, 2..8")
    activation_bits: int | None = Field(None, ge=2, le=8, description="bits for Linear inputs; none = weight-only")
    symmetric: bool = Field(True, description="symmetric (zero point 0) or asymmetric weights")
    granularity: Literal["tensor", "channel", "group"] = Field("channel", description="one range per ...")
    group_size: int = Field(128, ge=1, description="weights per group when granularity is 'group'")
    observer: Literal["minmax", "percentile"] = Field("minmax", description="activation range estimator")
    percentile: float = Field(99.99, gt=50, le=100, description="for the percentile observer")
    calibration_examples: int = Field(256, ge=1, description="training examples used to observe ranges")
    embeddings: bool = Field(False, description="also quantize the word-embedding table (same bits)")

    @model_validator(mode="after")
    def _something_to_quantize(self) -> "NaivePTQ":
        if self.targets == [] and not self.embeddings:
            raise ValueError("targets is empty and embeddings is false: nothing to quantize")
        return self

    def weight_spec(self) -> QuantSpec:
        return QuantSpec(self.weight_bits, self.symmetric, self.granularity, self.group_size)


@register(NaivePTQ, bytes_of="replaced_modules")
def apply_naive_ptq(model: nn.Module, config: NaivePTQ, ctx: Context) -> StepReport:
    linears = {} if config.targets == [] else chosen_linears(model, config)  # []: the embedding table only
    spec = config.weight_spec()
    for name, linear in linears.items():
        spec.check_shape(linear.weight.shape, name)
    ranges, input_spec = {}, None
    if config.activation_bits is not None:
        input_spec = QuantSpec(config.activation_bits, symmetric=False, granularity="tensor")
        ranges = observe_input_ranges(model, linears, ctx, config.calibration_examples, config.observer,
                                      config.percentile, "naive_ptq.activation_bits")
    report = StepReport()
    replace_each(model, linears,
                 lambda name, linear: PackedLinear.from_linear(linear, spec, input_spec, ranges.get(name)), report)
    if config.embeddings:
        replace_each(model, word_embeddings(model), lambda _, table: PackedEmbedding.from_embedding(table, spec),
                     report)
    report.notes.append(f"{config.weight_bits}-bit weights stored bit-packed; dequantized to fp32 on load for "
                        "compute (no sub-8-bit CPU kernels): smaller on disk, not faster")
    if input_spec:
        report.notes.append(f"{config.activation_bits}-bit activations simulated with {config.observer} ranges "
                            f"from {config.calibration_examples} training examples")
    return report
