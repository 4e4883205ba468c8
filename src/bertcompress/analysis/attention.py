"""Per-layer, per-head attention probabilities from any supported encoder, and the token layout
(real tokens, special tokens, segments) that the pattern and role analyses need."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn as nn

from bertcompress.arch.spec import get_spec
from bertcompress.core.errors import BertCompressError
from bertcompress.data.batching import Encoded, model_inputs

EAGER = "eager"


@contextmanager
def eager_attention(model: nn.Module) -> Iterator[nn.Module]:
    """Temporarily switch to the eager attention kernel: in transformers 5 the sdpa path silently returns
    no attention probabilities (an empty tuple) even with `output_attentions=True`."""
    previous = model.config._attn_implementation
    if previous != EAGER:
        model.set_attn_implementation(EAGER)
    try:
        yield model
    finally:
        if previous != EAGER:
            model.set_attn_implementation(previous)


def attention_maps(model: nn.Module, batch: dict[str, torch.Tensor]) -> list[torch.Tensor]:
    """One float tensor (batch, heads, seq, seq) per layer, rows summing to 1 over keys; the model is unchanged
    afterwards (same attention kernel, same train/eval mode)."""
    layers = len(get_spec(model).layer_list(model))
    device = next(model.parameters()).device
    inputs = {k: v.to(device) for k, v in model_inputs(batch).items()}
    was_training = model.training
    model.eval()
    try:
        with eager_attention(model), torch.inference_mode():
            attentions = model(**inputs, output_attentions=True).attentions
    finally:
        model.train(was_training)
    if attentions is None or len(attentions) != layers or any(a is None for a in attentions):
        raise BertCompressError(f"{type(model).__name__} returned no attention probabilities for "
                                f"{layers} layers; its attention kernel may not support output_attentions")
    return [a.detach().float().cpu() for a in attentions]


@dataclass
class TokenLayout:
    """Boolean (batch, seq) masks of real and special tokens, and a segment id per position."""

    valid: torch.Tensor
    special: torch.Tensor
    segments: torch.Tensor

    @property
    def content(self) -> torch.Tensor:
        """Real, non-special tokens: the query rows every analysis averages over."""
        return self.valid & ~self.special

    def segment_counts(self) -> torch.Tensor:
        """Number of distinct content segments per example (2 for a sentence pair)."""
        return torch.tensor([len(set(s[c].tolist())) for s, c in zip(self.segments, self.content)])

    @classmethod
    def from_special(cls, special: torch.Tensor) -> "TokenLayout":
        """Layout of a single unpadded sequence given its special-token mask (for synthetic maps)."""
        special = special.bool()[None]
        return cls(torch.ones_like(special), special, special.long().cumsum(-1))


def special_token_ids(tokenizer) -> set[int]:
    """Ids of sentence markers ([CLS]/[SEP], <s>/</s>); [UNK] is special to the tokenizer but is content here."""
    names = ("cls_token_id", "sep_token_id", "bos_token_id", "eos_token_id")
    return {i for i in (getattr(tokenizer, n, None) for n in names) if i is not None}


def layout_of(batch: dict[str, torch.Tensor], special_ids: set[int]) -> TokenLayout:
    valid = batch["attention_mask"].bool()
    special = torch.isin(batch["input_ids"], torch.tensor(sorted(special_ids), dtype=torch.long)) & valid
    # segments are the runs between markers, so pairs split the same way with or without token_type_ids
    return TokenLayout(valid, special, special.long().cumsum(-1))


def iter_batches(data: Encoded, batch_size: int) -> Iterator[dict[str, torch.Tensor]]:
    for start in range(0, len(data), batch_size):
        yield data.batch(list(range(start, min(start + batch_size, len(data)))))
