"""Shared fixtures: tiny random BERT-family models and a tiny WordPiece tokenizer, built in-process."""
from __future__ import annotations

import os

import pytest
import torch
from transformers import (BertConfig, BertForSequenceClassification, BertTokenizerFast, DistilBertConfig,
                          DistilBertForSequenceClassification, ElectraConfig, ElectraForSequenceClassification,
                          RobertaConfig, RobertaForSequenceClassification)

WORDS = ("good great fine bad awful boring movie film plot actor story fun dull superb terrible the a is was "
         "and not very claim evidence true false").split()

TINY = dict(vocab_size=64, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=48,
            max_position_embeddings=64, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)


def tiny_config(family: str = "bert", num_labels: int = 2, layers: int = 2):
    tiny = {**TINY, "num_hidden_layers": layers}
    if family == "bert":
        return BertConfig(num_labels=num_labels, **tiny)
    if family == "roberta":
        return RobertaConfig(num_labels=num_labels, pad_token_id=1, **{**tiny, "max_position_embeddings": 70})
    if family == "electra":
        return ElectraConfig(num_labels=num_labels, embedding_size=32, **tiny)
    if family == "distilbert":
        return DistilBertConfig(vocab_size=64, dim=32, n_layers=layers, n_heads=4, hidden_dim=48, dropout=0.0,
                                attention_dropout=0.0, max_position_embeddings=64, num_labels=num_labels)
    raise ValueError(family)


CLASSIFIERS = {"bert": BertForSequenceClassification, "roberta": RobertaForSequenceClassification,
               "electra": ElectraForSequenceClassification, "distilbert": DistilBertForSequenceClassification}


def tiny_model(family: str = "bert", num_labels: int = 2, seed: int = 0, layers: int = 2,
               task_type: str = "classification") -> torch.nn.Module:
    """A tiny random model of the family with the head of `task_type` (a bare encoder for embeddings)."""
    from bertcompress.core.task_types import auto_class

    torch.manual_seed(seed)
    config = tiny_config(family, num_labels, layers)
    if task_type == "classification":
        return CLASSIFIERS[family](config).eval()
    return auto_class(task_type).from_config(config).eval()


FAMILIES = ("bert", "roberta", "electra", "distilbert")

if os.environ.get("PYTEST_XDIST_WORKER"):
    # One thread per worker: the workers share the cores, and oversubscribed torch threads slow both.
    torch.set_num_threads(1)


@pytest.fixture
def scratch_registry(monkeypatch):
    """Registrations made by a test disappear with it."""
    from bertcompress.core import registry

    monkeypatch.setattr(registry, "_REGISTERED", dict(registry._REGISTERED))
    monkeypatch.setattr(registry, "_BY_NAME", dict(registry._BY_NAME))


@pytest.fixture
def model():
    return tiny_model()


@pytest.fixture
def tokenizer():
    return tiny_tokenizer()


SPECIAL = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


def tiny_tokenizer() -> BertTokenizerFast:
    """WordPiece over WORDS. Built from a dict: transformers 5 ignores `vocab_file=` here and would leave
    only the 5 special tokens, turning every word into [UNK]."""
    tokenizer = BertTokenizerFast(vocab={t: i for i, t in enumerate((*SPECIAL, *WORDS))}, do_lower_case=True)
    assert tokenizer.convert_tokens_to_ids("good") == len(SPECIAL)
    return tokenizer


