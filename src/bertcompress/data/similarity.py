"""Sentence pairs with a similarity score (STS-style), for judging an embedder: each text is embedded on its
own (evaluation.embedding.pair_scores ranks the pairs' cosines against the gold scores)."""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bertcompress.core.errors import BertCompressError


@dataclass(frozen=True)
class ScoredPair:
    text: str
    text_pair: str
    score: float

    @property
    def label(self) -> int:  # shared with classification examples: pairs carry no class
        return -1


def read_scored_pairs(path: Path, rows: list[tuple[int, dict]], text: str, text_pair: str, score: str,
                      cell) -> list[ScoredPair]:
    """Pairs from a table's rows (`cell(path, line, row, column)` reads a checked text cell); the score
    column must hold a finite number."""
    pairs = []
    for line, row in rows:
        raw = cell(path, line, row, score)
        try:
            value = float(raw)
        except ValueError:
            value = math.nan
        if not math.isfinite(value):
            raise BertCompressError(f"{path}:{line}: column {score!r} must be a similarity score (a number), "
                                    f"got {raw!r}")
        pairs.append(ScoredPair(cell(path, line, row, text), cell(path, line, row, text_pair), value))
    if len({p.score for p in pairs}) < 2:
        raise BertCompressError(f"{path}: column {score!r} holds one value for every pair; similarity scores "
                                "must differ to rank pairs by them")
    return pairs


def encode_scored_pairs(pairs: Sequence[ScoredPair], tokenizer, max_length: int):
    """Every first text, then every second text, each on its own (an embedder sees single texts); the gold
    scores go in `extra`."""
    from bertcompress.data.batching import Encoded

    texts = [p.text for p in pairs] + [p.text_pair for p in pairs]
    out = tokenizer(texts, truncation=True, max_length=max_length, padding=False)
    return Encoded(out["input_ids"], out.get("token_type_ids"), [-1] * len(texts), tokenizer.pad_token_id or 0,
                   extra={"similarity_scores": [p.score for p in pairs]})
