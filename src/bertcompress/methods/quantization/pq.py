"""Product quantization (iPQ, Stock et al. / Fan et al.): rows are cut into sub-vectors of `block_size`,
each replaced by the nearest of `codebook_size` k-means centroids. Stored as a codebook + uint8 indices."""
from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from bertcompress.core.errors import BertCompressError
from bertcompress.core.modules import replacement

ASSIGN_CHUNK = 65_536  # sub-vectors per distance computation: bounds memory for embedding tables


def subvectors(weight: torch.Tensor, block_size: int) -> torch.Tensor:
    if weight.shape[1] % block_size:
        raise BertCompressError(f"block_size: {block_size} does not divide the weight's input dimension "
                                f"{weight.shape[1]}; choose a divisor of {weight.shape[1]}")
    return weight.detach().reshape(-1, block_size)


def assign(vectors: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    return torch.cat([torch.cdist(chunk, codebook).argmin(1) for chunk in vectors.split(ASSIGN_CHUNK)])


def kmeans(vectors: torch.Tensor, k: int, iterations: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Lloyd's k-means from k distinct random sub-vectors; empty clusters keep their centroid."""
    k = min(k, vectors.shape[0])
    generator = torch.Generator().manual_seed(seed)
    codebook = vectors[torch.randperm(vectors.shape[0], generator=generator)[:k]].clone()
    for _ in range(iterations):
        codes = assign(vectors, codebook)
        sums = torch.zeros_like(codebook).index_add_(0, codes, vectors)
        counts = torch.bincount(codes, minlength=k).unsqueeze(1)
        codebook = torch.where(counts > 0, sums / counts.clamp_min(1), codebook)
    return codebook, assign(vectors, codebook)


def reconstruct(codebook: torch.Tensor, codes: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    return codebook[codes.long()].reshape(shape)


def _index_dtype(k: int) -> torch.dtype:
    return torch.uint8 if k <= 256 else torch.int16


@replacement
class PQLinear(nn.Module):
    """A Linear stored as a PQ codebook and one index per sub-vector; the weight is rebuilt once for compute."""

    def __init__(self, in_features: int, out_features: int, bias: bool, block_size: int, codebook_size: int):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.block_size, self.codebook_size = block_size, codebook_size
        self.register_buffer("codebook", torch.zeros(codebook_size, block_size))
        self.register_buffer("codes", torch.zeros(out_features * in_features // block_size,
                                                  dtype=_index_dtype(codebook_size)))
        self.bias = nn.Parameter(torch.zeros(out_features), requires_grad=False) if bias else None
        self._weight: torch.Tensor | None = None

    @classmethod
    def from_linear(cls, linear: nn.Linear, block_size: int, codebook_size: int, iterations: int = 15,
                    seed: int = 0) -> "PQLinear":
        codebook, codes = kmeans(subvectors(linear.weight, block_size), codebook_size, iterations, seed)
        module = cls(linear.in_features, linear.out_features, linear.bias is not None, block_size, codebook.shape[0])
        module.codebook.copy_(codebook)
        module.codes.copy_(codes.to(module.codes.dtype))
        if linear.bias is not None:
            module.bias.data.copy_(linear.bias.detach())
        return module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._weight is None:
            self._weight = reconstruct(self.codebook, self.codes, (self.out_features, self.in_features))
        return F.linear(x, self._weight, self.bias)

    def _load_from_state_dict(self, *args, **kwargs):
        self._weight = None
        super()._load_from_state_dict(*args, **kwargs)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, PQ {self.codebook_size} "
                f"centroids x {self.block_size}")

    def manifest_entry(self) -> dict[str, Any]:
        return {"class": type(self).__name__, "in_features": self.in_features, "out_features": self.out_features,
                "bias": self.bias is not None, "block_size": self.block_size, "codebook_size": self.codebook_size}

    @classmethod
    def from_manifest(cls, entry: dict[str, Any]) -> "PQLinear":
        return cls(entry["in_features"], entry["out_features"], entry["bias"], entry["block_size"],
                   entry["codebook_size"])
