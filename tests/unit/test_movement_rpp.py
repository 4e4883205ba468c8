"""Movement pruning (Sanh et al.) and Reweighted Proximal Pruning (Guo et al.) on the tiny model."""
import copy

import pytest
import torch
import torch.nn as nn

import bertcompress as bc
from bertcompress.core.errors import BertCompressError
from bertcompress.methods.pruning.masks import MaskRule, compute_masks
from bertcompress.methods.pruning.movement import MovementMasking, MovementPruning, attach_movement_masks
from bertcompress.methods.pruning.rpp import ProximalL1, ReweightedProximalPruning
from bertcompress.methods.pruning.schedules import CubicSchedule
from bertcompress.methods.pruning.sparse_linear import SparseLinear
from bertcompress.training.hooks import StepState
from bertcompress.training.loop import TrainConfig, _optimizer
from tests.conftest import InterruptingTeacher, random_batch, record_training, tiny_model, toy_task


def context(model, tokenizer) -> bc.Context:
    return bc.Context(task=toy_task(), tokenizer=tokenizer, teacher=copy.deepcopy(model),
                      train=TrainConfig(batch_size=8, max_length=16))


def logits(model, batch):
    with torch.no_grad():
        return model(**batch).logits


# ---- movement: the straight-through estimator -----------------------------------------------------------

def test_scores_receive_the_weight_times_the_masked_weights_gradient():
    torch.manual_seed(0)
    linear = nn.Linear(6, 4)
    masks = attach_movement_masks({"l": linear})
    masks["l"].set_mask(torch.rand(4, 6) > 0.5)
    x = torch.randn(5, 6)
    upstream = torch.randn(5, 4)
    (linear(x) * upstream).sum().backward()
    grad_effective = upstream.t() @ x  # ∂L/∂W' for y = x W'^T
    weight = linear.parametrizations.weight.original
    assert torch.allclose(masks["l"].scores.grad, grad_effective * weight.detach(), atol=1e-6)
    # removed weights get no gradient, kept ones the full one
    assert torch.allclose(weight.grad, grad_effective * masks["l"].mask, atol=1e-6)


def test_movement_keeps_weights_moving_away_from_zero_not_the_largest():
    """Large weights pushed towards zero lose to small weights pushed outwards: the reverse of magnitude."""
    torch.manual_seed(0)
    linear = nn.Linear(8, 8, bias=False)
    big = (torch.randperm(64) < 32).view(8, 8)  # half large, half small
    with torch.no_grad():
        linear.weight.copy_(torch.where(big, 1.0, 0.01) * torch.sign(torch.randn(8, 8)))
    outward = torch.where(big, -1.0, 1.0) * torch.sign(linear.weight.detach())  # -∂L/∂W: big ones shrink
    masks = attach_movement_masks({"l": linear})
    optimizer = torch.optim.Adam([masks["l"].scores], lr=1e-2)
    for _ in range(5):
        optimizer.zero_grad()
        (-(linear.weight * outward).sum()).backward()
        optimizer.step()
    config = MovementPruning(sparsity=0.5, scope="layer")
    hook = MovementMasking(masks, config, CubicSchedule(config.sparsity, 0, 1))
    hook.after_step(linear, StepState(1, 1))
    assert torch.equal(masks["l"].mask, ~big)
    original = linear.parametrizations.weight.original.detach()
    magnitude = compute_masks({"l": original.abs()}, config.sparsity, MaskRule(), "layer")["l"]
    assert torch.equal(magnitude, big)  # magnitude pruning keeps exactly the other half


def test_scores_train_at_their_own_rate_without_weight_decay():
    model = tiny_model()
    linears = {"bert.encoder.layer.0.output.dense": model.bert.encoder.layer[0].output.dense}
    masks = attach_movement_masks(linears)
    hook = MovementMasking(masks, MovementPruning(score_learning_rate=0.02), CubicSchedule(0.5, 0, 1))
    groups = _optimizer(model, TrainConfig(learning_rate=3e-5), (hook,))
    (score_group,) = [g for g in groups.param_groups if any(p is masks[next(iter(masks))].scores for p in g["params"])]
    assert score_group["lr"] == 0.02 and score_group["weight_decay"] == 0.0 and len(score_group["params"]) == 1


@pytest.mark.parametrize("pattern,extra", [("unstructured", {}), ("n:m", {"n": 1, "m": 4}),
                                           ("block", {"block_size": 4})])
