"""Post-training dynamic int8: encoder Linears run int8 GEMMs; word embeddings stored as int8 rows."""
from __future__ import annotations

import torch.nn as nn
from pydantic import Field

from bertcompress.core.context import Context
from bertcompress.core.registry import register
from bertcompress.core.report import StepReport
from bertcompress.hardware import has_int8_dot_product
from bertcompress.methods.common import LinearTargets, chosen_linears, replace_each, word_embeddings
from bertcompress.methods.quantization.int8_modules import DynamicInt8Linear, Int8Embedding, quantized_engine


class DynamicInt8(LinearTargets):
    """Dynamic int8 quantization (weights per channel, activations per batch at run time)."""

    method_name = "dynamic_int8"
    embeddings: bool = Field(True, description="also store the word-embedding table as int8 rows")
    reduce_range: bool | None = Field(
        None, description="7-bit activations, which avoid int16 overflow in the kernels of CPUs without int8 dot "
                          "products (VNNI); none: chosen from this CPU (7-bit only where it lacks them)")


@register(DynamicInt8, bytes_of="replaced_modules")
def apply_dynamic_int8(model: nn.Module, config: DynamicInt8, ctx: Context) -> StepReport:
    linears = chosen_linears(model, config)
    report = StepReport()
    reduce = config.reduce_range if config.reduce_range is not None else not has_int8_dot_product()
    replace_each(model, linears, lambda _, linear: DynamicInt8Linear.from_linear(linear, reduce), report)
    if config.embeddings:
        replace_each(model, word_embeddings(model), lambda _, table: Int8Embedding.from_embedding(table), report)
    report.notes.append(f"int8 GEMM kernel: quantized::linear_dynamic on the {quantized_engine()!r} engine, "
                        f"{7 if reduce else 8}-bit activations")
    return report
