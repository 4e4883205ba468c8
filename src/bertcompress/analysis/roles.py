"""Voita et al. (2019) head roles that need no parser: positional heads (the strongest attention goes to the
previous or next token) and rare-word heads (the strongest attention goes to the sentence's rarest token).

Both are measured on content query tokens (not markers, not padding), taking each row's argmax key:
  - previous / next fraction: share of rows whose argmax is the token at i-1 / i+1 (a marker counts, it is
    still a relative position). A head is positional when the share is >= POSITIONAL_MIN (Voita: 90%).
  - rare fraction: share of rows whose argmax is the example's rarest content token, token frequencies counted
    over the task's training split (ties: every token with the minimum count is 'rarest'; examples whose
    content tokens all tie are skipped, they carry no signal). Chance is the share a uniformly random content
    key would get. A head is rare-word when the fraction is >= RARE_MIN and >= RARE_LIFT times chance.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import torch

from bertcompress.analysis.attention import TokenLayout

POSITIONAL_MIN = 0.9  # Voita et al.: "at least 90% of the time" the maximum goes to one relative position
RARE_MIN = 0.5  # the rarest token is the strongest target for most query tokens
RARE_LIFT = 2.0  # ... and at least twice as often as a random content key would be
COUNTS = ("rows", "previous", "next", "rare_rows", "rare", "rare_chance")


def rarest_tokens(frequencies: torch.Tensor, layout: TokenLayout) -> torch.Tensor:
    """Bool (batch, seq): content tokens with the lowest training frequency of their example."""
    masked = torch.where(layout.content, frequencies.float(), torch.tensor(float("inf")))
    return layout.content & (masked == masked.min(-1, keepdim=True).values)


def role_counts(attention: torch.Tensor, layout: TokenLayout, frequencies: torch.Tensor) -> torch.Tensor:
    """(heads, len(COUNTS)) counts for maps (batch, heads, seq, seq) and per-token frequencies (batch, seq)."""
    top = attention.argmax(-1)  # (batch, heads, seq)
    positions = torch.arange(attention.shape[-1])
    rows = layout.content[:, None].expand_as(top)
    rarest = rarest_tokens(frequencies, layout)
    informative = rarest.sum(-1) < layout.content.sum(-1)
    rare_rows = rows & informative[:, None, None]
    hit_rare = torch.gather(rarest[:, None].expand(-1, top.shape[1], -1), -1, top)
    chance = rarest.sum(-1).float() / layout.content.sum(-1).clamp_min(1)
    per_head = [rows, rows & (top == positions - 1), rows & (top == positions + 1), rare_rows,
                rare_rows & hit_rare, rare_rows.float() * chance[:, None, None]]
    return torch.stack([c.float().sum((0, 2)) for c in per_head], dim=-1)


def role_label(previous: float, next_: float, rare: float, rare_chance: float) -> str:
    """'previous', 'next', 'rare-word', a '+'-joined combination, or 'none' (thresholds in the docstring)."""
    roles = []
    if previous >= POSITIONAL_MIN:
        roles.append("previous")
    if next_ >= POSITIONAL_MIN:
        roles.append("next")
    if rare >= RARE_MIN and rare >= RARE_LIFT * rare_chance:
        roles.append("rare-word")
    return "+".join(roles) or "none"


def token_frequencies(ids: list[list[int]]) -> Counter:
    """How often each token id occurs in a tokenised split (markers included; they are never content)."""
    return Counter(token for row in ids for token in row)


def frequency_tensor(input_ids: torch.Tensor, counts: Counter) -> torch.Tensor:
    return torch.tensor([[counts.get(token, 0) for token in row] for row in input_ids.tolist()], dtype=torch.float)


@dataclass
class RoleTally:
    """Per-layer role counts (heads, len(COUNTS)), accumulated over batches."""

    counts: list[torch.Tensor] = field(default_factory=list)

    def add(self, attentions: list[torch.Tensor], layout: TokenLayout, frequencies: torch.Tensor) -> None:
        current = [role_counts(a, layout, frequencies) for a in attentions]
        self.counts = current if not self.counts else [a + b for a, b in zip(self.counts, current)]

    def rows(self) -> list[dict]:
        result = []
        for layer, counts in enumerate(self.counts):
            for head, c in enumerate(counts.tolist()):
                c = dict(zip(COUNTS, c))
                fractions = {"previous": c["previous"] / max(c["rows"], 1), "next": c["next"] / max(c["rows"], 1),
                             "rare": c["rare"] / max(c["rare_rows"], 1),
                             "rare_chance": c["rare_chance"] / max(c["rare_rows"], 1)}
                label = role_label(fractions["previous"], fractions["next"], fractions["rare"],
                                   fractions["rare_chance"])
                result.append({"layer": layer, "head": head, "role": label,
                               **{f"frac_{k}": round(v, 4) for k, v in fractions.items()}})
        return result