def test_hard_movement_reaches_the_target_and_reloads(pattern, extra, tokenizer, tmp_path):
    model = tiny_model()
    config = MovementPruning(sparsity=0.75, pattern=pattern, max_steps=6, prune_every=1, **extra)
    report = bc.compress(model, config, context(model, tokenizer))
    assert report.metrics["mask_sparsity"] == pytest.approx(0.75, abs=0.01)
    assert report.metrics["sparsity"] >= 0.74
    for name, module in model.named_modules():
        if isinstance(module, SparseLinear) and pattern == "n:m":
            weight = module.dense_weight()
            assert ((weight != 0).reshape(weight.shape[0], -1, 4).sum(-1) <= 1).all(), name
    batch = random_batch()
    bc.save(model, tmp_path / "m")
    assert torch.equal(logits(bc.load(tmp_path / "m"), batch), logits(model, batch))


def test_soft_movement_thresholds_squashed_scores_and_penalises_them(tokenizer):
    model = tiny_model()
    linears = {"l": model.bert.encoder.layer[0].output.dense}
    masks = attach_movement_masks(linears)
    with torch.no_grad():
        masks["l"].scores.copy_(torch.linspace(-4, 4, masks["l"].scores.numel()).view_as(masks["l"].scores))
    config = MovementPruning(variant="soft", final_threshold=0.5, l1_weight=2.0)
    hook = MovementMasking(masks, config, CubicSchedule(0.5, 0, 10))
    assert hook.extra_loss(model, StepState(0, 10)) == 0  # the penalty ramps in with the threshold
    hook.after_step(model, StepState(10, 10))
    assert hook.level == pytest.approx(0.5)
    assert torch.equal(masks["l"].mask, torch.sigmoid(masks["l"].scores) > 0.5)
    penalty = hook.extra_loss(model, StepState(10, 10))
    assert penalty.item() == pytest.approx(2.0 * torch.sigmoid(masks["l"].scores).mean().item(), rel=1e-5)
    penalty.backward()
    assert (masks["l"].scores.grad > 0).all()  # every score is pushed down


def test_soft_movement_trains_end_to_end(tokenizer):
    model = tiny_model()
    report = bc.compress(model, MovementPruning(variant="soft", final_threshold=0.3, max_steps=5, prune_every=1,
                                                score_learning_rate=0.5), context(model, tokenizer))
    assert 0 < report.metrics["sparsity"] < 1


@pytest.mark.parametrize("config", [
    MovementPruning(sparsity=0.5, max_steps=8, prune_every=2),
    MovementPruning(variant="soft", final_threshold=0.73, l1_weight=1.0, max_steps=8, prune_every=2,
                    score_learning_rate=0.05, score_init="magnitude"),  # the penalty uses the threshold in force
], ids=lambda c: c.variant)
def test_interrupted_movement_run_resumes_to_the_same_model(config, tokenizer, tmp_path, monkeypatch):
    from bertcompress.training import finetune

    straight = tiny_model()
    expected = bc.compress(straight, config, context(straight, tokenizer))
    results = record_training(monkeypatch, finetune)

    def resumable(model) -> bc.Context:
        ctx = context(model, tokenizer)
        ctx.workdir, ctx.train = tmp_path, ctx.train.model_copy(update={"checkpoint_every": 3})
        return ctx

    interrupted = tiny_model()
    ctx = resumable(interrupted)
    ctx.teacher = InterruptingTeacher(ctx.teacher, after=7)  # Ctrl-C during step 8: checkpoints at 3 and 6
    with pytest.raises(KeyboardInterrupt):
        bc.compress(interrupted, config, ctx)
    fresh = tiny_model()  # a new process starts from the original weights
    report = bc.compress(fresh, config, resumable(fresh))
    assert results[-1].resumed_from == 6 and results[-1].steps == 8
    assert report.metrics["mask_sparsity"] == expected.metrics["mask_sparsity"] and \
        0.3 < report.metrics["mask_sparsity"] < 0.7
    batch = random_batch()
    assert torch.allclose(logits(fresh, batch), logits(straight, batch), atol=1e-5)


@pytest.mark.parametrize("bad,field", [({"variant": "soft", "pattern": "n:m"}, "pattern"),
                                       ({"sparsity": 1.0}, "sparsity"),
                                       ({"warmup": 0.5, "cooldown": 0.5}, "schedule"),
                                       ({"score_learning_rate": 0}, "score_learning_rate"),
                                       ({"pattern": "n:m", "n": 5, "m": 4}, "n")])
