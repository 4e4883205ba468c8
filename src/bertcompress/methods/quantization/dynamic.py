"""Post-training dynamic int8: encoder Linears run int8 GEMMs; word embeddings stored as int8 rows."""
from __future__ import annotations

import torch.nn as nn
from pydantic import Field

from bertcompress.arch.spec import get_spec
from bertcompress.core.config import MethodConfig
from bertcompress.core.context import Context
from bertcompress.core.registry import register
from bertcompress.core.report import StepReport
from bertcompress.core.targets import select_modules, set_submodule
from bertcompress.evaluation.size import stored_bytes
from bertcompress.methods.quantization.int8_modules import DynamicInt8Linear, Int8Embedding, quantized_engine


class DynamicInt8(MethodConfig):
    """Dynamic int8 quantization (weights per channel, activations per batch at run time)."""

    method_name = "dynamic_int8"
    targets: list[str] | None = Field(
        None, description="module names, class names or 're:' regexes; default: every encoder Linear")
    ignore: list[str] = Field(default_factory=lambda: ["re:.*classifier.*"],
                              description="patterns never quantized (the task head stays fp32)")
    embeddings: bool = Field(True, description="also store the word-embedding table as int8 rows")
    reduce_range: bool = Field(
        True, description="7-bit activations: avoids int16 overflow in AVX2 kernels on CPUs without VNNI")


def _word_embeddings(model: nn.Module) -> tuple[str, nn.Embedding]:
    spec = get_spec(model)
    name = f"{spec.prefix(model)}{spec.embeddings}.word_embeddings"
    return name, model.get_submodule(name)


@register(DynamicInt8)
def apply_dynamic_int8(model: nn.Module, config: DynamicInt8, ctx: Context) -> StepReport:
    spec = get_spec(model)
    targets = config.targets or spec.linear_names(model)
    linears = select_modules(model, targets, config.ignore, kinds=(nn.Linear,))
    report = StepReport(method=config.method_name, config=config.to_dict())
    for name, linear in linears.items():
        report.bytes_before += stored_bytes(linear)
        quantized = DynamicInt8Linear.from_linear(linear, config.reduce_range)
        report.bytes_after += stored_bytes(quantized)
        set_submodule(model, name, quantized)
    report.modules_changed = len(linears)
    if config.embeddings:
        name, embedding = _word_embeddings(model)
        if isinstance(embedding, nn.Embedding):
            report.bytes_before += stored_bytes(embedding)
            quantized_embedding = Int8Embedding.from_embedding(embedding)
            report.bytes_after += stored_bytes(quantized_embedding)
            set_submodule(model, name, quantized_embedding)
            report.modules_changed += 1
    report.notes.append(f"int8 GEMM kernel: quantized::linear_dynamic on the {quantized_engine()!r} engine")
    return report
