"""Quant-Noise (Fan et al. 2020): during fine-tuning, quantize a random subset of weight blocks each step
(rate p) with straight-through gradients, so the model learns to tolerate quantizing everything at the end.
Scalar int8 / int4 noise or iPQ (product quantization), on the encoder Linears and the embedding tables;
iPQ ends with centroid fine-tuning (Stock et al.): the codebooks train, the indices stay fixed."""
from __future__ import annotations

from typing import Literal

import torch
import torch.nn as nn
import torch.nn.utils.parametrize as parametrize
from pydantic import Field

from bertcompress.core.context import Context
from bertcompress.core.registry import register
from bertcompress.core.report import StepReport
from bertcompress.methods.common import LinearTargets, chosen_linears, embedding_tables, replace_each
from bertcompress.methods.quantization.int8_modules import DynamicInt8Linear, Int8Embedding
from bertcompress.methods.quantization.packed import PackedEmbedding, PackedLinear
from bertcompress.methods.quantization.pq import (PQEmbedding, PQLinear, ProductQuantized, kmeans, reconstruct,
                                                  subvectors)
from bertcompress.methods.quantization.quantizers import QuantSpec, fake_quantize
from bertcompress.training.finetune import finetune
from bertcompress.training.hooks import StepState, TrainingHook


class QuantNoise(LinearTargets):
    """Train with quantization noise on a random fraction of weight blocks, then quantize all weights."""

    method_name = "quant_noise"
    scheme: Literal["int8", "int4", "ipq"] = Field("int8", description="what the noise and the final step use")
    p: float = Field(0.1, gt=0, le=1, description="fraction of blocks quantized at each training step")
    block_size: int = Field(8, ge=1, description="weights per block along the input dimension (iPQ sub-vector)")
    codebook_size: int = Field(256, ge=2, le=4096, description="iPQ centroids per Linear")
    kmeans_iterations: int = Field(15, ge=1)
    refresh_every: int = Field(100, ge=1, description="steps between iPQ codebook refreshes")
    epochs: float = Field(1.0, ge=0, description="noise training; 0 = quantize after training (the baseline)")
    max_steps: int | None = Field(None, gt=0)
    learning_rate: float = Field(2e-5, gt=0, lt=1)
    embeddings: bool = Field(True, description="noise on and quantize the embedding tables too")
    centroid_epochs: float = Field(0.25, ge=0, description="ipq: fine-tune the codebooks after quantizing (0 = none)")
    centroid_learning_rate: float = Field(1e-4, gt=0, lt=1, description="ipq: rate of centroid fine-tuning")
    distill: bool = Field(True, description="distil from the context's fp32 teacher")
    seed: int = 0


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
    def __init__(self, modules: dict[str, nn.Module], every: int):
        self.modules, self.every = modules, every

    def after_step(self, model: nn.Module, state: StepState) -> None:
        if state.step % self.every == 0:
            for module in self.modules.values():
                with torch.no_grad():
                    module.parametrizations.weight[0].refresh(module.parametrizations.weight.original)


def _final(config: QuantNoise):
    """name, module -> its quantized replacement (Linear or embedding table)."""
    pq = (config.block_size, config.codebook_size, config.kmeans_iterations, config.seed)
    int4 = QuantSpec(4, True, "channel")

    def quantized(_, module: nn.Module) -> nn.Module:
        if isinstance(module, nn.Embedding):
            return {"int8": lambda: Int8Embedding.from_embedding(module),
                    "int4": lambda: PackedEmbedding.from_embedding(module, int4),
                    "ipq": lambda: PQEmbedding.from_embedding(module, *pq)}[config.scheme]()
        return {"int8": lambda: DynamicInt8Linear.from_linear(module),
                "int4": lambda: PackedLinear.from_linear(module, int4),
                "ipq": lambda: PQLinear.from_linear(module, *pq)}[config.scheme]()
    return quantized


def _finetune_centroids(model: nn.Module, config: QuantNoise, ctx: Context, report: StepReport) -> None:
    """Train the codebooks (and the remaining float parameters) with the indices fixed."""
    codebooks = [m.codebook for m in model.modules() if isinstance(m, ProductQuantized)]
    for codebook in codebooks:
        codebook.requires_grad_(True)
    result = finetune(model, ctx, "quant_noise-centroids", epochs=config.centroid_epochs,
                      learning_rate=config.centroid_learning_rate, distill=config.distill)
    for codebook in codebooks:
        codebook.requires_grad_(False)
    report.metrics["centroid_steps"] = result.steps


def _train_with_noise(model: nn.Module, noisy: dict[str, nn.Module], config: QuantNoise,
                      ctx: Context) -> tuple[int, float]:
    generator = torch.Generator().manual_seed(config.seed)
    for module in noisy.values():
        parametrize.register_parametrization(module, "weight", BlockNoise(config, module.weight, generator))
    hooks = (CodebookRefresh(noisy, config.refresh_every),) if config.scheme == "ipq" else ()
    result = finetune(model, ctx, "quant_noise", epochs=config.epochs, learning_rate=config.learning_rate,
                      max_steps=config.max_steps, distill=config.distill, hooks=hooks)
    for module in noisy.values():
        parametrize.remove_parametrizations(module, "weight", leave_parametrized=False)
    return result.steps, result.seconds


@register(QuantNoise, bytes_of="replaced_modules")
def apply_quant_noise(model: nn.Module, config: QuantNoise, ctx: Context) -> StepReport:
    noisy = chosen_linears(model, config)
    if config.embeddings:
        noisy.update(embedding_tables(model))
    steps, seconds = _train_with_noise(model, noisy, config, ctx) if config.epochs > 0 or config.max_steps else (0, 0.0)
    report = StepReport()
    replace_each(model, noisy, _final(config), report)
    report.metrics.update({"train_steps": steps, "train_seconds": round(seconds, 1)})
    if config.scheme == "ipq" and config.centroid_epochs > 0:
        _finetune_centroids(model, config, ctx, report)
    storage = {"int8": "int8 weights, int8 GEMMs", "int4": "4-bit packed weights (dequantized for compute)",
               "ipq": f"PQ codebooks ({config.codebook_size} x {config.block_size}) + indices, rebuilt for compute"}
    tuned = f", then {report.metrics['centroid_steps']} steps of centroid fine-tuning" \
        if "centroid_steps" in report.metrics else ""
    trained = f"Quant-Noise p={config.p} for {steps} steps" if steps else "quantized after training (no noise)"
    report.notes.append(f"{trained}{tuned}; stored as "
                        f"{storage[config.scheme]}; embeddings {'quantized the same way' if config.embeddings else 'fp32'}"
                        "; sizes include codebooks, indices and scales")
    return report
