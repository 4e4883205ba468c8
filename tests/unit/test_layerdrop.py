import pytest
import torch

import bertcompress as bc
from bertcompress.methods.pruning.layers import LayerDropList, kept_layers
from tests.conftest import random_batch, tiny_model, toy_task


def test_kept_layer_strategies():
    assert kept_layers(6, 3, "every_other") == [1, 3, 5]
    assert kept_layers(6, 2, "first") == [0, 1] and kept_layers(6, 2, "last") == [4, 5]
    assert kept_layers(6, 6, "every_other") == list(range(6))
    with pytest.raises(bc.BertCompressError, match="keep: 7 is more than the model's 6 layers"):
        kept_layers(6, 7, "first")


def test_layerdrop_list_skips_layers_only_in_training():
    layers = torch.nn.ModuleList([torch.nn.Identity() for _ in range(6)])
    layers.__class__, layers.p = LayerDropList, 0.5
    torch.manual_seed(0)
    counts = [len(list(iter(layers))) for _ in range(200)]
    assert 2.4 < sum(counts) / len(counts) < 3.6 and min(counts) >= 1
    layers.eval()
    assert len(list(iter(layers))) == 6


def test_layerdrop_trains_then_cuts(tokenizer):
    model = tiny_model()
    ctx = bc.Context(task=toy_task(), tokenizer=tokenizer, train=bc.TrainConfig(batch_size=8, max_length=16))
    names = [n for n, _ in model.named_parameters()]
    report = bc.compress(model, bc.LayerDrop(p=0.5, max_steps=4, keep=1, strategy="last"), ctx)
    assert report.metrics["kept_layers"] == [1] and len(model.bert.encoder.layer) == 1
    assert type(model.bert.encoder.layer) is torch.nn.ModuleList
    assert model.config.num_hidden_layers == 1
    assert len(names) > len(list(model.named_parameters()))
    assert model(**random_batch()).logits.isfinite().all()
