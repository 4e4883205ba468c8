"""Quant-Noise (Fan et al. 2020): during fine-tuning, quantize a random subset of weight blocks each step
(rate p) with straight-through gradients, so the model learns to tolerate quantizing everything at the end.
Scalar int8 / int4 noise or iPQ (product quantization)."""
from __future__ import annotations

from typing import Literal

import torch
import torch.nn as nn
import torch.nn.utils.parametrize as parametrize
from pydantic import Field

from bertcompress.arch.spec import get_spec
from bertcompress.core.config import MethodConfig
from bertcompress.core.context import Context
from bertcompress.core.registry import register
from bertcompress.core.report import StepReport
from bertcompress.core.targets import select_modules
from bertcompress.methods.common import replace_each
from bertcompress.methods.quantization.int8_modules import DynamicInt8Linear
from bertcompress.methods.quantization.packed import PackedLinear
from bertcompress.methods.quantization.pq import PQLinear, kmeans, reconstruct, subvectors
from bertcompress.methods.quantization.quantizers import QuantSpec, fake_quantize
from bertcompress.training.finetune import finetune
from bertcompress.training.loop import TrainingHook


class QuantNoise(MethodConfig):
    """Train with quantization noise on a random fraction of weight blocks, then quantize all weights."""

    method_name = "quant_noise"
    scheme: Literal["int8", "int4", "ipq"] = Field("int8", description="what the noise and the final step use")
    p: float = Field(0.1, gt=0, le=1, description="fraction of blocks quantized at each training step")
    block_size: int = Field(8, ge=1, description="weights per block along the input dimension (iPQ sub-vector)")
    codebook_size: int = Field(256, ge=2, le=4096, description="iPQ centroids per Linear")
    kmeans_iterations: int = Field(15, ge=1)
    refresh_every: int = Field(100, ge=1, description="steps between iPQ codebook refreshes")
    epochs: float = Field(1.0, gt=0)
    max_steps: int | None = Field(None, gt=0)
    learning_rate: float = Field(2e-5, gt=0, lt=1)
    distill: bool = Field(True, description="distil from the context's fp32 teacher")
    seed: int = 0
    targets: list[str] | None = Field(None, description="default: every encoder Linear")
    ignore: list[str] = Field(default_factory=lambda: ["re:.*classifier.*"])


class BlockNoise(nn.Module):
    """Parametrization: in training, a random p of the blocks take their quantized value (STE)."""

    def __init__(self, config: QuantNoise, weight: torch.Tensor, generator: torch.Generator):
        super().__init__()
        self.config, self.generator = config, generator
        self.spec = QuantSpec(8 if config.scheme == "int8" else 4, True, "channel")
        subvectors(weight, config.block_size)  # validates block_size against this weight
        self.codebook, self.codes = None, None
        if config.scheme == "ipq":
            self.refresh(weight)

    def refresh(self, weight: torch.Tensor) -> None:
        seed = int(torch.randint(0, 2**31 - 1, (1,), generator=self.generator))
        self.codebook, self.codes = kmeans(subvectors(weight, self.config.block_size), self.config.codebook_size,
                                           self.config.kmeans_iterations, seed)

    def quantized(self, weight: torch.Tensor) -> torch.Tensor:
        if self.config.scheme == "ipq":
            return reconstruct(self.codebook, self.codes, tuple(weight.shape))
        return fake_quantize(weight.detach(), self.spec)

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return weight
        rows, cols = weight.shape
        blocks = torch.rand(rows, cols // self.config.block_size, generator=self.generator) < self.config.p
        mask = blocks.repeat_interleave(self.config.block_size, dim=1).to(weight.dtype)
        return weight + mask * (self.quantized(weight) - weight).detach()


class CodebookRefresh(TrainingHook):
    def __init__(self, linears: dict[str, nn.Linear], every: int):
        self.linears, self.every = linears, every

    def after_step(self, model, step, total_steps):
        if step % self.every == 0:
            for linear in self.linears.values():
                with torch.no_grad():
                    linear.parametrizations.weight[0].refresh(linear.parametrizations.weight.original)


def _final(config: QuantNoise):
    if config.scheme == "int8":
        return lambda _, linear: DynamicInt8Linear.from_linear(linear)
    if config.scheme == "int4":
        return lambda _, linear: PackedLinear.from_linear(linear, QuantSpec(4, True, "channel"))
    return lambda _, linear: PQLinear.from_linear(linear, config.block_size, config.codebook_size,
                                                  config.kmeans_iterations, config.seed)


@register(QuantNoise)
def apply_quant_noise(model: nn.Module, config: QuantNoise, ctx: Context) -> StepReport:
    linears = select_modules(model, config.targets or get_spec(model).linear_names(model), config.ignore,
                             kinds=(nn.Linear,))
    generator = torch.Generator().manual_seed(config.seed)
    for linear in linears.values():
        parametrize.register_parametrization(linear, "weight", BlockNoise(config, linear.weight, generator))
    hooks = (CodebookRefresh(linears, config.refresh_every),) if config.scheme == "ipq" else ()
    result = finetune(model, ctx, "quant_noise", epochs=config.epochs, learning_rate=config.learning_rate,
                      max_steps=config.max_steps, distill=config.distill, hooks=hooks)
    for linear in linears.values():
        parametrize.remove_parametrizations(linear, "weight", leave_parametrized=False)
    report = StepReport(method=config.method_name, config=config.to_dict())
    replace_each(model, linears, _final(config), report)
    report.metrics.update({"train_steps": result.steps, "train_seconds": round(result.seconds, 1)})
    storage = {"int8": "int8 weights, int8 GEMMs", "int4": "4-bit packed weights (dequantized for compute)",
               "ipq": f"PQ codebooks ({config.codebook_size} x {config.block_size}) + indices, rebuilt for compute"}
    report.notes.append(f"Quant-Noise p={config.p} for {result.steps} steps; stored as {storage[config.scheme]}; "
                        "sizes include codebooks, indices and scales")
    return report
