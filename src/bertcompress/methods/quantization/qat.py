"""Q8BERT quantization-aware training: fake-quantize every Linear's weights and inputs and the embedding
tables during fine-tuning (symmetric, STE, EMA activation ranges), then convert to real int8 modules."""
from __future__ import annotations

from typing import Literal

import torch
import torch.nn as nn
import torch.nn.utils.parametrize as parametrize
from pydantic import Field, model_validator

from bertcompress.core.context import Context
from bertcompress.core.registry import register
from bertcompress.core.report import StepReport
from bertcompress.methods.common import LinearTargets, chosen_linears, embedding_tables, replace_each
from bertcompress.methods.quantization.int8_modules import DynamicInt8Linear, Int8Embedding
from bertcompress.methods.quantization.packed import PackedEmbedding, PackedLinear
from bertcompress.methods.quantization.attention_products import QuantizedProductsAttention, quantize_attention_products
from bertcompress.methods.quantization.quantizers import QuantSpec, fake_quantize, qparams
from bertcompress.methods.quantization.ranges import EmaRangeQuantizer
from bertcompress.training.finetune import finetune


class Q8BertQAT(LinearTargets):
    """Quantization-aware fine-tuning (Zafrir et al., Q8BERT), then conversion to int8 kernels."""

    method_name = "q8bert_qat"
    bits: int = Field(8, ge=2, le=8, description="weight and activation bits (8 converts to int8 GEMMs)")
    granularity: Literal["tensor", "channel"] = Field(
        "channel", description="weight ranges: one per output row (robust to outlier weights), or Q8BERT's one "
                               "per tensor")
    embeddings: bool = Field(True, description="fake-quantize the embedding tables too")
    activations: bool = Field(True, description="fake-quantize Linear inputs")
    activation_ranges: Literal["dynamic", "ema"] = Field(
        "dynamic", description="dynamic: each batch's own min/max, as the int8 kernel does at run time; "
                               "ema: Q8BERT's moving average of |x|max (for static-range deployment)")
    ema_decay: float = Field(0.99, gt=0, lt=1, description="ema: decay of the activation ranges")
    attention_products: bool = Field(
        False, description="also fake-quantize the inputs of query x key and attention weights x value with "
                           "EMA ranges, so that an export runs the attention products as int8 too (needs "
                           "activation_ranges: ema)")
    epochs: float = Field(1.0, gt=0)
    max_steps: int | None = Field(None, gt=0)
    learning_rate: float = Field(2e-5, gt=0, lt=1)
    distill: bool = Field(True, description="distil from the context's fp32 teacher during QAT")

    @model_validator(mode="after")
    def _products_need_fixed_ranges(self) -> "Q8BertQAT":
        if self.attention_products and not (self.activations and self.activation_ranges == "ema"):
            raise ValueError("attention_products: needs activations: true and activation_ranges: ema (the "
                             "products are deployed with fixed ranges)")
        return self


class WeightFakeQuant(nn.Module):
    def __init__(self, spec: QuantSpec):
        super().__init__()
        self.spec = spec

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return fake_quantize(weight, self.spec)


class DynamicInputQuantizer(nn.Module):
    """Fake quantization of a module's input with the batch's own range, asymmetric, as
    `quantized::linear_dynamic` does (uint8 with reduce_range: 128 levels on x86)."""

    def __init__(self, bits: int, reduce_range: bool):
        super().__init__()
        self.spec = QuantSpec(bits - 1 if reduce_range and bits == 8 else bits, False, "tensor")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return fake_quantize(x, self.spec)


def _input_quantizer(config: Q8BertQAT) -> nn.Module:
    if config.activation_ranges == "ema":
        return EmaRangeQuantizer(config.bits, decay=config.ema_decay)
    return DynamicInputQuantizer(config.bits, reduce_range=True)


def _quantize_input(module: nn.Module, inputs: tuple) -> tuple:
    return (module.input_quantizer(inputs[0]), *inputs[1:])


