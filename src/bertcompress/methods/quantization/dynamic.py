"""Post-training dynamic int8: encoder Linears run int8 GEMMs; word embeddings stored as int8 rows."""
from __future__ import annotations

import torch.nn as nn
from pydantic import Field

from bertcompress.core.context import Context
from bertcompress.core.registry import register
from bertcompress.core.report import StepReport
from bertcompress.methods.common import LinearTargets, chosen_linears, replace_each, word_embeddings
from bertcompress.methods.quantization.int8_modules import DynamicInt8Linear, Int8Embedding, quantized_engine


class DynamicInt8(LinearTargets):
    """Dynamic int8 quantization (weights per channel, activations per batch at run time)."""

    method_name = "dynamic_int8"
    embeddings: bool = Field(True, description="also store the word-embedding table as int8 rows")
    reduce_range: bool = Field(
        True, description="7-bit activations: avoids int16 overflow in AVX2 kernels on CPUs without VNNI")


@register(DynamicInt8, bytes_of="replaced_modules")
def apply_dynamic_int8(model: nn.Module, config: DynamicInt8, ctx: Context) -> StepReport:
    linears = chosen_linears(model, config)
    report = StepReport()
    replace_each(model, linears, lambda _, linear: DynamicInt8Linear.from_linear(linear, config.reduce_range), report)
    if config.embeddings:
        replace_each(model, word_embeddings(model), lambda _, table: Int8Embedding.from_embedding(table), report)
    report.notes.append(f"int8 GEMM kernel: quantized::linear_dynamic on the {quantized_engine()!r} engine")
    return report
