"""Unlabelled in-domain text for distillation: the teacher labels it, the hard loss ignores it."""
import copy
from types import SimpleNamespace

import torch

import bertcompress as bc
from bertcompress.data.tasks import Example
from bertcompress.training import finetune as finetune_module
from bertcompress.training.loop import TrainConfig, _label_losses
from tests.conftest import tiny_model, tiny_tokenizer, toy_task

UNLABELLED = [Example(f"superb awful film plot {i}", -1) for i in range(24)]


def test_unlabelled_examples_add_no_label_loss():
    logits = torch.randn(4, 2, requires_grad=True)
    losses = _label_losses("classification", SimpleNamespace(logits=logits), {"labels": torch.tensor([1, -1, 0, -1])},
                           TrainConfig(), distilling=True)
    assert losses[1] == 0 and losses[3] == 0 and losses[0] > 0 and losses[2] > 0


def distil(unlabelled, monkeypatch) -> tuple[torch.nn.Module, list[int]]:
    sizes = []
    real = finetune_module.train

    def counting(model, data, *args, **kwargs):
        sizes.append(len(data))
        return real(model, data, *args, **kwargs)

    monkeypatch.setattr(finetune_module, "train", counting)
    teacher = tiny_model(seed=1)
    student = copy.deepcopy(teacher)
    ctx = bc.Context(task=toy_task(), tokenizer=tiny_tokenizer(),
                     teacher=teacher, train=bc.TrainConfig(batch_size=8, max_length=16), unlabelled=unlabelled)
    bc.compress(student, bc.Distillation(keep=1, max_steps=8), ctx)
    return student, sizes


def test_distillation_learns_from_the_unlabelled_text_too(monkeypatch):
    plain, plain_sizes = distil((), monkeypatch)
    extra, extra_sizes = distil(UNLABELLED, monkeypatch)
    assert extra_sizes[0] == plain_sizes[0] + len(UNLABELLED)
    assert any(not torch.equal(a, b) for a, b in zip(plain.state_dict().values(), extra.state_dict().values()))


def test_steps_without_a_teacher_never_see_unlabelled_text(monkeypatch):
    sizes = []
    monkeypatch.setattr(finetune_module, "train", lambda model, data, *a, **k: sizes.append(len(data)))
    ctx = bc.Context(task=toy_task(), tokenizer=tiny_tokenizer(),
                     train=bc.TrainConfig(batch_size=8, max_length=16), unlabelled=UNLABELLED)
    finetune_module.finetune(tiny_model(), ctx, "labels-only", epochs=1.0, learning_rate=1e-4, distill=False)
    assert sizes == [len(toy_task().split("train"))]
