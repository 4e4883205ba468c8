"""Fixed encoder attention (Raganato et al. 2020): keep k learned heads per layer, replace the others by
fixed positional patterns (previous / next / current token, left / right context), remove their query and
key weights, then fine-tune."""
from __future__ import annotations

from typing import Literal

import torch
import torch.nn as nn
from pydantic import Field

from bertcompress.arch.attention import layout_of
from bertcompress.arch.spec import get_spec
from bertcompress.core.config import MethodConfig
from bertcompress.core.context import Context
from bertcompress.core.errors import BertCompressError
from bertcompress.core.registry import register
from bertcompress.core.targets import set_submodule
from bertcompress.core.report import StepReport
from bertcompress.data.batching import encode
from bertcompress.methods.pruning.checks import require_stock_attention
from bertcompress.methods.pruning.fixed_patterns import FixedPatternAttention, from_attention, head_rows
from bertcompress.methods.pruning.importance import gradient_importance
from bertcompress.surgery import head_count
from bertcompress.training.finetune import finetune

Pattern = Literal["previous", "next", "current", "left", "right"]


class FixedAttention(MethodConfig):
    """Replace all but `learnable_heads` heads per layer by fixed attention patterns, then fine-tune."""

    method_name = "fixed_attention"
    learnable_heads: int = Field(1, ge=1, description="heads per layer that keep learned attention (at least 1, so "
                                 "every layer keeps its query and key Linears)")
    selection: Literal["gradient", "first"] = Field("gradient", description="which heads stay learned: the most "
                                                    "important by gradient (Michel et al.) or the first k")
    patterns: tuple[Pattern, ...] = Field(("current", "previous", "next", "left", "right"), min_length=1,
                                          description="patterns given to the fixed heads of a layer, cycling")
    calibration_examples: int = Field(512, ge=1, description="training examples for gradient selection")
    epochs: float = Field(1.0, ge=0, description="fine-tuning after the replacement (0 = none)")
    max_steps: int | None = Field(None, gt=0)
    learning_rate: float = Field(3e-5, gt=0, lt=1)
    distill: bool = Field(True, description="distil from the context's teacher while fine-tuning")


def _learned_heads(model: nn.Module, config: FixedAttention, ctx: Context) -> list[list[int]]:
    """Per layer, the heads that keep learned attention, most important first."""
    counts = [head_count(model, i) for i in range(len(get_spec(model).layer_list(model)))]
    if config.learnable_heads > min(counts):
        raise BertCompressError(f"fixed_attention.learnable_heads: {config.learnable_heads} is more than the "
                                f"{min(counts)} heads of the smallest layer")
    if config.selection == "first" or all(config.learnable_heads == c for c in counts):
        return [list(range(config.learnable_heads)) for _ in counts]
    if ctx.task is None or ctx.tokenizer is None:
        raise BertCompressError("fixed_attention.selection: 'gradient' needs data; pass a Context with a task and "
                                "a tokenizer, or use selection: first")
    data = encode(ctx.task.split("train")[: config.calibration_examples], ctx.tokenizer,
                  ctx.train.max_length if ctx.train else 64)
    scores = gradient_importance(model, data, "heads")
    return [score.argsort(descending=True)[: config.learnable_heads].tolist() for score in scores]


def replace_layer(model: nn.Module, index: int, learned: list[int], patterns: tuple[str, ...]) -> None:
    """Swap one layer's self-attention for a FixedPatternAttention (learned heads first, then fixed)."""
    spec = get_spec(model)
    block = spec.layer_list(model)[index]
    attention = block.get_submodule(spec.self_attention)
    if isinstance(attention, FixedPatternAttention):
        raise BertCompressError(f"fixed_attention: layer {index} already has fixed attention patterns")
    count = head_count(model, index)
    fixed = count - len(learned)
    cycle = tuple(patterns[i % len(patterns)] for i in range(fixed))
    module = from_attention(attention, layout_of(spec), learned, cycle)
    if layout_of(spec) == "bert":  # BERT's output Linear lives beside the self-attention: reorder its columns
        output = block.get_submodule(spec.linears["attention_output"])
        order = head_rows(learned + [h for h in range(count) if h not in learned], attention.attention_head_size)
        with torch.no_grad():
            output.weight.copy_(output.weight[:, order])
    set_submodule(block, spec.self_attention, module)


def apply_fixed_attention_patterns(model: nn.Module, learned: list[list[int]],
                                   patterns: tuple[str, ...]) -> list[list[str]]:
    """Replace every layer; returns the pattern of each head in the new order ('learned' first)."""
    layout = []
    for index, heads in enumerate(learned):
        replace_layer(model, index, heads, patterns)
        attention = get_spec(model).layer_list(model)[index].get_submodule(get_spec(model).self_attention)
        layout.append(["learned"] * len(heads) + list(attention.patterns))
    return layout


def _check_training_context(config: FixedAttention, ctx: Context) -> None:
    """Fail before the model is changed, not after the replacement (finetune checks only when called)."""
    if not (config.epochs > 0 or config.max_steps):
        return
    if ctx.task is None or ctx.tokenizer is None:
        raise BertCompressError("fixed_attention: fine-tuning needs a Context with a task and a tokenizer "
                                "(or set epochs: 0)")
    if config.distill and ctx.teacher is None:
        raise BertCompressError("fixed_attention.distill: no teacher in the Context; set distill: false or give "
                                "a teacher")


@register(FixedAttention)
def apply_fixed_attention(model: nn.Module, config: FixedAttention, ctx: Context) -> StepReport:
    report = StepReport()
    require_stock_attention(model, config.method_name)
    _check_training_context(config, ctx)
    learned = _learned_heads(model, config, ctx)
    layout = apply_fixed_attention_patterns(model, learned, config.patterns)
    report.modules_changed = len(learned)
    steps = 0
    if config.epochs > 0 or config.max_steps:
        steps = finetune(model, ctx, config.method_name, epochs=config.epochs or 1.0,
                         learning_rate=config.learning_rate, max_steps=config.max_steps,
                         distill=config.distill).steps
    report.metrics.update({"learned_heads": learned, "head_patterns": layout, "train_steps": steps})
    report.notes.append(f"kept learned attention in heads {learned} (per layer, original indices); the other "
                        f"heads follow {list(config.patterns)}; fine-tuned {steps} steps")
    return report
