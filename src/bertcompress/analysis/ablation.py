"""Michel et al. (2019) ablations: accuracy without each single head, with only one head left in a layer,
and with a whole layer's attention disabled. Heads are switched off by zeroing the importance gates
(`unit_gates`), i.e. their context vectors never reach the attention-output Linear; no weights change."""
from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn as nn

from bertcompress.arch.spec import get_spec
from bertcompress.data.batching import Encoded
from bertcompress.evaluation.metrics import accuracy, predict
from bertcompress.methods.pruning.importance import unit_gates
from bertcompress.surgery.heads import head_count


@contextmanager
def heads_disabled(model: nn.Module, heads_by_layer: dict[int, Iterable[int]]) -> Iterator[nn.Module]:
    """Within the block the given heads contribute nothing (an empty plan changes nothing)."""
    with unit_gates(model, "heads") as gates:
        with torch.no_grad():  # the gates are leaves that require grad (made for gradient_importance)
            for layer, heads in heads_by_layer.items():
                gates[layer][list(heads)] = 0.0
        yield model


@dataclass
class AblationResult:
    base: float
    without_head: list[list[float]]  # [layer][head]: accuracy with that head off
    only_head: list[list[float]] | None  # [layer][head]: accuracy with every other head of the layer off
    without_layer: list[float]  # [layer]: accuracy with all heads of the layer off

    def improving_heads(self) -> list[tuple[int, int, float]]:
        """(layer, head, Δ accuracy) of heads whose removal raises accuracy (Kovaleva et al.), best first."""
        found = [(layer, head, acc - self.base) for layer, heads in enumerate(self.without_head)
                 for head, acc in enumerate(heads) if acc > self.base]
        return sorted(found, key=lambda item: -item[2])

    def best_single_heads(self) -> list[tuple[int, float]]:
        """Per layer: (head, accuracy) of the head that, kept alone in its layer, scores best (Michel Table 2)."""
        if self.only_head is None:
            return []
        return [max(enumerate(heads), key=lambda item: item[1]) for heads in self.only_head]


def ablate_heads(model: nn.Module, data: Encoded, keep_one: bool = True, batch_size: int = 64) -> AblationResult:
    """All ablations on `data`: 1 + L*H (+ L*H with keep_one) + L evaluations. Restores train mode."""
    def score(plan: dict[int, Iterable[int]]) -> float:
        with heads_disabled(model, plan):
            return accuracy(predict(model, data, batch_size), data.labels)

    was_training = model.training
    counts = [head_count(model, layer) for layer in range(len(get_spec(model).layer_list(model)))]
    try:
        base = score({})
        without = [[score({layer: [head]}) for head in range(n)] for layer, n in enumerate(counts)]
        layers = [score({layer: range(n)}) for layer, n in enumerate(counts)]
        only = [[score({layer: [h for h in range(n) if h != head]}) for head in range(n)]
                for layer, n in enumerate(counts)] if keep_one else None
    finally:
        model.train(was_training)
    return AblationResult(base, without, only, layers)
