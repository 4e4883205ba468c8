"""Everything a method may need besides the model: task data, tokenizer, teacher, training settings, seed.

The task and training settings are described by the small protocols below, so `core` needs nothing from
`data` or `training` (their `Task` and `TrainConfig` satisfy them)."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import torch.nn as nn
    from transformers import PreTrainedTokenizerBase


class TaskData(Protocol):
    """What methods read from a task: its name, label count and examples per split."""

    name: str

    @property
    def num_labels(self) -> int: ...

    def split(self, name: str) -> Sequence[Any]: ...


class TrainSettings(Protocol):
    """The training settings a Context carries; methods read a few and copy them with their own changes."""

    batch_size: int
    max_length: int

    def model_copy(self, *, update: dict[str, Any] | None = None, deep: bool = False) -> "TrainSettings": ...


@dataclass
class Context:
    task: TaskData | None = None
    tokenizer: "PreTrainedTokenizerBase | None" = None
    teacher: "nn.Module | None" = None
    train: TrainSettings | None = None
    seed: int = 0
    workdir: Path | None = None
    extras: dict = field(default_factory=dict)
    # unlabelled examples (label -1) that distillation steps add to the training split: the teacher labels them
    unlabelled: Sequence[Any] = ()

    def checkpoint_dir(self, step_label: str) -> Path | None:
        """Where a training step keeps resumable checkpoints (none without a workdir)."""
        return None if self.workdir is None else Path(self.workdir) / step_label
