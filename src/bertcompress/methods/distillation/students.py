"""Students built from the teacher: keep some of its layers, with their weights (DistilBERT-style)."""
from __future__ import annotations

import torch.nn as nn

from bertcompress.arch.spec import get_spec
from bertcompress.core.errors import BertCompressError
from bertcompress.methods.pruning.layers import kept_layers
from bertcompress.surgery import prune_layers


def keep_teacher_layers(model: nn.Module, keep: int | None, strategy: str,
                        layers: list[int] | None = None) -> list[int]:
    """Cut `model` (a copy of the teacher) to the chosen layers in place; returns their teacher indices
    (0-based). `layers` names them explicitly; otherwise `keep` of them by `strategy`."""
    total = len(get_spec(model).layer_list(model))
    if layers is not None:
        bad = [i for i in layers if not 0 <= i < total]
        if bad or len(set(layers)) != len(layers) or not layers:
            raise BertCompressError(f"student_layers: {layers} must be distinct teacher layers in 0..{total - 1}")
        chosen = sorted(layers)
    else:
        chosen = kept_layers(total, keep, strategy)
    prune_layers(model, [i for i in range(total) if i not in chosen])
    return chosen
