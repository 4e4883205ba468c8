"""Fine-tune the uncompressed model on the task once; later runs reuse it from the cache."""
from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch.nn as nn

from bertcompress.core.task_types import EMBEDDING
from bertcompress.data.assets import cache_dir, sha256_of
from bertcompress.data.batching import encode
from bertcompress.data.tasks import Task
from bertcompress.io import load, resolve, save
from bertcompress.training.loop import TrainConfig, train


@dataclass
class Teacher:
    model: nn.Module
    path: Path
    cached: bool
    train_seconds: float = 0.0


def teacher_key(model_source: str, task: Task, config: TrainConfig) -> str:
    model_path = resolve(model_source)
    weights = sorted(model_path.glob("*.safetensors")) or sorted(model_path.glob("*.bin"))
    digest = hashlib.sha256()
    for path in [model_path / "config.json", *weights]:
        digest.update(sha256_of(path).encode())
    digest.update(task.fingerprint().encode())
    digest.update(json.dumps(config.model_dump(exclude={"checkpoint_every"}), sort_keys=True).encode())
    return digest.hexdigest()[:20]


def name_labels(model, task: Task):
    """The task's label names in the config, so that every saved variant and export predicts by name (QA
    has none: its two outputs are span starts and ends)."""
    if not task.label_names:
        return model
    model.config.id2label = dict(enumerate(task.label_names))
    model.config.label2id = {name: index for index, name in enumerate(task.label_names)}
    return model


def get_teacher(model_source: str, task: Task, tokenizer, config: TrainConfig) -> Teacher:
    """The fine-tuned model (classification), or for embedding tasks the model as it is: its vectors are
    what compressed embedders must keep. Saved in the cache either way, so variants key on one path."""
    key = teacher_key(model_source, task, config)
    path = cache_dir() / "teachers" / key
    if task.type == EMBEDDING:
        if not (path / "manifest.json").exists():
            save(load(model_source, task_type=EMBEDDING), path, tokenizer,
                 extra={"teacher": {"task": task.name, "train": None}}, overwrite=True)
        return Teacher(load(path), path, cached=True)
    if (path / "manifest.json").exists():
        return Teacher(name_labels(load(path, num_labels=task.num_labels), task), path, cached=True)
    model = name_labels(load(model_source, num_labels=task.num_labels, seed=config.seed, task_type=task.type), task)
    checkpoints = cache_dir() / "checkpoints" / key
    result = train(model, encode(task.split("train"), tokenizer, config.max_length), config,
                   checkpoint_dir=checkpoints, description=f"fine-tune teacher on {task.name}")
    save(model, path, tokenizer, extra={"teacher": {"task": task.name, "train": config.model_dump()}})
    shutil.rmtree(checkpoints, ignore_errors=True)
    return Teacher(model, path, cached=False, train_seconds=result.seconds)
