import pytest
import torch

import bertcompress as bc
from bertcompress.arch import get_spec
from bertcompress.surgery import factorize, head_count, prune_ffn_neurons, prune_heads, prune_layers
from tests.conftest import FAMILIES, random_batch, tiny_model

TOLERANCE = 1e-5


def logits(model, batch):
    with torch.no_grad():
        return model(**batch).logits


def mask_heads(model, plan):
    """Zero the attention-output columns of the given heads: the same function as removing them."""
    spec = get_spec(model)
    for layer, heads in plan.items():
        block = spec.layer_list(model)[layer]
        size = block.get_submodule(spec.self_attention).attention_head_size
        out = block.get_submodule(spec.linears["attention_output"])
        with torch.no_grad():
            for h in heads:
                out.weight[:, h * size : (h + 1) * size] = 0


@pytest.mark.parametrize("family", FAMILIES)
def test_pruned_heads_equal_masked_heads_and_reload(family, tmp_path):
    plan = {0: [1, 3], 1: [0]}
    masked, pruned = tiny_model(family), tiny_model(family)
    mask_heads(masked, plan)
    before = sum(p.numel() for p in pruned.parameters())
    prune_heads(pruned, plan)
    batch = random_batch()
    assert (logits(masked, batch) - logits(pruned, batch)).abs().max() <= TOLERANCE
    assert [head_count(pruned, i) for i in range(2)] == [2, 3]
    hidden, size = 32, 8
    removed_heads = 3
    assert before - sum(p.numel() for p in pruned.parameters()) == removed_heads * (4 * hidden * size + 3 * size)
    bc.save(pruned, tmp_path / "m")
    assert torch.equal(logits(bc.load(tmp_path / "m"), batch), logits(pruned, batch))


@pytest.mark.parametrize("family", FAMILIES)
def test_pruned_ffn_neurons_equal_masked_neurons_and_reload(family, tmp_path):
    plan = {0: [0, 5, 7], 1: list(range(20))}
    masked, pruned = tiny_model(family), tiny_model(family)
    spec = get_spec(masked)
    for layer, neurons in plan.items():
        out = spec.layer_list(masked)[layer].get_submodule(spec.linears["ffn_out"])
        with torch.no_grad():
            out.weight[:, neurons] = 0
    before = sum(p.numel() for p in pruned.parameters())
    prune_ffn_neurons(pruned, plan)
    batch = random_batch()
    assert (logits(masked, batch) - logits(pruned, batch)).abs().max() <= TOLERANCE
    assert before - sum(p.numel() for p in pruned.parameters()) == 23 * (2 * 32 + 1)
    bc.save(pruned, tmp_path / "m")
    assert torch.equal(logits(bc.load(tmp_path / "m"), batch), logits(pruned, batch))


@pytest.mark.parametrize("family", FAMILIES)
def test_removed_layer_saves_and_reloads(family, tmp_path):
    model = tiny_model(family)
    per_layer = sum(p.numel() for p in get_spec(model).layer_list(model)[0].parameters())
    before = sum(p.numel() for p in model.parameters())
    prune_layers(model, [0])
    assert len(get_spec(model).layer_list(model)) == 1
    assert before - sum(p.numel() for p in model.parameters()) == per_layer
    batch = random_batch()
    bc.save(model, tmp_path / "m")
    assert torch.equal(logits(bc.load(tmp_path / "m"), batch), logits(model, batch))


def test_low_rank_factorisation():
    linear = torch.nn.Linear(32, 48)
    full = factorize(linear, 32)
    x = torch.randn(5, 32)
    assert (full(x) - linear(x)).abs().max() < 1e-4
    small = factorize(linear, 4)
    assert sum(p.numel() for p in small.parameters()) == 4 * (32 + 48) + 48
    error = lambda r: (factorize(linear, r)(x) - linear(x)).norm()  # noqa: E731
    assert error(16) < error(4)


@pytest.mark.parametrize("call, message", [
    (lambda m: prune_heads(m, {0: [0, 1, 2, 3]}), "removing all 4 heads of layer 0"),
    (lambda m: prune_heads(m, {0: [7]}), "layer 0 has heads 0..3; got \\[7\\]"),
    (lambda m: prune_heads(m, {5: [0]}), "layer 5 out of range"),
    (lambda m: prune_ffn_neurons(m, {0: [99]}), "neurons 0..47"),
    (lambda m: prune_layers(m, [0, 1]), "cannot remove every layer"),
    (lambda m: factorize(m.bert.encoder.layer[0].output.dense, 49), "rank: 49 .* outside 1..32"),
])
def test_bad_surgery_is_a_clear_error(call, message):
    with pytest.raises(bc.BertCompressError, match=message):
        call(tiny_model())


def test_surgery_refuses_quantized_layers():
    model = tiny_model()
    bc.compress(model, bc.DynamicInt8(), bc.Context())
    with pytest.raises(bc.BertCompressError, match="prune before quantizing"):
        prune_heads(model, {0: [0]})
