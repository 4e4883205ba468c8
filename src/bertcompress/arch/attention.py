"""A base for self-attention modules of our own (fixed patterns, quantized attention products) that keep the
attribute names of the module they replace (BERT's `query`, DistilBERT's `q_lin`, ...), so the architecture
table still finds every Linear and head surgery still finds the head count."""
from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn

from bertcompress.arch.spec import ArchSpec
from bertcompress.core.errors import BertCompressError

# attribute names of the projections, and of the output Linear when the self-attention owns it
LAYOUTS = {"bert": ("query", "key", "value", None), "distilbert": ("q_lin", "k_lin", "v_lin", "out_lin")}


def layout_of(spec: ArchSpec) -> str:
    return "distilbert" if spec.family == "distilbert" else "bert"


class LayoutAttention(nn.Module):
    """Query/key Linears of `query_heads` heads, value (and output, where the layout owns it) of all heads."""

    kind = "these attention modules"  # what errors call a subclass

    def __init__(self, layout: str, hidden_size: int, num_heads: int, head_size: int, query_heads: int,
                 bias: bool = True, dropout: float = 0.0):
        super().__init__()
        self.layout, self.hidden_size = layout, hidden_size
        self.attention_head_size, self.all_head_size = head_size, num_heads * head_size
        self.scaling = head_size**-0.5
        setattr(self, "n_heads" if layout == "distilbert" else "num_attention_heads", num_heads)
        query, key, value, output = LAYOUTS[layout]
        setattr(self, query, nn.Linear(hidden_size, query_heads * head_size, bias=bias))
        setattr(self, key, nn.Linear(hidden_size, query_heads * head_size, bias=bias))
        setattr(self, value, nn.Linear(hidden_size, self.all_head_size, bias=bias))
        if output is not None:
            setattr(self, output, nn.Linear(self.all_head_size, hidden_size, bias=bias))
        self.dropout = nn.Dropout(dropout)

    @property
    def num_heads(self) -> int:
        return self.all_head_size // self.attention_head_size

    def _projection(self, role: int) -> nn.Module:
        """0 query, 1 key, 2 value."""
        return getattr(self, LAYOUTS[self.layout][role])

    def _require_self_attention(self, encoder_hidden_states: Any, cache: Any) -> None:
        """These modules replace encoder self-attention only: no cross-attention, no decoding cache."""
        if encoder_hidden_states is not None or cache is not None:
            raise BertCompressError(f"{self.kind} support encoder self-attention only")

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        """(batch, length, heads · size) -> (batch, heads, length, size)."""
        return x.view(*x.shape[:2], -1, self.attention_head_size).transpose(1, 2)

    def _output(self, context: torch.Tensor) -> torch.Tensor:
        """(batch, heads, length, size) -> (batch, length, hidden), through the output Linear if owned here."""
        batch, _, length, _ = context.shape
        merged = context.transpose(1, 2).reshape(batch, length, self.all_head_size)
        output = LAYOUTS[self.layout][3]
        return getattr(self, output)(merged) if output else merged

    def layout_entry(self) -> dict[str, Any]:
        """The manifest fields every subclass shares."""
        return {"class": type(self).__name__, "layout": self.layout, "hidden_size": self.hidden_size,
                "num_heads": self.num_heads, "head_size": self.attention_head_size,
                "bias": self._projection(2).bias is not None, "dropout": self.dropout.p}
