import time

import pytest
import torch
import torch.nn.functional as F

from bertcompress.core.errors import BertCompressError
from bertcompress.data.batching import Encoded
from bertcompress.training import loop
from bertcompress.training.hooks import ParameterGroup
from bertcompress.training.loop import (TrainConfig, TrainingHook, _optimizer, distillation_loss, global_batch,
                                        total_steps, train)
from tests.conftest import interrupt_at, tiny_model


def learnable_data(n: int = 48) -> Encoded:
    """Label = which of tokens 7/8 follows [CLS]: a tiny model learns it in a few dozen steps."""
    generator = torch.Generator().manual_seed(0)
    ids, labels = [], []
    for i in range(n):
        row = torch.randint(10, 60, (8,), generator=generator).tolist()
        row[0] = 7 if i % 2 else 8
        ids.append([2, *row, 3])
        labels.append(i % 2)
    return Encoded(ids, None, labels, 0)


def _weights(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_loss_falls_and_run_is_reproducible():
    config = TrainConfig(max_steps=40, batch_size=8, learning_rate=5e-3, warmup_ratio=0.1)
    first, second = tiny_model(), tiny_model()
    result = train(first, learnable_data(), config)
    assert result.steps == 40 and result.losses[-1] < result.losses[0] * 0.5
    train(second, learnable_data(), config)
    assert all(torch.equal(a, b) for a, b in zip(_weights(first).values(), _weights(second).values()))


@pytest.mark.parametrize("grouped", [True, False])
def test_batches_cover_each_epoch_once(grouped):
    lengths = [3 + (i * 7) % 20 for i in range(48)]
    config = TrainConfig(epochs=2, batch_size=10, group_by_length=grouped)
    seen = [i for step in range(5) for i in global_batch(lengths, step, config)]
    assert sorted(seen) == list(range(48))  # epoch 0: 5 batches cover all 48 once
    assert global_batch(lengths, 5, config) != global_batch(lengths, 0, config)


def test_grouping_by_length_cuts_padding():
    lengths = [int(x) for x in torch.randint(5, 60, (640,), generator=torch.Generator().manual_seed(0))]
    padded = {}
    for grouped in (True, False):
        config = TrainConfig(batch_size=16, group_by_length=grouped)
        batches = [global_batch(lengths, s, config) for s in range(40)]
        padded[grouped] = sum(len(b) * max(lengths[i] for i in b) for b in batches)
    assert padded[True] < 0.7 * padded[False]


def test_interrupted_run_resumes_to_the_same_weights(tmp_path):
    config = TrainConfig(max_steps=10, batch_size=8, learning_rate=1e-3, checkpoint_every=3)
    straight = tiny_model()
    train(straight, learnable_data(), config)
    resumed = tiny_model()
    with pytest.raises(KeyboardInterrupt):
        train(resumed, learnable_data(), config, hooks=(interrupt_at(8),), checkpoint_dir=tmp_path)
    fresh = tiny_model()  # a new process would start from the original weights
    result = train(fresh, learnable_data(), config, hooks=(interrupt_at(-1),), checkpoint_dir=tmp_path)
    assert result.resumed_from == 6
    for key, value in _weights(straight).items():
        assert torch.allclose(value, fresh.state_dict()[key], atol=1e-6), key


def test_distillation_loss_is_zero_for_identical_logits_and_positive_otherwise():
    logits = torch.randn(4, 3)
    assert torch.allclose(distillation_loss(logits, logits, 2.0), torch.zeros(4), atol=1e-6)
    assert (distillation_loss(logits, logits.flip(-1), 2.0) > 0).all()


def test_teacher_pulls_student_towards_its_predictions():
    teacher = tiny_model(seed=5)
    with torch.no_grad():
        teacher.classifier.weight.mul_(200)  # confident soft targets, unlike a random model's
    data = learnable_data()
    student = tiny_model(seed=1)
    batch = {k: v for k, v in data.batch(list(range(48))).items() if k != "labels"}
    with torch.no_grad():
        target = teacher(**batch).logits.softmax(-1)
        before = (student(**batch).logits.softmax(-1) - target).abs().mean()
    train(student, data, TrainConfig(max_steps=30, batch_size=16, learning_rate=2e-3, distill_weight=1.0,
                                     hard_weight=0.0, temperature=1.0), teacher=teacher)
    with torch.no_grad():
        after = (student(**batch).logits.softmax(-1) - target).abs().mean()
    assert after < before * 0.5


class Counting(TrainingHook):
    def __init__(self):
        self.steps, self.extra_calls = [], 0

    def extra_loss(self, model, state):
        self.extra_calls += 1
        assert state.batch["input_ids"].shape[0] == 8 and state.learning_rate > 0
        return 0.0 * state.outputs.logits.sum()

    def after_step(self, model, state):
        self.steps.append((state.step, state.total_steps))


def test_hooks_are_called_every_step():
    hook = Counting()
    train(tiny_model(), learnable_data(), TrainConfig(max_steps=5, batch_size=8), hooks=(hook,))
    assert hook.extra_calls == 5 and hook.steps == [(s, 5) for s in range(1, 6)]


def test_invalid_hyperparameters_name_the_field():
    with pytest.raises(BertCompressError, match="train.learning_rate"):
        TrainConfig(learning_rate=-1)
    with pytest.raises(BertCompressError, match="cannot both be 0"):
        TrainConfig(distill_weight=0, hard_weight=0)


# --- what the loop promises, pinned (steps, loss, schedule, hooks, optimizer groups, checkpoints, result) ---


class Recorder(TrainingHook):
    """Records what each step shows hooks; adds no loss. `limit` stops a run that takes more steps than meant."""

    def __init__(self, options: dict | None = None, groups: tuple = (), limit: int = 60):
        self.options, self.groups, self.limit = options or {}, list(groups), limit
        self.records, self.after = [], []

    def forward_options(self):
        return dict(self.options)

    def parameter_groups(self):
        return self.groups

    def extra_loss(self, model, state):
        assert len(self.records) < self.limit, "the loop took more steps than it should"
        teacher = state.teacher_outputs
        self.records.append({
            "step": state.step, "lr": state.learning_rate, "weight": state.example_weight,
            "labels": state.batch["labels"].clone(), "logits": state.outputs.logits.detach().clone(),
            "teacher_logits": None if teacher is None else teacher.logits.detach().clone(),
            "hidden": getattr(state.outputs, "hidden_states", None) is not None,
            "teacher_hidden": teacher is not None and getattr(teacher, "hidden_states", None) is not None,
        })
        return None

    def after_step(self, model, state):
        self.after.append((model, state.step))

    def label_losses(self):
        return [F.cross_entropy(r["logits"], r["labels"]).item() for r in self.records]


def test_total_steps_follow_epochs_batch_size_and_max_steps():
    assert total_steps(48, TrainConfig(epochs=2, batch_size=10)) == 10  # 5 batches an epoch
    assert total_steps(48, TrainConfig(epochs=1.5, batch_size=10)) == 8  # ceil(5 * 1.5)
    assert total_steps(48, TrainConfig(epochs=0.5, batch_size=16)) == 2  # ceil(3 * 0.5)
    assert total_steps(48, TrainConfig(epochs=2, batch_size=10, max_steps=7)) == 7


def test_epochs_without_max_steps_take_that_many_optimizer_steps():
    hook = Recorder(limit=5)
    result = train(tiny_model(), learnable_data(20), TrainConfig(epochs=1.5, batch_size=8), hooks=(hook,))
    assert result.steps == 5  # 3 batches an epoch (8, 8, 4), 1.5 epochs
    assert sorted(len(r["labels"]) for r in hook.records[:3]) == [4, 8, 8]
    assert [r["step"] for r in hook.records] == [0, 1, 2, 3, 4]


def test_length_grouping_covers_an_epoch_spanning_several_windows():
    lengths = [3 + (i * 7) % 20 for i in range(250)]
    config = TrainConfig(batch_size=2, group_by_length=True)  # windows of 2 * 50 = 100 examples: 3 windows
    seen = [i for step in range(125) for i in global_batch(lengths, step, config)]
    assert sorted(seen) == list(range(250))


def test_loss_is_the_mean_over_each_batch_and_the_result_reports_the_run():
    hook, model = Recorder(limit=3), tiny_model()
    began = time.perf_counter()
    # 20 examples in batches of 8: the third batch holds 4; hard_weight has no say without a teacher
    result = train(model, learnable_data(20), TrainConfig(max_steps=3, batch_size=8, group_by_length=False,
                                                          learning_rate=1e-3, hard_weight=0.3), hooks=(hook,))
    elapsed = time.perf_counter() - began
    assert [len(r["labels"]) for r in hook.records] == [8, 8, 4]
    assert [r["weight"] for r in hook.records] == [1 / 8, 1 / 8, 1 / 4]
    assert result.losses == pytest.approx([sum(hook.label_losses()) / 3], rel=1e-5)
    assert result.steps == 3 and result.resumed_from == 0
    assert isinstance(result.seconds, float) and 0 < result.seconds <= elapsed
    assert [step for _, step in hook.after] == [1, 2, 3] and all(m is model for m, _ in hook.after)
    assert all(p.grad is None for p in model.parameters())  # gradients released, not kept as zeros
    assert not model.training


def test_losses_are_logged_per_20_steps_and_the_schedule_warms_up_then_decays_linearly():
    hook = Recorder(limit=25)
    config = TrainConfig(max_steps=25, batch_size=4, learning_rate=1e-3, warmup_ratio=0.2)
    result = train(tiny_model(), learnable_data(16), config, hooks=(hook,))
    losses = hook.label_losses()
    windows = [losses[0:20], losses[20:25]]  # a full window, then the last partial one
    assert result.losses == pytest.approx([sum(w) / len(w) for w in windows], rel=1e-5)
    warmup = 5  # int(0.2 * 25)
    expected = [1e-3 * (s / warmup if s < warmup else (25 - s) / (25 - warmup)) for s in range(25)]
    assert [r["lr"] for r in hook.records] == pytest.approx(expected, rel=1e-6, abs=1e-12)


def test_with_a_teacher_the_loss_weighs_labels_and_distillation_and_options_reach_both_models():
    hook = Recorder(options={"output_hidden_states": True}, limit=2)
    config = TrainConfig(max_steps=2, batch_size=8, learning_rate=1e-3, hard_weight=0.3, distill_weight=0.7,
                         temperature=2.0)
    result = train(tiny_model(seed=1), learnable_data(16), config, teacher=tiny_model(seed=5), hooks=(hook,))
    per_step = [0.3 * F.cross_entropy(r["logits"], r["labels"]).item()
                + 0.7 * distillation_loss(r["logits"], r["teacher_logits"], 2.0).mean().item()
                for r in hook.records]
    assert result.losses == pytest.approx([sum(per_step) / 2], rel=1e-5)
    assert all(r["hidden"] and r["teacher_hidden"] for r in hook.records)


def test_optimizer_groups_decay_only_matrices_and_give_hook_groups_their_own_rate():
    model = tiny_model()
    model.bert.embeddings.word_embeddings.weight.requires_grad_(False)
    claimed = [model.classifier.weight, model.classifier.bias]
    hook = Recorder(groups=(ParameterGroup(claimed, 0.123),))
    config = TrainConfig(learning_rate=1e-3, weight_decay=0.2)
    where = {}
    for group in _optimizer(model, config, (hook,)).param_groups:
        for p in group["params"]:
            assert id(p) not in where, "a parameter in two groups"
            where[id(p)] = (group["weight_decay"], group["lr"])
    for name, p in model.named_parameters():
        if not p.requires_grad:
            assert id(p) not in where, name
        elif any(p is c for c in claimed):
            assert where[id(p)] == (0.0, 0.123), name
        elif p.ndim < 2:  # biases and LayerNorms
            assert where[id(p)] == (0.0, 1e-3), name
        else:
            assert where[id(p)] == (0.2, 1e-3), name


def test_a_hook_group_trains_at_its_own_rate():
    model = tiny_model()
    claimed = [model.classifier.weight, model.classifier.bias]
    before = _weights(model)
    train(model, learnable_data(16), TrainConfig(max_steps=2, batch_size=8, learning_rate=1e-2),
          hooks=(Recorder(groups=(ParameterGroup(claimed, 0.0),), limit=2),))
    after = model.state_dict()
    assert torch.equal(after["classifier.weight"], before["classifier.weight"])  # rate 0, no decay
    assert torch.equal(after["classifier.bias"], before["classifier.bias"])
    assert not torch.equal(after["bert.pooler.dense.weight"], before["bert.pooler.dense.weight"])


def test_empty_data_is_refused_and_one_example_is_enough():
    with pytest.raises(BertCompressError, match="training data is empty"):
        train(tiny_model(), Encoded([], None, [], 0), TrainConfig(max_steps=1))
    result = train(tiny_model(), learnable_data(1), TrainConfig(max_steps=2, batch_size=4))
    assert result.steps == 2


def test_an_embedding_model_learns_only_from_a_teacher():
    data = learnable_data(8)
    with pytest.raises(BertCompressError, match=r"no labels to train on.*\(distill: true, or a distillation step\)"):
        train(tiny_model(task_type="embedding"), data, TrainConfig(max_steps=1, batch_size=4))
    result = train(tiny_model(task_type="embedding"), data, TrainConfig(max_steps=1, batch_size=4),
                   teacher=tiny_model(task_type="embedding", seed=3))
    assert result.steps == 1


class Tally(TrainingHook):
    """A hook with state: the steps it has seen, carried across a resume by its state_dict."""

    def __init__(self):
        self.count = 0

    def after_step(self, model, state):
        self.count += 1

    def state_dict(self):
        return {"count": self.count}

    def load_state_dict(self, state):
        self.count = state["count"]


class OtherHook(TrainingHook):
    pass


def test_checkpoints_every_k_steps_resume_only_the_same_run(tmp_path, monkeypatch):
    saved = []
    real_save = loop.save_state
    monkeypatch.setattr(loop, "save_state", lambda d, state, key: (saved.append(state["step"]),
                                                                   real_save(d, state, key)))
    config = TrainConfig(max_steps=4, batch_size=8, learning_rate=1e-3, checkpoint_every=2)
    data = learnable_data(16)
    first = train(tiny_model(), data, config, hooks=(Tally(),), checkpoint_dir=tmp_path)
    assert saved == [2] and first.resumed_from == 0  # every 2 steps, and not at the end

    for model, other_data, other_config, hooks in [
        (tiny_model(), data, TrainConfig(**{**config.model_dump(), "learning_rate": 2e-3}), (Tally(),)),
        (tiny_model(), learnable_data(24), config, (Tally(),)),
        (tiny_model(num_labels=3), data, config, (Tally(),)),
        (tiny_model(), data, config, (OtherHook(),)),
    ]:
        with pytest.raises(BertCompressError, match="another training run"):
            train(model, other_data, other_config, hooks=hooks, checkpoint_dir=tmp_path)

    # how often to save is not part of the run: a resume may change it
    tally, saved[:] = Tally(), []
    resumed = train(tiny_model(), data, TrainConfig(**{**config.model_dump(), "checkpoint_every": 3}),
                    hooks=(tally,), checkpoint_dir=tmp_path)
    assert resumed.resumed_from == 2 and resumed.steps == 4
    assert tally.count == 4  # 2 restored from the checkpoint + 2 run now
    assert saved == [3]


def test_progress_bar_shows_the_steps_unless_quiet(capsys, monkeypatch):
    monkeypatch.delenv("BERTCOMPRESS_QUIET", raising=False)
    data, config = learnable_data(8), TrainConfig(max_steps=2, batch_size=4)
    train(tiny_model(), data, config, description="tiny-run")
    shown = capsys.readouterr().err
    last = shown.strip().split("\r")[-1]  # the bar as it was left
    assert last.startswith("tiny-run") and "2/2 " in last and "100%" in last
    monkeypatch.setenv("BERTCOMPRESS_QUIET", "1")
    train(tiny_model(), data, config, description="tiny-run")
    assert "tiny-run" not in capsys.readouterr().err


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_on_a_gpu_batches_and_teacher_go_to_it_and_the_model_comes_back_to_the_cpu():
    hook, model, teacher = Recorder(limit=1), tiny_model(seed=1), tiny_model(seed=5)
    train(model, learnable_data(8), TrainConfig(max_steps=1, batch_size=4), teacher=teacher, hooks=(hook,))
    assert hook.records[0]["logits"].device.type == "cuda"
    assert hook.records[0]["teacher_logits"].device.type == "cuda"
    assert all(p.device.type == "cpu" for p in model.parameters()) and not model.training
