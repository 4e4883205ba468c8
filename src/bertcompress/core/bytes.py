"""Bytes as stored: exactly what a module's state dict saves (an int8 weight counts one byte, not four).

Below methods and evaluation alike, so both count the same way (a method reports what it saved, evaluation
measures any model)."""
from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

import torch
import torch.nn as nn


def tensor_bytes(tensor: torch.Tensor) -> int:
    return tensor.numel() * tensor.element_size()


def stored_tensors(module: nn.Module) -> Iterable[tuple[str, torch.Tensor]]:
    """(name, tensor) for every parameter and persistent buffer: exactly what the state dict saves."""
    return module.state_dict().items()


def stored_bytes(module: nn.Module) -> int:
    return sum(tensor_bytes(t) for _, t in stored_tensors(module))


class ByteSnapshot:
    """A model's stored bytes, in total and per module, taken before a step changes it; compared afterwards
    either as a whole or over the modules the step replaced (a different object now sits at the name)."""

    def __init__(self, model: nn.Module):
        self.total = stored_bytes(model)
        self.modules = dict(model.named_modules())
        # one state-dict pass, summed into every enclosing module name: stored_bytes per module, cheaply
        self.by_module: Counter[str] = Counter()
        for key, tensor in stored_tensors(model):
            parts = key.split(".")[:-1]
            for depth in range(len(parts) + 1):
                self.by_module[".".join(parts[:depth])] += tensor_bytes(tensor)

    def replaced(self, model: nn.Module) -> list[str]:
        """Names where another module now sits, outermost only (a replaced module's children go with it)."""
        changed = [name for name, module in model.named_modules()
                   if name in self.modules and self.modules[name] is not module]
        return [name for name in changed if not any(name.startswith(f"{outer}.") for outer in changed)]

    def replaced_bytes(self, model: nn.Module) -> tuple[int, int]:
        """Bytes of the replaced modules before and of their replacements now."""
        names = self.replaced(model)
        return (sum(self.by_module[name] for name in names),
                sum(stored_bytes(model.get_submodule(name)) for name in names))
