import copy

import pytest
import torch

import bertcompress as bc
from bertcompress.methods.pruning.fixed_attention import FixedAttention
from bertcompress.methods.pruning.hard_concrete import (HardConcreteGates, hard_concrete_deterministic,
                                                        hard_concrete_open_probability, hard_concrete_sample)
from bertcompress.methods.pruning.l0_heads import (GATES_ATTRIBUTE, L0HeadGates, L0Penalty,
                                                   apply_gate_plan, finalize_gates, head_gates, heads_to_remove)
from bertcompress.surgery import head_count
from bertcompress.training.hooks import StepState
from bertcompress.training.loop import TrainConfig, _optimizer
from tests.conftest import random_batch, tiny_model, toy_task

STATE = StepState(step=0, total_steps=1)


def _ctx(model, tokenizer):
    return bc.Context(task=toy_task(), tokenizer=tokenizer, teacher=copy.deepcopy(model),
                      train=bc.TrainConfig(batch_size=8, max_length=16))


def _heads(model):
    return [head_count(model, i) for i in range(2)]


def test_hard_concrete_samples_lie_in_unit_interval_with_exact_zeros_and_ones():
    torch.manual_seed(0)
    samples = hard_concrete_sample(torch.zeros(20_000), 2 / 3, -0.1, 1.1)
    assert samples.min() >= 0 and samples.max() <= 1
    assert (samples == 0).any() and (samples == 1).any()
    assert ((samples > 0) & (samples < 1)).any()
    # the share of non-zero samples matches the closed form P(gate != 0)
    expected = hard_concrete_open_probability(torch.zeros(1), 2 / 3, -0.1, 1.1).item()
    assert abs((samples != 0).float().mean().item() - expected) < 0.02


def test_deterministic_gate_is_exactly_zero_or_one_far_from_the_middle():
    gates = hard_concrete_deterministic(torch.tensor([-5.0, 0.0, 5.0]), -0.1, 1.1)
    assert gates[0] == 0 and gates[2] == 1 and 0 < gates[1] < 1
    module = HardConcreteGates(3).eval()
    assert torch.equal(module(), module.deterministic())


def test_l0_penalty_is_differentiable_and_falls_with_log_alpha():
    log_alpha = torch.tensor([2.0, 0.0, -2.0], requires_grad=True)
    probability = hard_concrete_open_probability(log_alpha, 2 / 3, -0.1, 1.1)
    probability.sum().backward()
    assert torch.all(log_alpha.grad > 0)
    assert torch.all(probability.diff() < 0)
    gates = [HardConcreteGates(4), HardConcreteGates(4)]
    hook = L0Penalty(gates, penalty=0.5)
    high = hook.extra_loss(None, STATE)
    high.backward()
    assert all(g.log_alpha.grad is not None and torch.all(g.log_alpha.grad > 0) for g in gates)
    with torch.no_grad():
        gates[0].log_alpha -= 3
    assert hook.extra_loss(None, STATE) < high
    target = L0Penalty(gates, penalty=1.0, target=8)
    assert target.extra_loss(None, STATE) < 0.5 * high


def test_gates_train_at_their_own_rate_without_weight_decay():
    model, gates = tiny_model(), [HardConcreteGates(4), HardConcreteGates(4)]
    hook = L0Penalty(gates, penalty=0.5, gate_learning_rate=0.05)
    optimizer = _optimizer(model, TrainConfig(learning_rate=3e-5), (hook,))
    (group,) = [g for g in optimizer.param_groups if any(p is gates[0].log_alpha for p in g["params"])]
    assert group["lr"] == 0.05 and group["weight_decay"] == 0.0
    assert [id(p) for p in group["params"]] == [id(g.log_alpha) for g in gates]


