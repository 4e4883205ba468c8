"""Vocabulary pruning: keep the word-embedding rows of the tokens the task's text uses (plus special tokens,
an optional minimum count and extra text); every other token id maps to [UNK]'s row.

The tokenizer is left as it is: token ids keep their meaning and an id map (one int32 per original id) picks
the kept row. So any step may come before or after (a teacher and a pruned student read the same ids),
every tool that tokenizes keeps working, and text whose tokens were all kept gives exactly the same outputs.
"""
from __future__ import annotations

from collections import Counter
from typing import Any

import torch
import torch.nn as nn
from pydantic import Field

from bertcompress.core.config import MethodConfig
from bertcompress.core.context import Context
from bertcompress.core.errors import BertCompressError
from bertcompress.core.modules import ExportOptions, frozen_embedding, replacement
from bertcompress.core.registry import register
from bertcompress.core.report import StepReport
from bertcompress.core.targets import set_submodule
from bertcompress.methods.common import word_embeddings


class VocabularyPruning(MethodConfig):
    """Keep only the word embeddings of tokens seen in the task's training text (and `extra_text`)."""

    method_name = "vocabulary_pruning"
    min_count: int = Field(1, ge=1, description="keep a token seen at least this many times")
    extra_text: list[str] = Field(default_factory=list, description="more text whose tokens are all kept")
    max_examples: int | None = Field(None, ge=1, description="count tokens in the first N training examples")


@replacement
class PrunedVocabularyEmbedding(nn.Module):
    """The kept rows in `table` (an nn.Embedding, so quantization can replace it) and, per original id, its row."""

    def __init__(self, num_embeddings: int, kept: int, embedding_dim: int, padding_idx: int | None = None):
        super().__init__()
        self.num_embeddings, self.embedding_dim = num_embeddings, embedding_dim
        self.table = nn.Embedding(kept, embedding_dim, padding_idx=padding_idx)
        self.register_buffer("row_of", torch.zeros(num_embeddings, dtype=torch.int32))

    @classmethod
    def from_embedding(cls, embedding: nn.Embedding, keep: list[int], unk_id: int) -> "PrunedVocabularyEmbedding":
        rows = {token: row for row, token in enumerate(keep)}
        padding = rows.get(embedding.padding_idx) if embedding.padding_idx is not None else None
        module = cls(embedding.num_embeddings, len(keep), embedding.embedding_dim, padding)
        with torch.no_grad():
            module.table.weight.copy_(embedding.weight[torch.tensor(keep)])
            module.row_of.fill_(rows[unk_id])
            module.row_of[torch.tensor(keep)] = torch.arange(len(keep), dtype=torch.int32)
        return module

    @property
    def weight(self) -> torch.Tensor:
        """Full-vocabulary view (dropped tokens show [UNK]'s row), for code that reads embedding weights."""
        return self.table.weight[self.row_of.long()]

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.table(self.row_of[input_ids].long())

    def manifest_entry(self) -> dict[str, Any]:
        return {"class": type(self).__name__, "num_embeddings": self.num_embeddings,
                "kept": self.table.num_embeddings, "embedding_dim": self.embedding_dim,
                "padding_idx": self.table.padding_idx}

    @classmethod
    def from_manifest(cls, entry: dict[str, Any]) -> "PrunedVocabularyEmbedding":
        return cls(entry["num_embeddings"], entry["kept"], entry["embedding_dim"], entry["padding_idx"])

    def export_standin(self, options: ExportOptions) -> nn.Module:
        """Itself (a Gather through the id map); plain, the full-vocabulary table (dropped tokens as [UNK])."""
        return frozen_embedding(self.weight, None) if options.plain else self


def token_counts(ctx: Context, config: VocabularyPruning) -> Counter:
    examples = ctx.task.split("train")[: config.max_examples]
    texts = [e.text for e in examples]
    pairs = [e.text_pair for e in examples] if any(e.text_pair is not None for e in examples) else None
    counts: Counter = Counter()
    for ids in ctx.tokenizer(texts, pairs)["input_ids"] if texts else []:
        counts.update(ids)
    return counts


def extra_tokens(tokenizer, texts: list[str]) -> set[int]:
    return {token for ids in (tokenizer(texts)["input_ids"] if texts else []) for token in ids}


@register(VocabularyPruning)
def apply_vocabulary_pruning(model: nn.Module, config: VocabularyPruning, ctx: Context) -> StepReport:
    if ctx.task is None or ctx.tokenizer is None:
        raise BertCompressError("vocabulary_pruning: needs a Context with the task's text and its tokenizer")
    tables = word_embeddings(model)
    if not tables:
        raise BertCompressError("vocabulary_pruning: the word embeddings are already replaced (pruned or "
                                "quantized); prune the vocabulary before quantizing")
    (name, table), = tables.items()
    tokenizer = ctx.tokenizer
    if tokenizer.unk_token_id is None:
        raise BertCompressError("vocabulary_pruning: the tokenizer has no [UNK] token for the dropped ids")
    counts = token_counts(ctx, config)
    keep = {token for token, count in counts.items() if count >= config.min_count}
    keep |= extra_tokens(tokenizer, config.extra_text) | set(tokenizer.all_special_ids) | {tokenizer.unk_token_id}
    if table.padding_idx is not None:
        keep.add(table.padding_idx)
    keep = sorted(t for t in keep if 0 <= t < table.num_embeddings)
    set_submodule(model, name, PrunedVocabularyEmbedding.from_embedding(table, keep, tokenizer.unk_token_id))
    report = StepReport(modules_changed=1)
    report.metrics.update({"tokens_kept": len(keep), "tokens_before": table.num_embeddings})
    report.notes.append(f"kept {len(keep)} of {table.num_embeddings} tokens "
                        f"({100 * len(keep) / table.num_embeddings:.1f}%); other ids read [UNK]'s row")
    return report
