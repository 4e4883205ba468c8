"""Property-based tests (hypothesis): quantization error bounds over shapes and bit widths, pruning plans that
never empty a layer, and save/load round trips of models with per-layer shapes drawn at random."""
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import bertcompress as bc
from bertcompress.methods.pruning.importance import lowest_units
from bertcompress.methods.quantization.quantizers import QuantSpec, dequantize, pack_bits, quantize, unpack_bits
from bertcompress.surgery import head_count, prune_ffn_neurons, prune_heads
from tests.conftest import FAMILIES, random_batch, tiny_model

# reproducible in CI (no example database, the same examples every run), and quick
QUICK = settings(max_examples=60, deadline=None, database=None, derandomize=True)
SLOW = settings(max_examples=12, deadline=None, database=None, derandomize=True)


@st.composite
def specs_and_weights(draw):
    bits = draw(st.integers(2, 8))
    symmetric = draw(st.booleans())
    granularity = draw(st.sampled_from(["tensor", "channel", "group"]))
    group_size = draw(st.sampled_from([1, 2, 4, 8, 16]))
    rows, groups = draw(st.integers(1, 9)), draw(st.integers(1, 6))
    spec = QuantSpec(bits, symmetric, granularity, group_size)
    generator = torch.Generator().manual_seed(draw(st.integers(0, 2**31)))
    weight = torch.randn(rows, groups * group_size, generator=generator)
    weight = weight * draw(st.floats(1e-3, 1e3)) + draw(st.floats(-2, 2))  # any scale, off-centre too
    return spec, weight


def _per_element(scale: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    return scale.reshape(-1, 1).expand(-1, shape.numel() // scale.numel()).reshape(shape)


@QUICK
@given(specs_and_weights())
def test_quantize_dequantize_error_is_at_most_half_a_step(case):
    spec, weight = case
    codes, scale, zero = quantize(weight, spec)
    assert codes.dtype == torch.int16 and codes.shape == weight.shape
    assert spec.qmin <= int(codes.min()) and int(codes.max()) <= spec.qmax
    error = (dequantize(codes, scale, zero, spec) - weight).abs()
    step = _per_element(scale, weight.shape)
    assert torch.all(error <= step / 2 * (1 + 1e-5) + 1e-6 * weight.abs().max())
    # each group's step is its own range over the levels: no coarser than needed
    grouped = {"tensor": weight.reshape(1, -1), "channel": weight, "group": weight.reshape(-1, spec.group_size)}
    rows = grouped[spec.granularity]
    if spec.symmetric:
        expected = rows.abs().amax(dim=1) / spec.qmax
    else:
        expected = (rows.amax(dim=1).clamp(min=0) - rows.amin(dim=1).clamp(max=0)) / (spec.qmax - spec.qmin)
    assert torch.allclose(scale, expected, rtol=1e-6)


@QUICK
@given(specs_and_weights())
def test_packed_codes_take_b_bits_and_unpack_to_the_same_codes(case):
    spec, weight = case
    codes, _, _ = quantize(weight, spec)
    packed = pack_bits(codes, spec)
    assert packed.numel() == (codes.numel() * spec.bits + 7) // 8
    assert torch.equal(unpack_bits(packed, codes.shape, spec), codes)


@st.composite
def unit_scores(draw):
    sizes = draw(st.lists(st.integers(1, 12), min_size=1, max_size=6))
    values = st.floats(-5, 5, allow_nan=False, width=32)
    scores = [torch.tensor(draw(st.lists(values, min_size=n, max_size=n)), dtype=torch.float32) for n in sizes]
    count = draw(st.integers(0, sum(sizes) - len(sizes)))
    return scores, count, draw(st.sampled_from(["global", "layer"]))


@QUICK
@given(unit_scores())
def test_pruning_plans_never_remove_a_layers_last_unit(case):
    scores, count, scope = case
    plan = lowest_units(scores, count, scope)
    removed = 0
    for layer, score in enumerate(scores):
        units = plan.get(layer, [])
        assert len(set(units)) == len(units) and all(0 <= u < score.numel() for u in units)
        assert score.numel() - len(units) >= 1
        removed += len(units)
    assert removed <= count
    if scope == "global":
        assert removed == count  # count never exceeds what may go
        # lowest first: a kept unit scores below a removed one only where its layer is down to one unit
        highest_removed = max((float(scores[layer][u]) for layer, us in plan.items() for u in us), default=None)
        for layer, score in enumerate(scores):
            kept = [u for u in range(score.numel()) if u not in plan[layer]]
            if highest_removed is not None and any(float(score[u]) < highest_removed for u in kept):
                assert len(kept) == 1
    elif all(score.numel() - 1 >= count for score in scores):
        assert removed == count  # the quota never hit a layer's floor


@SLOW
@given(st.sampled_from(["bert", "distilbert"]), st.floats(0, 0.95), st.sampled_from(["global", "layer"]))
def test_head_pruning_keeps_a_head_in_every_layer(family, fraction, scope):
    model = tiny_model(family)
    report = bc.compress(model, bc.HeadPruning(fraction=fraction, importance="magnitude", scope=scope), bc.Context())
    counts = [head_count(model, layer) for layer in range(2)]
    assert min(counts) >= 1 and report.metrics["heads_per_layer"] == counts
    assert sum(counts) == 8 - report.metrics["heads_removed"]
    if scope == "global":
        assert report.metrics["heads_removed"] == min(round(fraction * 8), 6)


@st.composite
def shrunk_models(draw):
    """A tiny model of any family with heads and FFN neurons removed per layer at random."""
    family = draw(st.sampled_from(FAMILIES))
    model = tiny_model(family, seed=draw(st.integers(0, 3)))
    heads = {layer: draw(st.sets(st.integers(0, 3), max_size=3)) for layer in range(2)}
    neurons = {layer: draw(st.sets(st.integers(0, 47), max_size=40)) for layer in range(2)}
    prune_heads(model, heads)
    prune_ffn_neurons(model, neurons)
    step = draw(st.sampled_from([None, bc.DynamicInt8(), bc.NaivePTQ(weight_bits=draw(st.integers(2, 8)))]))
    if step is not None:
        bc.compress(model, step, bc.Context())
    return model


@SLOW
@given(shrunk_models())
def test_save_and_load_rebuild_the_exact_model(tmp_path_factory, model):
    directory = tmp_path_factory.mktemp("saved")
    bc.save(model, directory)
    loaded = bc.load(directory)
    assert {k: tuple(v.shape) for k, v in loaded.state_dict().items() if hasattr(v, "shape")} == \
        {k: tuple(v.shape) for k, v in model.state_dict().items() if hasattr(v, "shape")}
    batch = random_batch()
    with torch.no_grad():
        assert torch.equal(loaded(**batch).logits, model(**batch).logits)
