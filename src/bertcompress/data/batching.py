"""Tokenise once, pad per batch (dynamic padding)."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from bertcompress.data.tasks import Example

IGNORED = -100  # token positions without a label (transformers' convention)


@dataclass
class Encoded:
    """Token ids of a whole split, unpadded, with labels: one int per example (classification), a (start,
    end) pair (QA), or one int per token (token classification, padded with IGNORED)."""

    ids: list[list[int]]
    type_ids: list[list[int]] | None
    labels: list
    pad_id: int
    extra: dict = field(default_factory=dict)  # what maps outputs back to text (QA windows, word ids)

    def __len__(self) -> int:
        return len(self.ids)

    def batch(self, indices: Sequence[int]) -> dict[str, torch.Tensor]:
        width = max(len(self.ids[i]) for i in indices)
        input_ids = torch.full((len(indices), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(indices), width), dtype=torch.long)
        type_ids = torch.zeros((len(indices), width), dtype=torch.long)
        for row, i in enumerate(indices):
            n = len(self.ids[i])
            input_ids[row, :n] = torch.tensor(self.ids[i])
            mask[row, :n] = 1
            if self.type_ids is not None:
                type_ids[row, :n] = torch.tensor(self.type_ids[i])
        batch = {"input_ids": input_ids, "attention_mask": mask, "labels": self._labels(indices, width)}
        if self.type_ids is not None:
            batch["token_type_ids"] = type_ids
        return batch


    def _labels(self, indices: Sequence[int], width: int) -> torch.Tensor:
        chosen = [self.labels[i] for i in indices]
        if chosen and isinstance(chosen[0], list):  # per token
            padded = torch.full((len(chosen), width), IGNORED, dtype=torch.long)
            for row, tags in enumerate(chosen):
                padded[row, : len(tags)] = torch.tensor(tags, dtype=torch.long)
            return padded
        return torch.tensor(chosen, dtype=torch.long)


def encode(examples: Sequence[Example], tokenizer, max_length: int) -> Encoded:
    """Model inputs for a split: classification examples (single texts or pairs) and, by their type,
    questions (windows with a document stride), tagged sentences (labels aligned to word pieces) or scored
    pairs (each text on its own, for an embedder)."""
    from bertcompress.data.qa import QAExample, encode_questions
    from bertcompress.data.similarity import ScoredPair, encode_scored_pairs
    from bertcompress.data.tagging import TaggedExample, encode_tagged

    if examples and isinstance(examples[0], QAExample):
        return encode_questions(list(examples), tokenizer, max_length)
    if examples and isinstance(examples[0], TaggedExample):
        return encode_tagged(list(examples), tokenizer, max_length)
    if examples and isinstance(examples[0], ScoredPair):
        return encode_scored_pairs(examples, tokenizer, max_length)
    texts = [e.text for e in examples]
    pairs = [e.text_pair for e in examples]
    has_pairs = any(p is not None for p in pairs)
    out = tokenizer(texts, [p or "" for p in pairs] if has_pairs else None, truncation=True,
                    max_length=max_length, padding=False)
    type_ids = out.get("token_type_ids")
    return Encoded(out["input_ids"], type_ids, [e.label for e in examples], tokenizer.pad_token_id or 0)


def model_inputs(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v for k, v in batch.items() if k != "labels"}
