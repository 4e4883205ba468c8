import math

import pytest
import torch
import torch.nn as nn

import bertcompress as bc
from bertcompress.methods.quantization.hessian import (component_eigenvalues, components, labelled_batches,
                                                       summarize, top_eigenvalue)
from bertcompress.methods.quantization.mixed_precision import QBertMixedPrecision, assign_bits, plot_sensitivity
from bertcompress.methods.quantization.packed import PackedEmbedding, PackedLinear
from tests.conftest import random_batch, tiny_model, toy_task

FAST = dict(group_size=16, batches=1, batch_size=8, iterations=3)


@pytest.fixture
def ctx(tokenizer):
    return bc.Context(task=toy_task(), tokenizer=tokenizer, train=bc.TrainConfig(max_length=16))


def _symmetric_with_eigenvalues(eigenvalues: list[float], seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(len(eigenvalues), len(eigenvalues), generator=generator, dtype=torch.float64))
    return q @ torch.diag(torch.tensor(eigenvalues, dtype=torch.float64)) @ q.T


@pytest.mark.parametrize("eigenvalues, dominant", [
    ([7.0, 3.0, 2.0, 1.0, 0.5, -1.0, -2.5, 0.1, 0.0, 1.5, 2.2, -0.3], 7.0),
    ([-9.0, 4.0, 1.0, 0.5, 0.2, 0.1, -3.0, 2.0, 0.0, 1.0, -1.0, 0.3], -9.0),
])
def test_power_iteration_finds_the_dominant_eigenvalue_of_a_quadratic(eigenvalues, dominant):
    matrix = _symmetric_with_eigenvalues(eigenvalues)
    # the unknowns are split over two tensors, as a component's weights are
    x = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
    y = torch.randn(6, dtype=torch.float64, requires_grad=True)

    def loss() -> torch.Tensor:
        z = torch.cat([x.reshape(-1), y])
        return 0.5 * z @ matrix @ z

    found = top_eigenvalue(loss, [x, y], iterations=200, generator=torch.Generator().manual_seed(0))
    assert found == pytest.approx(dominant, rel=1e-3)


def test_sensitivities_are_finite_deterministic_and_leave_the_model_as_found(ctx):
    model = tiny_model().train()
    flags = {name: p.requires_grad for name, p in model.named_parameters()}
    groups = components(model)
    assert list(groups) == ["embeddings", "layer0.attention", "layer0.ffn", "layer1.attention", "layer1.ffn"]
    assert len(groups["layer0.attention"]) == 4 and len(groups["layer1.ffn"]) == 2
    batches = labelled_batches(ctx, 2, 8, seed=0, field="test")
    first = component_eigenvalues(model, groups, batches, iterations=5, seed=3)
    second = component_eigenvalues(model, groups, batches, iterations=5, seed=3)
    assert first == second
    assert all(len(values) == 2 and all(math.isfinite(v) for v in values) for values in first.values())
    omegas = [summarize(values, use_variance=True)["sensitivity"] for values in first.values()]
    assert all(omega >= 0 for omega in omegas) and max(omegas) > 0
    assert model.training and flags == {name: p.requires_grad for name, p in model.named_parameters()}


def test_summary_is_mean_std_and_paper_omega():
    row = summarize([1.0, -3.0], use_variance=True)
    assert row == {"mean_eigenvalue": -1.0, "std_eigenvalue": 2.0, "sensitivity": 3.0}
    assert summarize([1.0, -3.0], use_variance=False)["sensitivity"] == 1.0


def _average(bits: dict, sizes: dict) -> float:
    return sum(bits[c] * sizes[c] for c in sizes) / sum(sizes.values())


@pytest.mark.parametrize("budget", [2.0, 2.5, 3.0, 3.7, 4.0, 5.5, 8.0])
def test_assignment_meets_the_budget_and_favours_sensitive_components(budget):
    generator = torch.Generator().manual_seed(0)
    sensitivities = {f"c{i}": v for i, v in enumerate(torch.rand(8, generator=generator).tolist())}
    same_size = {name: 100 for name in sensitivities}
    bits = assign_bits(sensitivities, same_size, [2, 3, 4, 8], budget)
    assert _average(bits, same_size) <= budget
    for a in sensitivities:
        for b in sensitivities:
            if sensitivities[a] > sensitivities[b]:
                assert bits[a] >= bits[b], (a, b, bits)
    mixed = {name: 50 * (i + 1) for i, name in enumerate(sensitivities)}
    mixed_bits = assign_bits(sensitivities, mixed, [8, 2, 4, 3], budget)
    assert _average(mixed_bits, mixed) <= budget
    assert mixed_bits == assign_bits(sensitivities, mixed, [2, 3, 4, 8], budget)  # deterministic


def test_assignment_uses_the_budget_and_the_extremes():
    sizes = {"a": 10, "b": 10}
    assert assign_bits({"a": 2.0, "b": 1.0}, sizes, [2, 4], 3.0) == {"a": 4, "b": 2}
    assert assign_bits({"a": 2.0, "b": 1.0}, sizes, [2, 4], 8.0) == {"a": 4, "b": 4}
    assert assign_bits({"a": 2.0, "b": 1.0}, sizes, [2, 4], 2.0) == {"a": 2, "b": 2}


