"""The teacher is fine-tuned once per (model, data, hyperparameters), resumes when interrupted, and is
retrained when any of those change."""
import dataclasses

import pytest
import torch

from bertcompress.data.tasks import Example
from bertcompress.training import teacher as teacher_module
from bertcompress.training.loop import TrainConfig
from bertcompress.training.teacher import get_teacher
from tests.conftest import interrupt_at, random_batch, record_training, tiny_model, toy_task

CONFIG = TrainConfig(max_steps=8, batch_size=8, learning_rate=3e-3, max_length=16, checkpoint_every=3)


@pytest.fixture
def source(tmp_path, tokenizer):
    """A local encoder without a task head, as a user's checkpoint is."""
    tiny_model().bert.save_pretrained(tmp_path / "tiny")
    tokenizer.save_pretrained(tmp_path / "tiny")
    return str(tmp_path / "tiny")


def _logits(model) -> torch.Tensor:
    with torch.no_grad():
        return model(**random_batch()).logits


def test_interrupted_teacher_fine_tune_resumes_to_the_same_teacher(source, tokenizer, cache, monkeypatch):
    task = toy_task()
    monkeypatch.setenv("BERTCOMPRESS_CACHE", str(cache / "straight"))
    straight = get_teacher(source, task, tokenizer, CONFIG)
    monkeypatch.setenv("BERTCOMPRESS_CACHE", str(cache / "resumed"))
    record_training(monkeypatch, teacher_module, hooks=(interrupt_at(7),))
    with pytest.raises(KeyboardInterrupt):  # checkpoints at steps 3 and 6 are kept
        get_teacher(source, task, tokenizer, CONFIG)
    results = record_training(monkeypatch, teacher_module, hooks=(interrupt_at(-1),))
    resumed = get_teacher(source, task, tokenizer, CONFIG)
    assert results[0].resumed_from == 6 and results[0].steps == 8 and resumed.cached is False
    assert resumed.path.name == straight.path.name
    assert torch.allclose(_logits(resumed.model), _logits(straight.model), atol=1e-5)
    assert not (cache / "resumed" / "checkpoints" / resumed.path.name).exists()  # cleaned once finished


def _changed_data(task):
    train = list(task.split("train"))
    train[0] = dataclasses.replace(train[0], text=train[0].text + " film")
    return dataclasses.replace(task, splits={**task.splits, "train": train})


def test_changing_data_or_hyperparameters_retrains_the_teacher(source, tokenizer, cache):
    task = toy_task()
    first = get_teacher(source, task, tokenizer, CONFIG)
    again = get_teacher(source, task, tokenizer, CONFIG)
    assert first.cached is False and again.cached is True and again.path == first.path
    assert torch.equal(_logits(again.model), _logits(first.model))
    # how often it checkpoints does not change what is trained
    assert get_teacher(source, task, tokenizer, CONFIG.model_copy(update={"checkpoint_every": 5})).cached is True
    paths = {first.path}
    for changed_task, config in [(_changed_data(task), CONFIG),
                                 (task, CONFIG.model_copy(update={"learning_rate": 1e-3})),
                                 (task, CONFIG.model_copy(update={"seed": 1}))]:
        retrained = get_teacher(source, changed_task, tokenizer, config)
        assert retrained.cached is False and retrained.path not in paths
        paths.add(retrained.path)
        assert not torch.equal(_logits(retrained.model), _logits(first.model))


def test_changed_labels_are_changed_data(source, tokenizer, cache):
    task = toy_task()
    first = get_teacher(source, task, tokenizer, CONFIG)
    train = [Example(e.text, 1 - e.label) for e in task.split("train")]
    flipped = dataclasses.replace(task, splits={**task.splits, "train": train})
    assert get_teacher(source, flipped, tokenizer, CONFIG).path != first.path
