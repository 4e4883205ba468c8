"""Attention-head analysis: pattern classifier, attention capture, ablation, roles and the written report."""
from __future__ import annotations

import csv

import pytest
import torch

from bertcompress.analysis import write_head_analysis
from bertcompress.analysis.ablation import AblationResult, ablate_heads, heads_disabled
from bertcompress.analysis.attention import TokenLayout, attention_maps
from bertcompress.analysis.heads import FILES
from bertcompress.analysis.patterns import classify_map
from bertcompress.analysis.roles import role_counts, role_label
from bertcompress.arch.spec import get_spec
from bertcompress.core.errors import BertCompressError
from bertcompress.data.batching import encode
from bertcompress.evaluation.metrics import predict
from bertcompress.files import MARKER
from tests.conftest import FAMILIES, random_batch, tiny_model, toy_task

CONTENT = 7


def single_markers() -> torch.Tensor:
    """[CLS] w1..w7 [SEP]"""
    return torch.tensor([1] + [0] * CONTENT + [1]).bool()


def pair_markers() -> torch.Tensor:
    """[CLS] a1..a7 [SEP] b1..b7 [SEP]"""
    return torch.tensor([1] + [0] * CONTENT + [1] + [0] * CONTENT + [1]).bool()


def rows_normalised(scores: torch.Tensor) -> torch.Tensor:
    return scores / scores.sum(-1, keepdim=True)


def diagonal_map(special: torch.Tensor) -> torch.Tensor:
    return torch.eye(len(special))


def vertical_map(special: torch.Tensor) -> torch.Tensor:
    return torch.zeros(len(special), len(special)).index_fill_(1, torch.tensor([0]), 1.0)


def mixed_map(special: torch.Tensor) -> torch.Tensor:
    return (vertical_map(special) + diagonal_map(special)) / 2


def uniform_map(special: torch.Tensor) -> torch.Tensor:
    return torch.full((len(special), len(special)), 1.0 / len(special))


def block_map(special: torch.Tensor) -> torch.Tensor:
    """Every token spreads its attention evenly over the content tokens of its own segment."""
    segments = special.long().cumsum(0)
    content = ~special
    same = (segments[:, None] == segments[None, :]) & content[None, :]
    same[special] = content  # marker rows: anything, they are not scored
    return rows_normalised(same.float())


@pytest.mark.parametrize("build, markers, expected", [
    (diagonal_map, single_markers, "diagonal"),
    (vertical_map, single_markers, "vertical"),
    (mixed_map, single_markers, "vertical+diagonal"),
    (uniform_map, single_markers, "heterogeneous"),
    (block_map, pair_markers, "block"),
    (uniform_map, pair_markers, "heterogeneous"),
])
def test_classifier_labels_synthetic_maps(build, markers, expected):
    special = markers()
    assert classify_map(build(special), special) == expected


def test_block_needs_two_segments():
    # the same block-diagonal map without the middle marker is one segment: no blocks to speak of
    special = pair_markers()
    merged = special.clone()
    merged[CONTENT + 1] = False
    assert classify_map(block_map(special), special) == "block"
    assert classify_map(block_map(special), merged) != "block"


@pytest.mark.parametrize("family", FAMILIES)
def test_attention_capture_is_probabilities_and_leaves_model_unchanged(family):
    model = tiny_model(family)
    batch = random_batch()
    before = model(**batch).logits.detach()
    kernel = model.config._attn_implementation
    maps = attention_maps(model, batch)
    assert len(maps) == len(get_spec(model).layer_list(model))
    for attention in maps:
        assert attention.shape == (3, 4, 10, 10)
        torch.testing.assert_close(attention.sum(-1), torch.ones(3, 4, 10))
        assert attention[0, :, :, 5:].abs().max() < 1e-6  # row 0 is padded from position 5 on
    assert model.config._attn_implementation == kernel and not model.training
    torch.testing.assert_close(model(**batch).logits.detach(), before, rtol=0, atol=0)


def zero_head_columns(model, layer: int, head: int) -> None:
    spec = get_spec(model)
    block = spec.layer_list(model)[layer]
    size = block.get_submodule(spec.self_attention).attention_head_size
    with torch.no_grad():
        block.get_submodule(spec.linears["attention_output"]).weight[:, head * size:(head + 1) * size] = 0


def balanced_bert(tokenizer):
    """A tiny BERT whose classifier bias splits the toy data in half, labelled with its own predictions, so
    that any change in the logits is likely to move accuracy."""
    model = tiny_model("bert")
    data = encode(toy_task().split("train"), tokenizer, 32)
    with torch.no_grad():
        batch = data.batch(range(len(data)))
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        model.classifier.bias[1] -= (logits[:, 1] - logits[:, 0]).median() + 1e-4
    data.labels = predict(model, data)
    return model, data