def test_impossible_budget_is_a_clear_error():
    with pytest.raises(bc.BertCompressError, match="average_bits: 1.5 is below the minimum achievable average, 2 bits"):
        assign_bits({"a": 1.0}, {"a": 10}, [2, 4], 1.5)
    with pytest.raises(bc.BertCompressError, match="QBertMixedPrecision.average_bits: .*minimum achievable average, 3"):
        QBertMixedPrecision(bit_choices=[3, 4], average_bits=2.5)


@pytest.mark.parametrize("kwargs, message", [
    (dict(bit_choices=[1, 4]), "QBertMixedPrecision.bit_choices"),
    (dict(bit_choices=[4, 9]), "QBertMixedPrecision.bit_choices"),
    (dict(bit_choices=[]), "QBertMixedPrecision.bit_choices"),
    (dict(group_size=0), "QBertMixedPrecision.group_size"),
    (dict(iterations=0), "QBertMixedPrecision.iterations"),
    (dict(average_bits=9), "QBertMixedPrecision.average_bits"),
])
def test_bad_config(kwargs, message):
    with pytest.raises(bc.BertCompressError, match=message):
        QBertMixedPrecision(**kwargs)


def test_bit_choices_are_sorted_and_distinct():
    assert QBertMixedPrecision(bit_choices=[8, 2, 4, 2]).bit_choices == [2, 4, 8]


def test_group_size_that_does_not_divide_names_the_field_and_layer(ctx):
    with pytest.raises(bc.BertCompressError, match="group_size: 5 does not divide bert.embeddings.word_embeddings"):
        bc.compress(tiny_model(), QBertMixedPrecision(**{**FAST, "group_size": 5}), ctx)
    with pytest.raises(bc.BertCompressError, match="group_size: 5 does not divide bert.encoder.layer.0"):
        bc.compress(tiny_model(), QBertMixedPrecision(**{**FAST, "group_size": 5, "embeddings": False}), ctx)


def test_without_data_is_a_clear_error():
    with pytest.raises(bc.BertCompressError, match="qbert_mixed_precision: Hessian sensitivities need labelled data"):
        bc.compress(tiny_model(), QBertMixedPrecision(**FAST), bc.Context())


def test_method_quantizes_with_the_assigned_bits_and_reloads(ctx, tmp_path):
    model = tiny_model()
    report = bc.compress(model, QBertMixedPrecision(**FAST, average_bits=3.5), ctx)
    table = report.metrics["sensitivity"]
    assert list(table) == ["embeddings", "layer0.attention", "layer0.ffn", "layer1.attention", "layer1.ffn"]
    assert report.modules_changed == 13
    weighted = sum(row["parameters"] * row["bits"] for row in table.values())
    assert report.metrics["average_bits"] == pytest.approx(weighted / sum(r["parameters"] for r in table.values()))
    assert report.metrics["average_bits"] <= 3.5
    most_sensitive = max(table, key=lambda component: table[component]["sensitivity"])
    assert report.metrics["embeddings_most_sensitive"] is (most_sensitive == "embeddings")
    assert (most_sensitive == "embeddings") is any(n.startswith("embeddings came out the most") for n in report.notes)
    embedding = model.bert.embeddings.word_embeddings
    assert isinstance(embedding, PackedEmbedding) and embedding.spec.bits == table["embeddings"]["bits"]
    for layer_index, layer in enumerate(model.bert.encoder.layer):
        attention = [layer.attention.self.query, layer.attention.self.key, layer.attention.self.value,
                     layer.attention.output.dense]
        for linear in attention:
            assert isinstance(linear, PackedLinear)
            assert linear.spec.bits == table[f"layer{layer_index}.attention"]["bits"]
            assert (linear.spec.granularity, linear.spec.group_size) == ("group", 16)
        for linear in (layer.intermediate.dense, layer.output.dense):
            assert linear.spec.bits == table[f"layer{layer_index}.ffn"]["bits"]
    assert table["layer0.attention"]["parameters"] == 4 * 32 * 32 and table["embeddings"]["parameters"] == 64 * 32
    assert report.bytes_after < report.bytes_before
    batch = random_batch()
    with torch.no_grad():
        logits = model(**batch).logits
    assert torch.isfinite(logits).all()
    bc.save(model, tmp_path / "m")
    with torch.no_grad():
        assert torch.equal(bc.load(tmp_path / "m")(**batch).logits, logits)
    assert plot_sensitivity(report.metrics, tmp_path / "sensitivity.png").stat().st_size > 0


def test_embeddings_can_be_left_out(ctx):
    model = tiny_model("distilbert")
    report = bc.compress(model, QBertMixedPrecision(**FAST, embeddings=False), ctx)
    assert "embeddings" not in report.metrics["sensitivity"]
    assert report.metrics["embeddings_most_sensitive"] is None
    assert type(model.distilbert.embeddings.word_embeddings) is nn.Embedding
    assert isinstance(model.distilbert.transformer.layer[1].ffn.lin2, PackedLinear)
