"""Vocabulary pruning: text whose tokens were kept gives exactly the same outputs, a dropped token reads
[UNK]'s row, the table shrinks, and the result composes with int8 embeddings, saves and reloads."""
import pytest
import torch

import bertcompress as bc
from bertcompress.core.errors import BertCompressError
from bertcompress.data.tasks import Example, Task
from bertcompress.evaluation.size import stored_bytes
from bertcompress.methods.pruning.vocabulary import PrunedVocabularyEmbedding
from tests.conftest import FAMILIES, tiny_model

TRAIN = ["good movie", "bad plot", "the actor was fine", "a dull story"]


def task(texts=TRAIN) -> Task:
    examples = [Example(text, i % 2) for i, text in enumerate(texts)]
    return Task("t", ["neg", "pos"], {"train": examples, "validation": examples, "test": examples})


def logits(model, tokenizer, text: str) -> torch.Tensor:
    batch = tokenizer([text], return_tensors="pt")
    with torch.no_grad():
        return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits


@pytest.mark.parametrize("family", FAMILIES)
def test_kept_text_gives_identical_outputs_and_dropped_tokens_read_unk(family, tokenizer):
    model, original = tiny_model(family), tiny_model(family)
    report = bc.compress(model, bc.VocabularyPruning(), bc.Context(task=task(), tokenizer=tokenizer))
    seen = {t for text in TRAIN for t in tokenizer(text)["input_ids"]}
    assert report.metrics["tokens_kept"] == len(seen | set(tokenizer.all_special_ids))
    for text in ("good movie", "the plot was a dull story", "fine actor"):  # only kept tokens
        assert torch.equal(logits(model, tokenizer, text), logits(original, tokenizer, text))
    unseen = "superb film"  # neither word occurs in the training text
    table = original.get_input_embeddings().weight
    with torch.no_grad():  # the original with every dropped token's row replaced by [UNK]'s
        dropped = torch.tensor(sorted(set(range(table.shape[0])) - seen - set(tokenizer.all_special_ids)))
        table[dropped] = table[tokenizer.unk_token_id].clone()
    assert torch.equal(logits(model, tokenizer, unseen), logits(original, tokenizer, unseen))


def test_table_shrinks_and_min_count_and_extra_text_choose_the_rows(tokenizer):
    model = tiny_model()
    before = stored_bytes(model)
    texts = ["good good good movie", "good bad"]
    config = bc.VocabularyPruning(min_count=2, extra_text=["superb"])
    bc.compress(model, config, bc.Context(task=task(texts), tokenizer=tokenizer))
    table = model.bert.embeddings.word_embeddings
    assert isinstance(table, PrunedVocabularyEmbedding)
    kept = set(torch.nonzero(table.row_of != table.row_of[tokenizer.unk_token_id]).flatten().tolist())
    good, movie, superb = (tokenizer.convert_tokens_to_ids(w) for w in ("good", "movie", "superb"))
    assert good in kept and superb in kept and movie not in kept  # "movie" occurs once
    assert stored_bytes(model) < before


def test_composes_with_int8_embeddings_and_reloads(tokenizer, tmp_path):
    model = tiny_model()
    ctx = bc.Context(task=task(), tokenizer=tokenizer)
    bc.compress(model, bc.VocabularyPruning(), ctx)
    pruned_only = stored_bytes(model)
    bc.compress(model, bc.DynamicInt8(embeddings=True), ctx)
    assert type(model.bert.embeddings.word_embeddings.table).__name__ == "Int8Embedding"
    assert stored_bytes(model) < pruned_only
    bc.save(model, tmp_path / "m", tokenizer)
    reloaded = bc.load(tmp_path / "m")
    assert torch.equal(logits(reloaded, tokenizer, "good movie"), logits(model, tokenizer, "good movie"))


def test_needs_task_text_and_a_plain_table(tokenizer):
    with pytest.raises(BertCompressError, match="tokenizer"):
        bc.compress(tiny_model(), bc.VocabularyPruning())
    model = tiny_model()
    ctx = bc.Context(task=task(), tokenizer=tokenizer)
    bc.compress(model, bc.DynamicInt8(embeddings=True), ctx)
    with pytest.raises(BertCompressError, match="before quantizing"):
        bc.compress(model, bc.VocabularyPruning(), ctx)
