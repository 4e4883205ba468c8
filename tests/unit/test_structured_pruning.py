import copy

import pytest
import torch

import bertcompress as bc
from bertcompress.data.batching import encode
from bertcompress.methods.pruning.importance import gradient_importance, lowest_units, magnitude_importance, unit_gates
from bertcompress.surgery import head_count
from tests.conftest import random_batch, tiny_model, toy_task


def test_gates_of_one_leave_outputs_unchanged():
    model = tiny_model()
    batch = random_batch()
    with torch.no_grad():
        reference = model(**batch).logits
    for kind in ("heads", "ffn"):
        with unit_gates(model, kind) as gates, torch.no_grad():
            assert [g.numel() for g in gates] == ([4, 4] if kind == "heads" else [48, 48])
            assert torch.equal(model(**batch).logits, reference)


def test_a_dead_head_has_zero_importance_and_goes_first(tokenizer):
    model = tiny_model()
    out = model.bert.encoder.layer[1].attention.output.dense
    with torch.no_grad():
        out.weight[:, 16:24] = 0  # head 2 of layer 1 contributes nothing
    data = encode(toy_task().split("train"), tokenizer, 16)
    scores = gradient_importance(model, data, "heads")
    assert scores[1][2] == 0 and all(torch.isfinite(s).all() for s in scores)
    assert lowest_units(scores, 1, "global") == {0: [], 1: [2]}
    magnitude = magnitude_importance(model, "heads")
    assert magnitude[1].argmin() == 2


def test_global_ranking_keeps_one_unit_per_layer():
    scores = [torch.tensor([0.1, 0.2, 0.3]), torch.tensor([0.9, 0.8, 0.7])]
    assert lowest_units(scores, 4, "global") == {0: [0, 1], 1: [2, 1]}
    assert lowest_units(scores, 2, "layer") == {0: [0], 1: [2]}


@pytest.mark.parametrize("iterations", [1, 2])
def test_head_pruning_removes_the_fraction(tokenizer, iterations):
    model = tiny_model()
    teacher = copy.deepcopy(model)
    ctx = bc.Context(task=toy_task(), tokenizer=tokenizer, teacher=teacher,
                     train=bc.TrainConfig(batch_size=8, max_length=16))
    report = bc.compress(model, bc.HeadPruning(fraction=0.5, iterations=iterations, recovery_epochs=0.2), ctx)
    assert sum(head_count(model, i) for i in range(2)) == 4
    assert report.metrics["heads_removed"] == 4 and report.bytes_after < report.bytes_before


def test_ffn_pruning_by_magnitude_needs_no_data():
    model = tiny_model()
    report = bc.compress(model, bc.FFNPruning(fraction=0.25, importance="magnitude", scope="layer"), bc.Context())
    assert report.metrics["ffn_per_layer"] == [36, 36]


def test_bad_input():
    with pytest.raises(bc.BertCompressError, match="HeadPruning.fraction"):
        bc.HeadPruning(fraction=1.0)
    with pytest.raises(bc.BertCompressError, match="head_pruning.importance: 'gradient' needs data"):
        bc.compress(tiny_model(), bc.HeadPruning(), bc.Context())
