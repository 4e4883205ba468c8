"""Post-training dynamic int8: encoder Linears run int8 GEMMs; word embeddings stored as int8 rows."""
from __future__ import annotations

import copy

import torch
import torch.nn as nn
from pydantic import Field

from bertcompress.core.context import Context
from bertcompress.core.registry import register
from bertcompress.core.report import StepReport
from bertcompress.core.task_types import prediction, task_type_of
from bertcompress.hardware import has_int8_dot_product
from bertcompress.methods.common import LinearTargets, chosen_linears, replace_each, word_embeddings
from bertcompress.methods.quantization.int8_modules import DynamicInt8Linear, Int8Embedding, quantized_engine


class DynamicInt8(LinearTargets):
    """Dynamic int8 quantization (weights per channel, activations per batch at run time)."""

    method_name = "dynamic_int8"
    embeddings: bool = Field(True, description="also store the word-embedding table as int8 rows")
    reduce_range: bool | None = Field(
        None, description="7-bit activations, which avoid int16 overflow in the kernels of CPUs without int8 dot "
                          "products (VNNI); none: 8-bit where the CPU has them; where it lacks them, whichever of "
                          "7 and 8 bits keeps the outputs closer on a few training examples (7 without data)")
    calibration_examples: int = Field(64, ge=1, description="training examples that choose the activation bits")


@register(DynamicInt8, bytes_of="replaced_modules")
def apply_dynamic_int8(model: nn.Module, config: DynamicInt8, ctx: Context) -> StepReport:
    linears = chosen_linears(model, config)
    report = StepReport()
    reduce, errors = _activation_bits(model, config, ctx)
    if errors:
        report.metrics["output_error_by_activation_bits"] = errors
    replace_each(model, linears, lambda _, linear: DynamicInt8Linear.from_linear(linear, reduce), report)
    if config.embeddings:
        replace_each(model, word_embeddings(model), lambda _, table: Int8Embedding.from_embedding(table), report)
    report.notes.append(f"int8 GEMM kernel: quantized::linear_dynamic on the {quantized_engine()!r} engine, "
                        f"{7 if reduce else 8}-bit activations")
    return report


def _activation_bits(model: nn.Module, config: DynamicInt8, ctx: Context) -> tuple[bool, dict]:
    """(reduce_range, the mean squared output error of 7 and 8 bits where they were compared). On CPUs
    without VNNI, 7 bits rule out int16 overflow in the kernel, but on the packaged MiniLM embedder 8 bits
    kept the vectors far closer (mean cosine 0.992 vs 0.972, bench/embeddings.py), so the two are measured."""
    if config.reduce_range is not None:
        return config.reduce_range, {}
    if has_int8_dot_product() or ctx.task is None or ctx.tokenizer is None:
        return not has_int8_dot_product(), {}
    from bertcompress.data.batching import encode, model_inputs

    data = encode(list(ctx.task.split("train"))[: config.calibration_examples], ctx.tokenizer,
                  ctx.train.max_length if ctx.train else 64)
    batch = model_inputs(data.batch(list(range(min(len(data), config.calibration_examples)))))
    errors = {bits: _output_error(model, config, batch, bits == 7) for bits in (7, 8)}
    return errors[7] < errors[8], {str(bits): error for bits, error in errors.items()}


@torch.inference_mode()
def _output_error(model: nn.Module, config: DynamicInt8, batch: dict, reduce: bool) -> float:
    """Mean squared difference between the model's prediction tensor and its int8 copy's on one batch."""
    task_type, mask = task_type_of(model), batch["attention_mask"]
    quantized = copy.deepcopy(model)
    for name, linear in chosen_linears(quantized, config).items():
        quantized.set_submodule(name, DynamicInt8Linear.from_linear(linear, reduce))
    reference = prediction(task_type, model(**batch), mask)
    return float((prediction(task_type, quantized(**batch), mask) - reference).pow(2).mean())
