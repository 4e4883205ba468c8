"""FLOP: SVD-initialised gated factorization, the augmented Lagrangian, and the final two-Linear storage."""
import copy

import pytest
import torch
import torch.nn as nn

import bertcompress as bc
from bertcompress.core.errors import BertCompressError
from bertcompress.methods.pruning.flop import (AugmentedLagrangian, GatedLowRankLinear, LagrangeMultipliers,
                                               _kept_ranks)
from bertcompress.surgery.linear import LowRankLinear
from bertcompress.training.hooks import StepState
from tests.conftest import random_batch, tiny_model, toy_task


def test_svd_initialisation_reproduces_the_linear_with_open_gates():
    torch.manual_seed(0)
    linear = nn.Linear(24, 16)
    gated = GatedLowRankLinear(linear).eval()
    x = torch.randn(5, 24)
    assert torch.allclose(gated(x), linear(x), atol=1e-5)
    assert float(gated.expected_size()) == pytest.approx(16 * (24 + 16), rel=0.02)  # all 16 ranks open


def test_finalize_keeps_the_open_ranks_as_two_linears_with_the_gated_output():
    torch.manual_seed(0)
    gated = GatedLowRankLinear(nn.Linear(32, 24)).eval()
    with torch.no_grad():
        gated.gates.log_alpha[:18] = -10.0  # closed
        gated.gates.log_alpha[18:] = 0.5  # open, gate value below 1
    keep = gated.gates.deterministic() > 0
    module = gated.finalize(keep)
    assert isinstance(module, LowRankLinear) and module.rank == 6
    x = torch.randn(4, 32)
    assert torch.allclose(module(x), gated(x), atol=1e-5)
    dense = gated.finalize(torch.ones(24, dtype=torch.bool))  # full rank: the dense product is smaller
    assert isinstance(dense, nn.Linear) and torch.allclose(dense(x), gated(x), atol=1e-5)


def test_lagrangian_multipliers_ascend_while_the_model_is_over_budget():
    torch.manual_seed(0)
    model = nn.Module()
    model.layer = GatedLowRankLinear(nn.Linear(16, 16))
    multipliers = LagrangeMultipliers()
    hook = AugmentedLagrangian({"layer": model.layer}, multipliers, bc.FLOP(target_density=0.3, target_ramp=0.0))
    hook.after_step(model, StepState(1, 10))
    assert hook.target == pytest.approx(0.3)
    optimizer = torch.optim.SGD([multipliers.values, model.layer.gates.log_alpha], lr=0.1)
    before = model.layer.gates.log_alpha.detach().clone()
    for _ in range(3):
        optimizer.zero_grad()
        hook.extra_loss(model, StepState(1, 10)).backward()
        optimizer.step()
    assert (multipliers.values > 0).all()  # ascent: a positive gap raises λ
    assert (model.layer.gates.log_alpha < before).all()  # descent: gates close


def test_kept_ranks_meet_the_budget_dropping_the_least_open_first():
    torch.manual_seed(0)
    layers = {"a": GatedLowRankLinear(nn.Linear(8, 8)), "b": GatedLowRankLinear(nn.Linear(8, 8))}
    with torch.no_grad():
        layers["a"].gates.log_alpha.copy_(torch.linspace(1, 3, 8))
        layers["b"].gates.log_alpha.copy_(torch.linspace(4, 6, 8))
    keep = _kept_ranks(layers, budget=10 * 16)
    assert int(keep["a"].sum()) + int(keep["b"].sum()) == 10
    assert keep["b"].all() and keep["a"][-2:].all() and not keep["a"][:-2].any()


def test_flop_trains_stores_two_linears_and_reloads(tokenizer, tmp_path):
    model = tiny_model()
    ctx = bc.Context(task=toy_task(), tokenizer=tokenizer, teacher=copy.deepcopy(model),
                     train=bc.TrainConfig(batch_size=8, max_length=16))
    report = bc.compress(model, bc.FLOP(target_density=0.4, max_steps=4, lagrangian_learning_rate=0.5), ctx)
    assert report.metrics["density"] <= 0.4 + 1e-6
    assert any(isinstance(m, LowRankLinear) for m in model.modules())
    assert not hasattr(model, "flop_multipliers")
    batch = random_batch()
    bc.save(model, tmp_path / "m")
    with torch.no_grad():
        assert torch.equal(bc.load(tmp_path / "m")(**batch).logits, model(**batch).logits)


@pytest.mark.parametrize("bad,field", [({"target_density": 1.0}, "target_density"),
                                       ({"target_density": 0}, "target_density"),
                                       ({"target_ramp": 1.5}, "target_ramp")])
def test_flop_bad_input_names_the_field(bad, field):
    with pytest.raises(BertCompressError, match=f"FLOP.{field}"):
        bc.FLOP(**bad)
