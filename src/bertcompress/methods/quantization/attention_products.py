"""Int8 attention products: query x key and attention weights x value computed on fake-quantized inputs whose
ranges are learned in QAT (Q8BERT's EMA) and fixed after it. Exported as QuantizeLinear/DequantizeLinear
right at each product's inputs, where NNCF puts its own, so OpenVINO runs both products as int8 GEMMs: the
part of NNCF's int8 attention that quantizing the Linears alone lacks."""
from __future__ import annotations

import itertools
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from bertcompress.arch.attention import LAYOUTS, LayoutAttention, layout_of
from bertcompress.arch.spec import get_spec, head_count_of
from bertcompress.core.errors import BertCompressError
from bertcompress.core.modules import replacement
from bertcompress.core.targets import set_submodule
from bertcompress.methods.quantization.ranges import EmaRangeQuantizer

PRODUCT_INPUTS = ("query", "key", "weights", "value")  # weights: the softmax output, never negative


@replacement
class QuantizedProductsAttention(LayoutAttention):
    """Self-attention whose two products take quantized inputs (symmetric query, key, value; unsigned
    softmax weights), each with its own trained range."""

    kind = "quantized attention products"

    def __init__(self, layout: str, hidden_size: int, num_heads: int, head_size: int, bias: bool = True,
                 dropout: float = 0.0, bits: int = 8, decay: float = 0.99):
        super().__init__(layout, hidden_size, num_heads, head_size, num_heads, bias, dropout)
        self.products = nn.ModuleDict({name: EmaRangeQuantizer(bits, unsigned=name == "weights", decay=decay)
                                       for name in PRODUCT_INPUTS})

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None = None,
                encoder_hidden_states: torch.Tensor | None = None, cache: Any = None,
                **kwargs: Any) -> tuple[torch.Tensor, None]:
        self._require_self_attention(encoder_hidden_states, cache)
        query = self.products["query"](self._heads(self._projection(0)(hidden_states)) * self.scaling)
        key = self.products["key"](self._heads(self._projection(1)(hidden_states)).transpose(-1, -2))
        value = self.products["value"](self._heads(self._projection(2)(hidden_states)))
        weights = F.softmax(_masked(query @ key, attention_mask), dim=-1)
        weights = self.dropout(self.products["weights"](weights))  # quantized before dropout's 1/(1-p) scaling
        return self._output(weights @ value), None

    def manifest_entry(self) -> dict[str, Any]:
        first = self.products["query"]
        return {**self.layout_entry(), "bits": first.spec.bits, "decay": first.decay}

    @classmethod
    def from_manifest(cls, entry: dict[str, Any]) -> "QuantizedProductsAttention":
        return cls(entry["layout"], entry["hidden_size"], entry["num_heads"], entry["head_size"], entry["bias"],
                   entry["dropout"], entry["bits"], entry["decay"])


def _masked(scores: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
    """Scores with masked keys pushed to the smallest value, from a bool or an additive mask."""
    if attention_mask is None:
        return scores
    if attention_mask.dtype == torch.bool:
        return scores.masked_fill(~attention_mask, torch.finfo(scores.dtype).min)
    return scores + attention_mask


def from_attention(attention: nn.Module, layout: str, bits: int, decay: float) -> QuantizedProductsAttention:
    """The replacement of a stock self-attention, holding the very same Linears (and their parametrizations)."""
    names = LAYOUTS[layout]
    value = getattr(attention, names[2])
    module = QuantizedProductsAttention(layout, value.in_features, head_count_of(attention),
                                        attention.attention_head_size, value.bias is not None,
                                        attention.dropout.p, bits, decay)
    for name in names:
        if name is not None:
            setattr(module, name, getattr(attention, name))
    device = next(itertools.chain(value.parameters(), value.buffers())).device  # (quantized Linears: buffers)
    return module.to(device).train(attention.training)


def quantize_attention_products(model: nn.Module, bits: int = 8, decay: float = 0.99) -> int:
    """Give every layer's stock self-attention quantized products; returns how many layers changed. Every
    layer is checked before any is replaced."""
    spec = get_spec(model)
    attentions = [layer.get_submodule(spec.self_attention) for layer in spec.layer_list(model)]
    for index, attention in enumerate(attentions):
        if not type(attention).__module__.startswith("transformers."):
            raise BertCompressError(f"attention_products: layer {index}'s self-attention is a "
                                    f"{type(attention).__name__}, not the stock one; quantize the products "
                                    "before other attention changes, or leave attention_products off")
    changed = 0
    for layer, attention in zip(spec.layer_list(model), attentions):
        if head_count_of(attention) > 0:
            set_submodule(layer, spec.self_attention, from_attention(attention, layout_of(spec), bits, decay))
            changed += 1
    return changed