def test_ablating_a_head_with_zero_output_columns_changes_nothing(tokenizer):
    model, data = balanced_bert(tokenizer)
    zero_head_columns(model, layer=1, head=2)
    batch = random_batch()
    reference = model(**batch).logits
    with heads_disabled(model, {1: [2]}):
        torch.testing.assert_close(model(**batch).logits, reference, rtol=0, atol=0)
    with heads_disabled(model, {1: [1]}):  # a live head: the gates do reach the model
        assert not torch.allclose(model(**batch).logits, reference)
    result = ablate_heads(model, data)
    assert result.base == 1.0 and result.without_head[1][2] == 1.0
    # keeping only the dead head is the same model as disabling the whole layer's attention
    assert result.only_head[1][2] == result.without_layer[1]
    assert min(min(heads) for heads in result.without_head) < 1.0 or min(result.without_layer) < 1.0


def test_improving_heads_and_best_lone_head():
    result = AblationResult(0.8, [[0.7, 0.85], [0.9, 0.8]], [[0.6, 0.75], [0.5, 0.4]], [0.5, 0.6])
    improving = result.improving_heads()
    assert [(layer, head) for layer, head, _ in improving] == [(1, 0), (0, 1)]
    assert [delta for *_, delta in improving] == pytest.approx([0.1, 0.05])
    assert result.best_single_heads() == [(1, 0.75), (0, 0.5)]


def shifted_map(size: int, offset: int) -> torch.Tensor:
    """Each token attends fully to the token `offset` away (itself where that falls off the sequence)."""
    target = torch.arange(size) + offset
    target = torch.where((target >= 0) & (target < size), target, torch.arange(size))
    return torch.nn.functional.one_hot(target, size).float()


@pytest.mark.parametrize("offset, expected", [(-1, "previous"), (1, "next"), (0, "none")])
def test_positional_heads_are_detected(offset, expected):
    special = single_markers()
    layout = TokenLayout.from_special(special)
    counts = role_counts(shifted_map(len(special), offset)[None, None], layout, torch.ones(1, len(special)))
    rows, previous, next_, *_ = counts[0].tolist()
    assert role_label(previous / rows, next_ / rows, 0.0, 0.0) == expected


def test_rare_word_head_points_at_the_rarest_token():
    special = single_markers()
    layout = TokenLayout.from_special(special)
    frequencies = torch.full((1, len(special)), 50.0)
    frequencies[0, 4] = 2.0  # the rarest content token
    towards_rare = torch.zeros(len(special), len(special))
    towards_rare[:, 4] = 1.0
    rows, _, _, rare_rows, rare, chance = role_counts(towards_rare[None, None], layout, frequencies)[0].tolist()
    assert rare_rows == CONTENT and rare == CONTENT and chance == pytest.approx(1.0)
    assert role_label(0.0, 0.0, rare / rare_rows, chance / rare_rows) == "rare-word"
    self_attention = diagonal_map(special)[None, None]
    rows, _, _, rare_rows, rare, chance = role_counts(self_attention, layout, frequencies)[0].tolist()
    assert role_label(0.0, 0.0, rare / rare_rows, chance / rare_rows) == "none"


def test_write_head_analysis_produces_every_file(tmp_path, tokenizer):
    model = tiny_model("bert")
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("the user's own")
    with pytest.raises(BertCompressError, match="not written by bertcompress"):
        write_head_analysis(model, toy_task(), tokenizer, mine, examples=8)
    assert [p.name for p in mine.iterdir()] == ["notes.txt"]
    out = tmp_path / "heads"
    assert write_head_analysis(model, toy_task(), tokenizer, out, examples=8) == out
    with pytest.raises(BertCompressError, match="--overwrite"):
        write_head_analysis(model, toy_task(), tokenizer, out, examples=8)
    assert write_head_analysis(model, toy_task(), tokenizer, out, examples=8, overwrite=True) == out
    assert sorted(p.name for p in out.iterdir() if p.name != MARKER) == sorted(FILES)
    for name in ("head_patterns.csv", "head_roles.csv", "head_ablation.csv"):
        with open(out / name, newline="") as handle:
            rows = list(csv.DictReader(handle))
        assert [(int(r["layer"]), int(r["head"])) for r in rows] == [(l, h) for l in range(2) for h in range(4)]
    summary = (out / "heads.md").read_text()
    assert "Kovaleva" in summary and "Michel" in summary and "Voita" in summary
    assert all((out / name).stat().st_size > 1000 for name in FILES if name.endswith(".png"))
    assert model.config._attn_implementation == "sdpa"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["heads", "mine"]  # no staging left behind