def test_heads_to_remove_keeps_the_most_open_head_of_a_closed_layer():
    scores = [torch.tensor([5.0, -5.0, 0.5]), torch.tensor([-5.0, -4.0, -6.0])]
    values = [hard_concrete_deterministic(s, -0.1, 1.1) for s in scores]
    assert heads_to_remove(scores, values, threshold=0.0) == {0: [1], 1: [0, 2]}
    assert heads_to_remove(scores, values, threshold=0.7) == {0: [1, 2], 1: [0, 2]}
    assert heads_to_remove(scores, values, threshold=0.0, target=3) == {0: [1], 1: [0, 2]}
    assert heads_to_remove(scores, values, threshold=0.0, target=2) == {0: [1, 2], 1: [0, 2]}


@pytest.mark.parametrize("family", ["bert", "distilbert"])
def test_pruned_model_equals_the_deterministically_gated_one(family, tmp_path):
    model = tiny_model(family)
    batch = random_batch()
    config = L0HeadGates()
    with head_gates(model, config) as gates:
        with torch.no_grad():
            gates[0].log_alpha.copy_(torch.tensor([5.0, -5.0, 0.5, -1.0]))
            gates[1].log_alpha.copy_(torch.tensor([-5.0, -4.0, -5.0, -6.0]))
        model.eval()
        with torch.no_grad():
            gated = model(**batch).logits
        plan = finalize_gates(model, gates, config)
    assert not any(GATES_ATTRIBUTE in name for name in model.state_dict())
    changed, survivors = apply_gate_plan(model, plan)
    assert survivors == [[0, 2, 3], [1]] and _heads(model) == [3, 1] and changed == 2
    with torch.no_grad():
        pruned = model(**batch).logits
    assert torch.allclose(pruned, gated, atol=1e-5)
    bc.save(model, tmp_path / "m")
    with torch.no_grad():
        assert torch.equal(bc.load(tmp_path / "m")(**batch).logits, pruned)


def test_training_with_a_large_penalty_removes_heads(tokenizer):
    model = tiny_model()
    config = L0HeadGates(l0_penalty=5.0, gate_learning_rate=1.0, max_steps=12, distill=False)
    report = bc.compress(model, config, _ctx(model, tokenizer))
    assert report.metrics["heads_removed"] > 0 and sum(_heads(model)) < 8
    assert report.metrics["heads_per_layer"] == _heads(model) and min(_heads(model)) >= 1
    assert report.bytes_after < report.bytes_before and report.metrics["train_steps"] == 12
    assert not any(GATES_ATTRIBUTE in name for name, _ in model.named_parameters())
    assert model(**random_batch()).logits.isfinite().all()


def test_target_keeps_exactly_that_many_heads(tokenizer, tmp_path):
    model = tiny_model("roberta")
    report = bc.compress(model, L0HeadGates(target_heads=3, max_steps=2), _ctx(model, tokenizer))
    assert sum(_heads(model)) == 3 and sum(report.metrics["heads_per_layer"]) == 3
    assert [len(s) for s in report.metrics["surviving_heads"]] == _heads(model)


def test_bad_input(tokenizer):
    with pytest.raises(bc.BertCompressError, match="L0HeadGates.stretch_low"):
        L0HeadGates(stretch_low=0.1)
    with pytest.raises(bc.BertCompressError, match="L0HeadGates.temperature"):
        L0HeadGates(temperature=0)
    model = tiny_model()
    with pytest.raises(bc.BertCompressError, match="target_heads: 9 is outside 2...8"):
        bc.compress(model, L0HeadGates(target_heads=9), _ctx(model, tokenizer))
    with pytest.raises(bc.BertCompressError, match="l0_heads: this method trains"):
        bc.compress(model, L0HeadGates(distill=False), bc.Context())
    assert not any(GATES_ATTRIBUTE in name for name in model.state_dict())
    bc.compress(model, FixedAttention(selection="first", epochs=0), bc.Context())
    with pytest.raises(bc.BertCompressError, match="heads were already changed"):
        bc.compress(model, L0HeadGates(distill=False), _ctx(model, tokenizer))
