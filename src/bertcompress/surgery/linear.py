"""Shrinking and factorising single Linear layers."""
from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn

from bertcompress.core.errors import BertCompressError
from bertcompress.core.modules import ExportOptions, frozen_linear, replacement


def _require_linear(module: nn.Module, name: str) -> nn.Linear:
    if type(module) is not nn.Linear:
        raise BertCompressError(f"{name} is a {type(module).__name__}; structural surgery needs plain float "
                                "Linears (prune before quantizing or factorising)")
    return module


def keep_rows(linear: nn.Linear, index: torch.Tensor) -> nn.Linear:
    """A Linear with only the given output features."""
    out = nn.Linear(linear.in_features, len(index), bias=linear.bias is not None)
    with torch.no_grad():
        out.weight.copy_(linear.weight[index])
        if linear.bias is not None:
            out.bias.copy_(linear.bias[index])
    return out


def keep_columns(linear: nn.Linear, index: torch.Tensor) -> nn.Linear:
    """A Linear with only the given input features."""
    out = nn.Linear(len(index), linear.out_features, bias=linear.bias is not None)
    with torch.no_grad():
        out.weight.copy_(linear.weight[:, index])
        if linear.bias is not None:
            out.bias.copy_(linear.bias)
    return out


@replacement
class LowRankLinear(nn.Module):
    """W ≈ up · down with rank r: two Linears of r(in + out) weights instead of in · out."""

    def __init__(self, in_features: int, out_features: int, rank: int, bias: bool = True):
        super().__init__()
        self.in_features, self.out_features, self.rank = in_features, out_features, rank
        self.down = nn.Linear(in_features, rank, bias=False)
        self.up = nn.Linear(rank, out_features, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(self.down(x))

    def manifest_entry(self) -> dict[str, Any]:
        return {"class": type(self).__name__, "in_features": self.in_features, "out_features": self.out_features,
                "rank": self.rank, "bias": self.up.bias is not None}

    @classmethod
    def from_manifest(cls, entry: dict[str, Any]) -> "LowRankLinear":
        return cls(entry["in_features"], entry["out_features"], entry["rank"], entry["bias"])

    def export_standin(self, options: ExportOptions) -> nn.Module:
        """Itself (two MatMuls); plain, the product of its factors as one Linear, which loses the speed."""
        if not options.plain:
            return self
        if type(self.down) is not nn.Linear or type(self.up) is not nn.Linear:
            raise BertCompressError("a low-rank pair whose factors were replaced has no stock torch equivalent")
        return frozen_linear(self.up.weight @ self.down.weight, None if self.up.bias is None else self.up.bias)


def factorize(linear: nn.Linear, rank: int, name: str = "linear") -> LowRankLinear:
    """Best rank-r approximation (truncated SVD), split evenly between the two factors."""
    linear = _require_linear(linear, name)
    limit = min(linear.in_features, linear.out_features)
    if not 1 <= rank <= limit:
        raise BertCompressError(f"rank: {rank} for {name} is outside 1..{limit} (min of its dimensions)")
    u, s, vh = torch.linalg.svd(linear.weight.detach(), full_matrices=False)
    root = s[:rank].sqrt()
    module = LowRankLinear(linear.in_features, linear.out_features, rank, linear.bias is not None)
    with torch.no_grad():
        module.down.weight.copy_(root[:, None] * vh[:rank])
        module.up.weight.copy_(u[:, :rank] * root)
        if linear.bias is not None:
            module.up.bias.copy_(linear.bias)
    return module
