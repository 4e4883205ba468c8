"""Activation fake quantization with a range learned in training (Q8BERT's exponential moving average of the
largest |value|) and fixed after it: what static int8 deployment needs. Symmetric [-m, m] (int8), or [0, m]
for activations that are never negative (softmax weights: uint8, twice the resolution)."""
from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn

from bertcompress.core.errors import BertCompressError
from bertcompress.core.modules import ExportOptions, replacement
from bertcompress.methods.quantization.packed import FixedRangeQuantizer
from bertcompress.methods.quantization.qdq_export import QdqQuantizer
from bertcompress.methods.quantization.quantizers import QuantSpec, fake_quantize, qparams_from_range


@replacement
class EmaRangeQuantizer(nn.Module):
    def __init__(self, bits: int = 8, unsigned: bool = False, decay: float = 0.99):
        super().__init__()
        self.spec, self.unsigned, self.decay = QuantSpec(bits, not unsigned, "tensor"), unsigned, decay
        self.register_buffer("max_abs", torch.zeros(()))
        self.register_buffer("seen", torch.zeros((), dtype=torch.bool))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            current = x.detach().abs().max()
            self.max_abs.copy_(torch.where(self.seen, self.decay * self.max_abs + (1 - self.decay) * current, current))
            self.seen.fill_(True)
        if not self.seen:
            return x
        scale, zero = self.qparams()
        return fake_quantize(x, self.spec, scale, zero)

    def range(self) -> tuple[float, float] | None:
        """The learned (low, high), or None before any training batch."""
        if not bool(self.seen):
            return None
        return (0.0 if self.unsigned else -float(self.max_abs)), float(self.max_abs)

    def qparams(self) -> tuple[torch.Tensor, torch.Tensor]:
        high = self.max_abs.reshape(1)
        return qparams_from_range(torch.zeros_like(high) if self.unsigned else -high, high, self.spec)

    def extra_repr(self) -> str:
        learned = self.range()
        where = "not trained" if learned is None else f"[{learned[0]:.4g}, {learned[1]:.4g}]"
        return f"{self.spec.bits}-bit {'unsigned' if self.unsigned else 'symmetric'}, range {where}"

    def manifest_entry(self) -> dict[str, Any]:
        return {"class": type(self).__name__, "bits": self.spec.bits, "unsigned": self.unsigned, "decay": self.decay}

    @classmethod
    def from_manifest(cls, entry: dict[str, Any]) -> "EmaRangeQuantizer":
        return cls(entry["bits"], entry["unsigned"], entry["decay"])

    def export_standin(self, options: ExportOptions) -> nn.Module:
        """QuantizeLinear/DequantizeLinear where the runtime runs them as int8 kernels; else the same rounding
        in plain float ops; nothing before any range was trained (it passes its input through)."""
        if options.plain:
            raise BertCompressError("an activation quantized with a trained range has no stock Transformers "
                                    "equivalent")
        if not bool(self.seen):
            return nn.Identity()
        scale, zero = self.qparams()
        if self._runs_as_int8(options):
            return QdqQuantizer(scale, zero, symmetric=not self.unsigned)
        return FixedRangeQuantizer(scale, zero, self.spec)

    def standin_is_exact(self, options: ExportOptions) -> bool:
        # int8 kernels: the same grid, other rounding of the sums and at the -128 edge
        return not (self._runs_as_int8(options) and bool(self.seen))

    def _runs_as_int8(self, options: ExportOptions) -> bool:
        return options.qdq and self.spec.bits == 8