def random_batch(batch_size: int = 3, length: int = 10, vocab: int = 64, seed: int = 1) -> dict:
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, vocab, (batch_size, length), generator=generator)
    mask = torch.ones_like(ids)
    mask[0, length // 2 :] = 0  # one padded row exercises the attention mask
    return {"input_ids": ids, "attention_mask": mask}


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """An empty bertcompress cache for this test only."""
    path = tmp_path / "cache"
    monkeypatch.setenv("BERTCOMPRESS_CACHE", str(path))
    return path


def toy_task(task_type: str = "classification"):
    from bertcompress.data.tasks import Example, Task

    if task_type == "question_answering":
        return toy_qa_task()
    if task_type == "token_classification":
        return toy_tagging_task()
    words = "good fine superb bad dull awful movie film".split()
    examples = [Example(" ".join(words[(i + j) % 8] for j in range(5)), i % 2) for i in range(40)]
    return Task("toy", ["neg", "pos"], {"train": examples, "validation": examples[:8], "test": examples[:8]},
                type=task_type)


def toy_qa_task():
    """40 questions whose answer is the third word of a six-word context (each word once per context)."""
    from bertcompress.data.qa import Answer, QAExample
    from bertcompress.data.tasks import Task

    words = "good fine superb bad dull awful movie film".split()
    examples = []
    for i in range(40):
        context = " ".join(words[(i + j) % 8] for j in range(6))
        answer = words[(i + 2) % 8]
        examples.append(QAExample(str(i), "which film", context, (Answer(answer, context.index(answer)),)))
    return Task("toy-qa", [], {"train": examples, "validation": examples[:8], "test": examples[:8]},
                type="question_answering")


def toy_tagging_task():
    """40 sentences tagged B-ENT on 'good'/'superb' (and I-ENT on a following 'film'), O elsewhere."""
    from bertcompress.data.tagging import TaggedExample
    from bertcompress.data.tasks import Task

    words = "good film superb bad dull awful movie film".split()
    examples = []
    for i in range(40):
        sentence = [words[(i + j) % 8] for j in range(6)]
        tags = [1 if w in ("good", "superb") else 2 if w == "film" and k and sentence[k - 1] in ("good", "superb")
                else 0 for k, w in enumerate(sentence)]
        examples.append(TaggedExample(tuple(sentence), tuple(tags)))
    return Task("toy-tags", ["O", "B-ENT", "I-ENT"], {"train": examples, "validation": examples[:8],
                                                       "test": examples[:8]}, type="token_classification")


def interrupt_at(step: int):
    """A training hook that raises KeyboardInterrupt after optimizer step `step` (-1: never), as Ctrl-C would."""
    from bertcompress.training.hooks import TrainingHook

    class Interrupt(TrainingHook):
        def after_step(self, model, state):
            if state.step == step:
                raise KeyboardInterrupt

    return Interrupt()


class InterruptingTeacher(torch.nn.Module):
    """Wraps a teacher; its forward number `after + 1` raises KeyboardInterrupt, as Ctrl-C mid-step would.
    A distilling loop calls the teacher once per step, so `after` steps complete."""

    def __init__(self, teacher: torch.nn.Module, after: int):
        super().__init__()
        self.teacher, self.after, self.calls = teacher, after, 0

    def forward(self, **inputs):
        self.calls += 1
        if self.calls > self.after:
            raise KeyboardInterrupt
        return self.teacher(**inputs)


def record_training(monkeypatch, module, hooks: tuple = ()) -> list:
    """Wrap `module.train` (the loop as that module imported it): each call appends its TrainResult and
    runs with `hooks` added."""
    from bertcompress.training import loop

    results = []

    def recorded(*args, **kwargs):
        kwargs["hooks"] = (*kwargs.get("hooks", ()), *hooks)
        results.append(loop.train(*args, **kwargs))
        return results[-1]

    monkeypatch.setattr(module, "train", recorded)
    return results


def assert_finite_and_reloads_identically(model: torch.nn.Module, tokenizer, directory) -> None:
    """Finite logits on a random batch, and the same logits after save and load."""
    import bertcompress as bc

    batch = random_batch()
    with torch.no_grad():
        logits = model(**batch).logits
        assert torch.isfinite(logits).all()
        bc.save(model, directory, tokenizer)
        assert torch.equal(bc.load(directory)(**batch).logits, logits)