def prepare(model: nn.Module, config: Q8BertQAT) -> tuple[dict, dict, list]:
    if config.attention_products:  # first: the replacement attention takes over the same Linears
        quantize_attention_products(model, config.bits, config.ema_decay)
    linears = chosen_linears(model, config)
    weight_spec = QuantSpec(config.bits, True, config.granularity)
    handles = []
    for linear in linears.values():
        parametrize.register_parametrization(linear, "weight", WeightFakeQuant(weight_spec))
        if config.activations:
            linear.input_quantizer = _input_quantizer(config)
            handles.append(linear.register_forward_pre_hook(_quantize_input))
    tables = embedding_tables(model) if config.embeddings else {}
    for table in tables.values():
        parametrize.register_parametrization(table, "weight", WeightFakeQuant(QuantSpec(config.bits, True, "tensor")))
    return linears, tables, handles


def _bake(module: nn.Module) -> tuple[torch.Tensor, QuantSpec]:
    """Remove the fake-quant parametrization, keeping the quantized values; return the grid's scale."""
    spec = module.parametrizations.weight[0].spec
    parametrize.remove_parametrizations(module, "weight", leave_parametrized=True)
    scale, _ = qparams(module.weight, spec)
    rows = module.weight.shape[0]
    return (scale.expand(rows) if scale.numel() == 1 else scale).contiguous(), spec


def _trained_range(linear: nn.Module) -> tuple[float, float] | None:
    """The EMA input range a Linear learned in training, if any (Q8BERT's static-range deployment)."""
    quantizer = getattr(linear, "input_quantizer", None)
    return quantizer.range() if isinstance(quantizer, EmaRangeQuantizer) else None


def convert(model: nn.Module, linears: dict, tables: dict, handles: list, report: StepReport) -> None:
    for handle in handles:
        handle.remove()
    ranges = {name: _trained_range(linear) for name, linear in linears.items()}
    for linear in linears.values():
        if hasattr(linear, "input_quantizer"):
            del linear.input_quantizer  # the int8 kernel quantizes activations itself, per batch

    def int_linear(name, linear):
        scale, spec = _bake(linear)
        if spec.bits == 8 and ranges[name] is not None:  # trained static ranges are kept: static int8
            return PackedLinear.from_linear(linear, spec, QuantSpec(8, True, "tensor"), ranges[name])
        if spec.bits == 8:
            return DynamicInt8Linear.from_linear(linear, scale=scale)
        return PackedLinear.from_linear(linear, spec)

    def int_table(_, table):
        scale, spec = _bake(table)
        return Int8Embedding.from_embedding(table, scale) if spec.bits == 8 else PackedEmbedding.from_embedding(table, spec)

    replace_each(model, linears, int_linear, report)
    replace_each(model, tables, int_table, report)


@register(Q8BertQAT, bytes_of="replaced_modules")
def apply_q8bert_qat(model: nn.Module, config: Q8BertQAT, ctx: Context) -> StepReport:
    report = StepReport()
    linears, tables, handles = prepare(model, config)
    result = finetune(model, ctx, "q8bert_qat", epochs=config.epochs, learning_rate=config.learning_rate,
                      max_steps=config.max_steps, distill=config.distill)
    report.metrics.update({"train_steps": result.steps, "train_seconds": round(result.seconds, 1),
                           "final_loss": result.losses[-1] if result.losses else None})
    convert(model, linears, tables, handles, report)
    kernel = "int8 GEMMs (quantized::linear_dynamic)" if config.bits == 8 else \
        f"{config.bits}-bit packed weights dequantized for compute"
    if config.bits == 8 and config.activations and config.activation_ranges == "ema":
        kernel = ("static int8 with the trained EMA input ranges, simulated in fp32 in torch; export it "
                  "(`bertcompress export --to onnx|openvino`) for int8 kernels with those ranges")
    inputs = f"{config.activation_ranges} activation ranges" if config.activations else "fp32 activations"
    if config.attention_products:
        layers = sum(isinstance(m, QuantizedProductsAttention) for m in model.modules())
        report.metrics["attention_products_layers"] = layers
        inputs += f" (attention products too, {layers} layers)"
    report.notes.append(f"QAT {result.steps} steps at lr {config.learning_rate:g}"
                        f"{' with distillation' if config.distill else ''}, {inputs}; converted to "
                        f"{kernel}; embeddings {'int8' if config.embeddings else 'fp32'}")
    return report
