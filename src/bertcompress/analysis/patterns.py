"""Kovaleva et al. (2019) attention patterns: a rule-based classifier that labels each head's map on an
example as vertical, diagonal, vertical+diagonal, block or heterogeneous; a head's label is its majority.

Three masses are measured per example, each the attention a content (non-special, non-padding) query token
gives to a kind of key, averaged over the example's content query tokens:
  - vertical: keys that are sentence markers ([CLS]/[SEP], <s>/</s>), the columns that form stripes;
  - diagonal: content keys at relative position -1, 0 or +1 (disjoint from vertical, so the two add up to <= 1);
  - block: content keys in the query's own segment (the run of tokens between two markers).
Rules, first match wins:
  1. vertical >= MIXED_MIN and diagonal >= MIXED_MIN        -> vertical+diagonal
  2. vertical >= DOMINANT_MIN                               -> vertical
  3. diagonal >= DOMINANT_MIN                               -> diagonal
  4. two or more segments and block >= BLOCK_MIN            -> block
  5. otherwise                                              -> heterogeneous
Block needs a sentence pair: with one segment every content key is in the query's segment, so intra-segment
attention cannot be told apart from attention spread everywhere.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from bertcompress.analysis.attention import TokenLayout

PATTERNS = ("vertical", "diagonal", "vertical+diagonal", "block", "heterogeneous")
DOMINANT_MIN = 0.5  # one kind of key holds at least half of the attention mass
MIXED_MIN = 0.3  # markers and neighbours each hold a large share (together >= 0.6) without either dominating
BLOCK_MIN = 0.8  # far above what uniform attention gives a segment (about its share of the tokens)
MASSES = ("vertical", "diagonal", "block")


def pattern_masses(attention: torch.Tensor, layout: TokenLayout) -> dict[str, torch.Tensor]:
    """Vertical, diagonal and block masses (batch, heads) of attention maps (batch, heads, seq, seq)."""
    positions = torch.arange(attention.shape[-1])
    near = (positions[:, None] - positions[None, :]).abs() <= 1
    content_keys = layout.content[:, None, :]
    same_segment = layout.segments[:, :, None] == layout.segments[:, None, :]
    keys = {"vertical": layout.special[:, None, :].expand_as(same_segment),
            "diagonal": near[None] & content_keys, "block": same_segment & content_keys}
    rows = layout.content.float()[:, None]
    count = rows.sum(-1).clamp_min(1)
    return {name: ((attention * mask[:, None].float()).sum(-1) * rows).sum(-1) / count
            for name, mask in keys.items()}


def pattern_label(vertical: float, diagonal: float, block: float, segments: int) -> str:
    """The rule table in the module docstring."""
    if vertical >= MIXED_MIN and diagonal >= MIXED_MIN:
        return "vertical+diagonal"
    if vertical >= DOMINANT_MIN:
        return "vertical"
    if diagonal >= DOMINANT_MIN:
        return "diagonal"
    if segments >= 2 and block >= BLOCK_MIN:
        return "block"
    return "heterogeneous"


def classify_map(attention: torch.Tensor, special: torch.Tensor) -> str:
    """Label one unpadded (seq, seq) map whose sentence markers are `special` (bool, seq)."""
    layout = TokenLayout.from_special(special)
    masses = pattern_masses(attention[None, None].float(), layout)
    values = {k: float(v[0, 0]) for k, v in masses.items()}
    return pattern_label(**values, segments=int(layout.segment_counts()[0]))


@dataclass
class PatternTally:
    """Per-layer label counts (heads, patterns) and summed masses (heads, 3), accumulated over batches."""

    counts: list[torch.Tensor] = field(default_factory=list)
    masses: list[torch.Tensor] = field(default_factory=list)
    examples: int = 0

    def add(self, attentions: list[torch.Tensor], layout: TokenLayout) -> None:
        segments = layout.segment_counts().tolist()
        if not self.counts:
            self.counts = [torch.zeros(a.shape[1], len(PATTERNS), dtype=torch.long) for a in attentions]
            self.masses = [torch.zeros(a.shape[1], len(MASSES)) for a in attentions]
        for layer, attention in enumerate(attentions):
            masses = pattern_masses(attention, layout)
            stacked = torch.stack([masses[m] for m in MASSES], dim=-1)  # (batch, heads, 3)
            self.masses[layer] += stacked.sum(0)
            for example, per_head in enumerate(stacked.tolist()):
                for head, values in enumerate(per_head):
                    label = pattern_label(*values, segments=segments[example])
                    self.counts[layer][head, PATTERNS.index(label)] += 1
        self.examples += len(segments)

    def rows(self) -> list[dict]:
        """One row per head: majority label (ties go to the earlier pattern), label fractions, mean masses."""
        rows = []
        for layer, (counts, masses) in enumerate(zip(self.counts, self.masses)):
            for head in range(counts.shape[0]):
                share = counts[head].float() / max(self.examples, 1)
                row = {"layer": layer, "head": head, "label": PATTERNS[int(counts[head].argmax())]}
                row.update({f"frac_{p}": round(float(s), 4) for p, s in zip(PATTERNS, share)})
                mean = masses[head] / max(self.examples, 1)
                row.update({f"mass_{m}": round(float(v), 4) for m, v in zip(MASSES, mean)})
                rows.append(row)
        return rows


def counts_per_layer(rows: list[dict]) -> dict[int, dict[str, int]]:
    """How many heads of each layer carry each majority label."""
    table: dict[int, dict[str, int]] = {}
    for row in rows:
        layer = table.setdefault(row["layer"], dict.fromkeys(PATTERNS, 0))
        layer[row["label"]] += 1
    return table
