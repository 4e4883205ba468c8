"""Which weights to keep, given importance scores: the mask rule (unstructured, N:M, b×b blocks; one
threshold across layers or one per layer), kept apart from the scoring as in torch.nn.utils.prune, and
the fixed-mask parametrization that applies a mask while training.

Scores are plain tensors shaped like the weights: |W| for magnitude pruning, learned scores for
movement pruning. Higher score = more worth keeping."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.utils.parametrize as parametrize

from bertcompress.core.errors import BertCompressError

PATTERNS = ("unstructured", "n:m", "block")
SCOPES = ("global", "layer")
BLOCK_NORMS = ("l2", "l1", "sum")  # sum: signed scores that add up (movement)


def check_sparsity(sparsity: float, field: str = "sparsity") -> None:
    if not 0 <= sparsity < 1:
        raise BertCompressError(f"{field}: must be in [0, 1) (got {sparsity!r})")


def _divisors(value: int) -> str:
    return ", ".join(str(d) for d in range(1, value + 1) if value % d == 0)


@dataclass(frozen=True)
class MaskRule:
    """The shape of what is removed. For n:m, every group of m consecutive weights along the input
    dimension keeps n; for blocks, whole b×b tiles are kept or removed, ranked by their norm."""

    pattern: str = "unstructured"
    n: int = 2
    m: int = 4
    block_size: int = 4
    block_norm: str = "l2"

    def __post_init__(self) -> None:
        if self.pattern not in PATTERNS:
            raise BertCompressError(f"pattern: {self.pattern!r} is not one of {', '.join(PATTERNS)}")
        if self.block_norm not in BLOCK_NORMS:
            raise BertCompressError(f"block_norm: {self.block_norm!r} is not one of {', '.join(BLOCK_NORMS)}")
        if self.pattern == "n:m" and not 1 <= self.n <= self.m:
            raise BertCompressError(f"n: must be in 1..m (got n={self.n}, m={self.m})")
        if self.pattern == "block" and self.block_size < 1:
            raise BertCompressError(f"block_size: must be >= 1 (got {self.block_size})")

    def check_shape(self, shape: tuple[int, ...], name: str = "weight") -> None:
        rows, cols = shape
        if self.pattern == "n:m" and cols % self.m:
            raise BertCompressError(f"m: {self.m} does not divide the input dimension {cols} of {name}; "
                                    f"allowed m: {_divisors(cols)}")
        if self.pattern == "block" and (rows % self.block_size or cols % self.block_size):
            raise BertCompressError(f"block_size: {self.block_size} does not divide the weight shape "
                                    f"({rows}, {cols}) of {name}; allowed: {_divisors(_gcd(rows, cols))}")

    @property
    def nm_sparsity(self) -> float:
        return 1 - self.n / self.m


def _gcd(a: int, b: int) -> int:
    return a if b == 0 else _gcd(b, a % b)


def magnitude_scores(modules: Mapping[str, nn.Module]) -> dict[str, torch.Tensor]:
    """|W| per module; for a masked (parametrized) module that is the masked weight, so what was pruned
    scores 0 and stays pruned as the schedule raises sparsity."""
    return {name: module.weight.detach().abs() for name, module in modules.items()}


def block_scores(scores: torch.Tensor, block_size: int, norm: str = "l2") -> torch.Tensor:
    """One score per b×b tile: the tile's L2 norm, L1 norm or plain sum, shape (rows/b, cols/b)."""
    rows, cols = scores.shape
    tiles = scores.reshape(rows // block_size, block_size, cols // block_size, block_size)
    if norm == "sum":
        return tiles.sum(dim=(1, 3))
    return tiles.abs().sum(dim=(1, 3)) if norm == "l1" else tiles.pow(2).sum(dim=(1, 3)).sqrt()


def keep_all_but_lowest(flat: torch.Tensor, count: int) -> torch.Tensor:
    """Boolean keep-mask removing exactly `count` lowest entries; ties go in index order (deterministic)."""
    keep = torch.ones_like(flat, dtype=torch.bool)
    if count <= 0:
        return keep
    threshold = flat.kthvalue(count).values
    below = flat < threshold
    ties = (flat == threshold).nonzero().flatten()[: count - int(below.sum())]
    keep[below] = False
    keep[ties] = False
    return keep


def _threshold_masks(units: Mapping[str, torch.Tensor], sparsity: float, scope: str) -> dict[str, torch.Tensor]:
    """Keep-masks over score units (weights or blocks): one ranking across all, or one per tensor."""
    if scope == "layer":
        return {name: keep_all_but_lowest(s.flatten(), round(sparsity * s.numel())).view_as(s)
                for name, s in units.items()}
    flat = torch.cat([s.flatten().float() for s in units.values()])
    keep = keep_all_but_lowest(flat, round(sparsity * flat.numel()))
    masks, start = {}, 0
    for name, s in units.items():
        masks[name] = keep[start : start + s.numel()].view_as(s)
        start += s.numel()
    return masks


def nm_mask(scores: torch.Tensor, keep: int, m: int) -> torch.Tensor:
    """Keep the `keep` highest of every m consecutive scores along the input dimension."""
    rows, cols = scores.shape
    groups = scores.reshape(rows, cols // m, m)
    mask = torch.zeros_like(groups, dtype=torch.bool)
    mask.scatter_(-1, groups.topk(keep, dim=-1, sorted=False).indices, True)
    return mask.view(rows, cols)


def nm_keep(sparsity: float, rule: MaskRule) -> int:
    """Weights kept per group at `sparsity`: m - round(s·m), never fewer than n, so a gradual schedule
    steps m:m -> ... -> n:m and ends exactly at n:m."""
    return max(rule.n, rule.m - round(sparsity * rule.m))


def compute_masks(scores: Mapping[str, torch.Tensor], sparsity: float, rule: MaskRule,
                  scope: str = "global") -> dict[str, torch.Tensor]:
    """Boolean keep-masks shaped like each score tensor."""
    check_sparsity(sparsity)
    if scope not in SCOPES:
        raise BertCompressError(f"scope: {scope!r} is not one of {', '.join(SCOPES)}")
    for name, s in scores.items():
        rule.check_shape(tuple(s.shape), name)
    if rule.pattern == "n:m":
        return {name: nm_mask(s, nm_keep(sparsity, rule), rule.m) for name, s in scores.items()}
    if rule.pattern == "unstructured":
        return _threshold_masks(scores, sparsity, scope)
    b = rule.block_size
    grids = _threshold_masks({n: block_scores(s, b, rule.block_norm) for n, s in scores.items()}, sparsity, scope)
    return {name: g.repeat_interleave(b, 0).repeat_interleave(b, 1) for name, g in grids.items()}


class FixedMask(nn.Module):
    """Parametrization weight -> weight · mask. The mask is a buffer (saved with training checkpoints)
    that only `set_mask` changes; gradients of removed weights are zero."""

    def __init__(self, mask: torch.Tensor):
        super().__init__()
        self.register_buffer("mask", mask.detach().clone().bool())

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return weight * self.mask

    def set_mask(self, mask: torch.Tensor) -> None:
        self.mask.copy_(mask)


def attach_masks(modules: Mapping[str, nn.Module], masks: Mapping[str, torch.Tensor]) -> None:
    for name, module in modules.items():
        parametrize.register_parametrization(module, "weight", FixedMask(masks[name].to(module.weight.device)))


def mask_of(module: nn.Module) -> torch.Tensor:
    return next(p for p in module.parametrizations.weight if isinstance(p, FixedMask)).mask


def update_masks(modules: Mapping[str, nn.Module], masks: Mapping[str, torch.Tensor]) -> None:
    for name, module in modules.items():
        mask_of(module).copy_(masks[name])


def bake_masks(modules: Mapping[str, nn.Module]) -> None:
    """Write weight · mask into the weight and drop the parametrization: a plain Linear again."""
    for module in modules.values():
        parametrize.remove_parametrizations(module, "weight", leave_parametrized=True)


def sparsity_of(tensors: Mapping[str, torch.Tensor]) -> float:
    """Fraction of zeros across all given tensors (weights or keep-masks)."""
    total = sum(t.numel() for t in tensors.values())
    zeros = sum(int((t == 0).sum()) for t in tensors.values())
    return zeros / total if total else 0.0
