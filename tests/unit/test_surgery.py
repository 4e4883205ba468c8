import json
import re

import pytest
import torch

import bertcompress as bc
from bertcompress.arch import get_spec
from bertcompress.core.modules import ExportOptions, rebuild
from bertcompress.core.targets import set_submodule
from bertcompress.methods.quantization.int8_modules import DynamicInt8Linear
from bertcompress.surgery import (LowRankLinear, factorize, head_count, prune_ffn_neurons, prune_heads,
                                  prune_layers)
from bertcompress.surgery.linear import keep_columns, keep_rows
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


@pytest.mark.parametrize("family", FAMILIES)
def test_removed_layers_leave_the_others_in_order_and_renumbered(family):
    model = tiny_model(family, layers=3)
    spec = get_spec(model)
    first, _, third = spec.layer_list(model)
    prune_layers(model, [1])
    assert list(spec.layer_list(model)) == [first, third]  # the very same modules, not the removed one
    assert getattr(model.config, spec.layers_key) == 2
    # attention caches key on layer_idx: the kept third layer must now answer to index 1
    indices = [(i, m.layer_idx) for i, layer in enumerate(spec.layer_list(model))
               for m in layer.modules() if hasattr(m, "layer_idx")]
    assert all(i == idx for i, idx in indices)
    assert family == "distilbert" or [i for i, _ in indices] == [0, 1]


@pytest.mark.parametrize("bias", [True, False])
def test_kept_rows_and_columns_compute_the_selected_part(bias):
    linear = torch.nn.Linear(6, 5, bias=bias)
    index = torch.tensor([0, 2, 3])
    x = torch.randn(4, 6)
    rows, columns = keep_rows(linear, index), keep_columns(linear, index)
    # a bias-free Linear must stay bias-free: a fresh bias would add random values to every output
    assert (rows.bias is None, columns.bias is None) == (not bias, not bias)
    with torch.no_grad():
        assert (rows(x) - linear(x)[:, index]).abs().max() <= TOLERANCE
        dropped = x.clone()
        dropped[:, [1, 4, 5]] = 0  # dropping input columns = feeding zeros there
        assert (columns(x[:, index]) - linear(dropped)).abs().max() <= TOLERANCE


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("rank", [1, 4, 32])
def test_factorisation_is_the_best_rank_r_approximation(rank, bias):
    linear = torch.nn.Linear(32, 48, bias=bias)
    pair = factorize(linear, rank)
    assert (pair.in_features, pair.out_features, pair.rank) == (32, 48, rank)
    assert (pair.up.bias is None) == (not bias) and pair.down.bias is None
    product = pair.up.weight @ pair.down.weight
    # Eckart-Young: the truncated SVD misses exactly the dropped singular values
    dropped = torch.linalg.svdvals(linear.weight.detach())[rank:].norm()
    assert torch.isclose((product - linear.weight).norm(), dropped, rtol=1e-3, atol=1e-4)
    x = torch.randn(5, 32)
    with torch.no_grad():
        expected = x @ product.T + (linear.bias if bias else 0)
        assert (pair(x) - expected).abs().max() < 1e-4


@pytest.mark.parametrize("bias", [True, False])
def test_low_rank_linear_rebuilds_from_its_manifest_entry(bias):
    pair = factorize(torch.nn.Linear(12, 10, bias=bias), 3)
    entry = json.loads(json.dumps(pair.manifest_entry()))  # as saving writes it and loading reads it
    rebuilt = rebuild(entry)
    assert type(rebuilt) is LowRankLinear
    assert (rebuilt.in_features, rebuilt.out_features, rebuilt.rank) == (12, 10, 3)
    rebuilt.load_state_dict(pair.state_dict())  # strict: the rebuilt shell has exactly the saved tensors
    x = torch.randn(4, 12)
    with torch.no_grad():
        assert torch.equal(rebuilt(x), pair(x))


def test_factorised_model_saves_and_reloads(tmp_path):
    model = tiny_model()
    name = "bert.encoder.layer.0.output.dense"
    set_submodule(model, name, factorize(model.get_submodule(name), 4, name))
    bc.save(model, tmp_path / "m")
    loaded = bc.load(tmp_path / "m")
    assert type(loaded.get_submodule(name)) is LowRankLinear
    batch = random_batch()
    assert torch.equal(logits(loaded, batch), logits(model, batch))


