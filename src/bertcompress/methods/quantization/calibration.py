"""Observe the input range of chosen modules over calibration examples (min/max or percentile)."""
from __future__ import annotations

import torch
import torch.nn as nn

from bertcompress.core.context import Context
from bertcompress.core.errors import BertCompressError
from bertcompress.data.batching import encode, model_inputs

PERCENTILE_SAMPLE = 200_000  # values sampled per batch: torch.quantile has an input size limit


class RangeObserver:
    def __init__(self, observer: str, percentile: float):
        self.observer, self.percentile = observer, percentile
        self.lows: list[float] = []
        self.highs: list[float] = []

    def __call__(self, module, inputs) -> None:
        x = inputs[0].detach().reshape(-1).float()
        if self.observer == "minmax":
            self.lows.append(x.min().item())
            self.highs.append(x.max().item())
            return
        if x.numel() > PERCENTILE_SAMPLE:
            x = x[torch.randint(0, x.numel(), (PERCENTILE_SAMPLE,), generator=torch.Generator().manual_seed(0))]
        q = torch.tensor([1 - self.percentile / 100, self.percentile / 100])
        low, high = torch.quantile(x, q).tolist()
        self.lows.append(low)
        self.highs.append(high)

    def range(self) -> tuple[float, float]:
        if self.observer == "minmax":
            return min(self.lows), max(self.highs)
        return sum(self.lows) / len(self.lows), sum(self.highs) / len(self.highs)


@torch.inference_mode()
def observe_input_ranges(model: nn.Module, modules: dict[str, nn.Module], ctx: Context, examples: int,
                         observer: str, percentile: float, field: str) -> dict[str, tuple[float, float]]:
    if ctx.task is None or ctx.tokenizer is None:
        raise BertCompressError(f"{field}: static activation quantization needs calibration data; "
                                "pass a Context with a task and a tokenizer")
    data = encode(ctx.task.split("train")[:examples], ctx.tokenizer, ctx.train.max_length if ctx.train else 64)
    observers = {name: RangeObserver(observer, percentile) for name in modules}
    handles = [module.register_forward_pre_hook(observers[name]) for name, module in modules.items()]
    try:
        model.eval()
        for start in range(0, len(data), 32):
            model(**model_inputs(data.batch(list(range(start, min(start + 32, len(data)))))))
    finally:
        for handle in handles:
            handle.remove()
    return {name: obs.range() for name, obs in observers.items()}