def test_movement_bad_input_names_the_field(bad, field):
    with pytest.raises(BertCompressError, match=f"MovementPruning.{field}"):
        MovementPruning(**bad)


# ---- reweighted proximal pruning ------------------------------------------------------------------------

def test_proximal_step_soft_thresholds_with_reweighted_penalties():
    linear = nn.Linear(4, 1, bias=False)
    with torch.no_grad():
        linear.weight.copy_(torch.tensor([[1.0, -0.5, 0.01, -0.002]]))
    config = ReweightedProximalPruning(penalty=0.01, epsilon=1e-3, reweight_every=100)
    hook = ProximalL1(["l"], config)
    model = nn.Module()
    model.l = linear
    before = linear.weight.detach().clone()
    hook.after_step(model, StepState(1, 10, learning_rate=0.1))
    shrink = 0.1 * 0.01 / (before.abs() + 1e-3)
    expected = before.sign() * (before.abs() - shrink).clamp_min(0)
    assert torch.allclose(linear.weight, expected)
    assert linear.weight[0, 3] == 0 and linear.weight[0, 0] > 0.999  # small ones vanish, large ones stay
    hook.after_step(model, StepState(2, 10, learning_rate=0.1))  # no reweighting before step k+1: the same penalties again
    assert torch.allclose(linear.weight, (expected.abs() - shrink).clamp_min(0) * before.sign())


def test_rpp_reaches_the_target_sparsity_and_reloads(tokenizer, tmp_path):
    model = tiny_model()
    config = ReweightedProximalPruning(sparsity=0.6, penalty=0.1, learning_rate=1e-3, max_steps=4)
    report = bc.compress(model, config, context(model, tokenizer))
    assert report.metrics["zeros_after_proximal_training"] > 0.05  # the penalty itself made zeros
    assert report.metrics["sparsity"] == pytest.approx(0.6, abs=0.01)
    batch = random_batch()
    bc.save(model, tmp_path / "m")
    assert torch.equal(logits(bc.load(tmp_path / "m"), batch), logits(model, batch))


def test_rpp_recovery_trains_with_the_masks_fixed(tokenizer, tmp_path):
    """Recovery is its own run (own checkpoints, so it never resumes the proximal run's) and keeps the masks."""
    outputs = {}
    for recovery in (0.0, 1.0):
        model = tiny_model()
        ctx = bc.Context(task=toy_task(), tokenizer=tokenizer, teacher=tiny_model(), workdir=tmp_path / str(recovery),
                         train=TrainConfig(batch_size=8, max_length=16, checkpoint_every=1))
        config = ReweightedProximalPruning(sparsity=0.6, penalty=0.1, learning_rate=1e-3, max_steps=4,
                                           recovery_epochs=recovery, hidden_distill_weight=1.0, label_weight=0.0)
        report = bc.compress(model, config, ctx)
        assert report.metrics["sparsity"] == pytest.approx(0.6, abs=0.01)
        outputs[recovery] = logits(model, random_batch())
    assert report.metrics["recovery_steps"] == 4 and not torch.allclose(outputs[0.0], outputs[1.0])


@pytest.mark.parametrize("bad,field", [({"penalty": 0}, "penalty"), ({"epsilon": -1}, "epsilon"),
                                       ({"sparsity": -0.1}, "sparsity"), ({"reweight_every": 0}, "reweight_every")])
def test_rpp_bad_input_names_the_field(bad, field):
    with pytest.raises(BertCompressError, match=f"ReweightedProximalPruning.{field}"):
        ReweightedProximalPruning(**bad)


def test_magnitude_score_init_starts_from_the_magnitude_ranking():
    torch.manual_seed(0)
    linears = {"a": nn.Linear(8, 8), "b": nn.Linear(8, 16)}
    expected = compute_masks({n: m.weight.detach().abs() for n, m in linears.items()}, 0.5, MaskRule(), "layer")
    masks = attach_movement_masks(linears, score_init="magnitude")
    config = MovementPruning(sparsity=0.5, scope="layer")
    MovementMasking(masks, config, CubicSchedule(0.5, 0, 1)).after_step(nn.Module(), StepState(1, 1))
    for name, mask in masks.items():
        assert torch.equal(mask.mask, expected[name])
        assert mask.scores.mean().item() == pytest.approx(1.0)
