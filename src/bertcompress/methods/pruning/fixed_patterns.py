"""Fixed positional attention patterns (Raganato et al. 2020) and a self-attention module that mixes them
with learned heads: fixed heads keep their value and output weights but have no query or key projections."""
from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from bertcompress.arch.attention import LAYOUTS, LayoutAttention
from bertcompress.arch.spec import head_count_of
from bertcompress.core.errors import BertCompressError
from bertcompress.core.modules import replacement

PATTERNS = ("previous", "next", "current", "left", "right")
_MASKED_AT_OR_BELOW = -1e4  # additive masks put -1e4 (old), finfo.min or -inf on keys that must be ignored


def pattern_targets(name: str, length: int, device: torch.device | None = None) -> torch.Tensor:
    """(length, length) bool: which key positions each query position attends to under the pattern."""
    query = torch.arange(length, device=device)[:, None]
    key = torch.arange(length, device=device)[None, :]
    rules = {"previous": key == query - 1, "next": key == query + 1, "current": key == query,
             "left": key < query, "right": key > query}
    if name not in rules:
        raise BertCompressError(f"patterns: unknown pattern {name!r}; choose from {', '.join(PATTERNS)}")
    return rules[name]


def allowed_keys(attention_mask: torch.Tensor | None, batch: int, length: int,
                 device: torch.device) -> torch.Tensor:
    """(batch, 1, length, length) bool from whatever mask the model passes (None, bool, or additive float)."""
    if attention_mask is None:
        return torch.ones(batch, 1, length, length, dtype=torch.bool, device=device)
    allowed = attention_mask if attention_mask.dtype == torch.bool else attention_mask > _MASKED_AT_OR_BELOW
    return allowed.expand(batch, 1, length, length)


def pattern_weights(names: tuple[str, ...], allowed: torch.Tensor) -> torch.Tensor:
    """(batch, heads, length, length) row-stochastic attention over allowed keys, one pattern per head.

    A query with no allowed target (the first token's 'previous', the last real token's 'next') attends to
    itself, so every row still sums to one.
    """
    length = allowed.shape[-1]
    targets = torch.stack([pattern_targets(name, length, allowed.device) for name in names])
    chosen = targets[None] & allowed
    itself = torch.eye(length, dtype=torch.bool, device=allowed.device)
    chosen = chosen | (itself & ~chosen.any(-1, keepdim=True))  # logical ops: ONNX Runtime has no bool Where
    weights = chosen.float()
    return weights / weights.sum(-1, keepdim=True)


@replacement
class FixedPatternAttention(LayoutAttention):
    """Self-attention whose first `learned_heads` heads are ordinary and whose other heads follow fixed
    patterns. Query/key Linears hold only the learned heads' rows; value (and output) keep every head."""

    kind = "fixed attention patterns"

    def __init__(self, layout: str, hidden_size: int, num_heads: int, head_size: int, learned_heads: int,
                 patterns: tuple[str, ...] | list[str], bias: bool = True, dropout: float = 0.0):
        if len(patterns) != num_heads - learned_heads:
            raise BertCompressError(f"{num_heads - learned_heads} fixed heads need as many patterns, "
                                    f"got {len(patterns)}")
        super().__init__(layout, hidden_size, num_heads, head_size, learned_heads, bias, dropout)
        self.learned_heads, self.patterns = learned_heads, tuple(patterns)

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None = None,
                encoder_hidden_states: torch.Tensor | None = None, cache: Any = None,
                **kwargs: Any) -> tuple[torch.Tensor, None]:
        self._require_self_attention(encoder_hidden_states, cache)
        batch, length = hidden_states.shape[:2]
        value = self._heads(self._projection(2)(hidden_states))
        parts = []
        if self.learned_heads:
            query = self._heads(self._projection(0)(hidden_states))
            key = self._heads(self._projection(1)(hidden_states))
            # the same kernel the stock sdpa path runs; it accepts bool and additive masks alike
            parts.append(F.scaled_dot_product_attention(
                query, key, value[:, : self.learned_heads], attn_mask=attention_mask,
                dropout_p=self.dropout.p if self.training else 0.0, scale=self.scaling))
        if self.patterns:
            allowed = allowed_keys(attention_mask, batch, length, hidden_states.device)
            weights = pattern_weights(self.patterns, allowed).to(value.dtype)
            parts.append(weights @ value[:, self.learned_heads :])
        return self._output(torch.cat(parts, dim=1)), None

    def extra_repr(self) -> str:
        return f"learned_heads={self.learned_heads}, patterns={list(self.patterns)}"

    def manifest_entry(self) -> dict[str, Any]:
        return {**self.layout_entry(), "learned_heads": self.learned_heads, "patterns": list(self.patterns)}

    @classmethod
    def from_manifest(cls, entry: dict[str, Any]) -> "FixedPatternAttention":
        return cls(entry["layout"], entry["hidden_size"], entry["num_heads"], entry["head_size"],
                   entry["learned_heads"], entry["patterns"], entry["bias"], entry["dropout"])


def _rows(linear: nn.Linear, index: torch.Tensor, into: nn.Linear) -> None:
    with torch.no_grad():
        into.weight.copy_(linear.weight[index])
        if linear.bias is not None:
            into.bias.copy_(linear.bias[index])


def head_rows(heads: list[int], size: int) -> torch.Tensor:
    """Row (or column) indices of the given heads, in that order."""
    return torch.cat([torch.arange(h * size, (h + 1) * size) for h in heads]) if heads else torch.zeros(0).long()


def from_attention(attention: nn.Module, layout: str, learned: list[int],
                   patterns: tuple[str, ...]) -> FixedPatternAttention:
    """Build the replacement from a stock self-attention: heads are reordered learned-first, fixed after
    (the caller must reorder the attention-output columns the same way when it lives outside, as in BERT)."""
    names = LAYOUTS[layout]
    size = attention.attention_head_size
    count = head_count_of(attention)
    fixed = [h for h in range(count) if h not in learned]
    value = getattr(attention, names[2])
    module = FixedPatternAttention(layout, value.in_features, count, size, len(learned), patterns,
                                   bias=value.bias is not None, dropout=attention.dropout.p)
    module.to(device=value.weight.device, dtype=value.weight.dtype).train(attention.training)
    learned_rows, order = head_rows(learned, size), head_rows(learned + fixed, size)
    _rows(getattr(attention, names[0]), learned_rows, module._projection(0))
    _rows(getattr(attention, names[1]), learned_rows, module._projection(1))
    _rows(value, order, module._projection(2))
    if names[3] is not None:
        source, target = getattr(attention, names[3]), getattr(module, names[3])
        with torch.no_grad():
            target.weight.copy_(source.weight[:, order])
            if source.bias is not None:
                target.bias.copy_(source.bias)
    return module