@pytest.mark.parametrize("bias", [True, False])
def test_low_rank_export_standin_is_itself_or_one_equal_plain_linear(bias):
    pair = factorize(torch.nn.Linear(12, 10, bias=bias), 3)
    assert pair.export_standin(ExportOptions()) is pair  # two MatMuls keep the speed
    plain = pair.export_standin(ExportOptions(plain=True))
    assert type(plain) is torch.nn.Linear and (plain.bias is None) == (not bias)
    x = torch.randn(4, 12)
    with torch.no_grad():
        assert (plain(x) - pair(x)).abs().max() <= TOLERANCE


@pytest.mark.parametrize("factor", ["down", "up"])
def test_low_rank_pair_with_a_quantized_factor_has_no_plain_standin(factor):
    pair = factorize(torch.nn.Linear(12, 10), 3)
    setattr(pair, factor, DynamicInt8Linear.from_linear(getattr(pair, factor)))  # one factor is enough
    assert pair.export_standin(ExportOptions()) is pair
    with pytest.raises(bc.BertCompressError, match="a low-rank pair whose factors were replaced has no stock torch"):
        pair.export_standin(ExportOptions(plain=True))


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
    (lambda m: prune_heads(m, {0: [0, 1, 2, 3]}),
     "removing all 4 heads of layer 0 is not allowed; remove the layer instead"),
    (lambda m: prune_heads(m, {0: [7]}), "layer 0 has heads 0..3; got \\[7\\]"),
    (lambda m: prune_heads(m, {0: [4]}), "layer 0 has heads 0..3; got \\[4\\]"),  # one past the last
    (lambda m: prune_heads(m, {5: [0]}), "layer 5 out of range"),
    (lambda m: prune_heads(m, {2: [0]}), "heads: layer 2 out of range 0..1"),
    (lambda m: prune_ffn_neurons(m, {0: [99]}), "neurons 0..47"),
    (lambda m: prune_ffn_neurons(m, {0: [48]}), "neurons 0..47; got \\[48\\]"),
    # a long list of bad neurons is cut to its first five
    (lambda m: prune_ffn_neurons(m, {0: range(48, 60)}), "got \\[48, 49, 50, 51, 52\\]"),
    (lambda m: prune_ffn_neurons(m, {0: range(48)}), "removing every FFN neuron of layer 0"),
    (lambda m: prune_ffn_neurons(m, {2: [0]}), "neurons: layer 2 out of range 0..1"),
    (lambda m: prune_layers(m, [0, 1]), "cannot remove every layer"),
    (lambda m: prune_layers(m, [2]), "layers: indices \\[2\\] out of range 0..1"),
    (lambda m: factorize(m.bert.encoder.layer[0].output.dense, 49), "rank: 49 for linear is outside 1..32"),
    (lambda m: factorize(factorize(m.bert.encoder.layer[0].output.dense, 4), 2, "output.dense"),
     "output.dense is a LowRankLinear"),
])
def test_bad_surgery_is_a_clear_error(call, message):
    with pytest.raises(bc.BertCompressError, match=message):
        call(tiny_model())


def test_surgery_refuses_quantized_layers():
    model = tiny_model()
    bc.compress(model, bc.DynamicInt8(), bc.Context())
    quantized = "attention.self.query is a DynamicInt8Linear; .*prune before quantizing"
    with pytest.raises(bc.BertCompressError, match=quantized):
        prune_heads(model, {0: [0]})


@pytest.mark.parametrize("surgery, role", [
    (lambda m: prune_heads(m, {0: [0]}), "query"),
    (lambda m: prune_heads(m, {0: [0]}), "attention_output"),
    (lambda m: prune_ffn_neurons(m, {0: [0]}), "ffn_in"),
    (lambda m: prune_ffn_neurons(m, {0: [0]}), "ffn_out"),
    (lambda m: prune_heads(m, {1: [0], 0: [0]}), "attention_output"),  # layer 1 would be cut first
    (lambda m: prune_ffn_neurons(m, {1: [0], 0: [0]}), "ffn_out"),
])
def test_surgery_names_the_factorised_linear_it_cannot_shrink(surgery, role):
    model = tiny_model()
    spec = get_spec(model)
    path = spec.linears[role]
    block = spec.layer_list(model)[0]
    set_submodule(block, path, factorize(block.get_submodule(path), 4))
    before = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    batch = random_batch()
    with torch.no_grad():
        logits = model(**batch).logits
    with pytest.raises(bc.BertCompressError, match=f"{re.escape(path)} is a LowRankLinear"):
        surgery(model)
    # the plan is refused before any Linear is cut: the model is whole and runs as before
    after = model.state_dict()
    assert after.keys() == before.keys() and all(torch.equal(after[k], before[k]) for k in before)
    with torch.no_grad():
        assert torch.equal(model(**batch).logits, logits)
