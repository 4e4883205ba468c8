import pytest
import torch.nn as nn
from transformers import GPT2Config, GPT2ForSequenceClassification

from bertcompress.arch import get_spec
from bertcompress.core.errors import BertCompressError
from bertcompress.evaluation.size import counts_by_component
from tests.conftest import FAMILIES, tiny_model


@pytest.mark.parametrize("family", FAMILIES)
def test_linear_roles_resolve_to_linears(family):
    model = tiny_model(family)
    spec = get_spec(model)
    names = spec.linear_names(model)
    assert len(names) == 6 * len(spec.layer_list(model))
    for name in names:
        assert isinstance(model.get_submodule(name), nn.Linear)
    attention = spec.layer_list(model)[0].get_submodule(spec.self_attention)
    assert getattr(attention, "num_attention_heads", getattr(attention, "n_heads", None)) == 4


@pytest.mark.parametrize("family", FAMILIES)
def test_components_cover_every_parameter(family):
    model = tiny_model(family)
    counts = counts_by_component(model)["parameters"]
    assert counts["embeddings"] > 0 and counts["attention"] > 0 and counts["ffn"] > 0
    total = sum(p.numel() for p in model.parameters())
    assert counts["total"] == total
    spec = get_spec(model)
    ffn = sum(model.get_submodule(n).weight.numel() + model.get_submodule(n).bias.numel()
              for n in spec.linear_names(model, ("ffn_in", "ffn_out")))
    assert counts["ffn"] >= ffn


def test_model_outside_the_family_is_rejected():
    model = GPT2ForSequenceClassification(GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=32))
    with pytest.raises(BertCompressError, match="'gpt2' is not a supported BERT-family encoder"):
        get_spec(model)
