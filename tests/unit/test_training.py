import pytest
import torch

from bertcompress.core.errors import BertCompressError
from bertcompress.data.batching import Encoded
from bertcompress.training.loop import TrainConfig, TrainingHook, distillation_loss, global_batch, train
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
