"""Everything a method may need besides the model: task data, tokenizer, teacher, training settings, seed."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch.nn as nn
    from transformers import PreTrainedTokenizerBase

    from bertcompress.data.tasks import Task
    from bertcompress.training.loop import TrainConfig


@dataclass
class Context:
    task: "Task | None" = None
    tokenizer: "PreTrainedTokenizerBase | None" = None
    teacher: "nn.Module | None" = None
    train: "TrainConfig | None" = None
    seed: int = 0
    workdir: Path | None = None
    extras: dict = field(default_factory=dict)

    def checkpoint_dir(self, step_label: str) -> Path | None:
        """Where a training step keeps resumable checkpoints (none without a workdir)."""
        return None if self.workdir is None else Path(self.workdir) / step_label
