"""Product quantization (iPQ, Stock et al. / Fan et al.): rows are cut into sub-vectors of `block_size`,
each replaced by the nearest of `codebook_size` k-means centroids. Stored as a codebook + uint8 indices."""
from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from bertcompress.core.errors import BertCompressError
from bertcompress.core.modules import ExportOptions, frozen_embedding, frozen_linear, replacement

ASSIGN_CHUNK = 65_536  # sub-vectors per distance computation: bounds memory for embedding tables


def subvectors(weight: torch.Tensor, block_size: int) -> torch.Tensor:
    if weight.shape[1] % block_size:
        raise BertCompressError(f"block_size: {block_size} does not divide the weight's input dimension "
                                f"{weight.shape[1]}; choose a divisor of {weight.shape[1]}")
    return weight.detach().reshape(-1, block_size)


def assign(vectors: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    return torch.cat([torch.cdist(chunk, codebook).argmin(1) for chunk in vectors.split(ASSIGN_CHUNK)])


def kmeans(vectors: torch.Tensor, k: int, iterations: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Lloyd's k-means from k distinct random sub-vectors (k at most their number); empty clusters keep
    their centroid."""
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


class ProductQuantized(nn.Module):
    """Shared storage of PQ modules: a codebook (a frozen Parameter, so centroid fine-tuning can train it)
    and one index per sub-vector. The weight is rebuilt once, or at every call while the codebook trains."""

    def _init_storage(self, rows: int, cols: int, block_size: int, codebook_size: int) -> None:
        self.block_size, self.codebook_size, self.shape = block_size, codebook_size, (rows, cols)
        self.codebook = nn.Parameter(torch.zeros(codebook_size, block_size), requires_grad=False)
        self.register_buffer("codes", torch.zeros(rows * cols // block_size, dtype=_index_dtype(codebook_size)))
        self._weight: torch.Tensor | None = None

    def _fit(self, weight: torch.Tensor, iterations: int, seed: int) -> None:
        codebook, codes = kmeans(subvectors(weight, self.block_size), self.codebook_size, iterations, seed)
        self.codebook.data.copy_(codebook)
        self.codes.copy_(codes.to(self.codes.dtype))

    def rebuilt_weight(self) -> torch.Tensor:
        if self.codebook.requires_grad:
            self._weight = None
            return reconstruct(self.codebook, self.codes, self.shape)
        if self._weight is None:
            self._weight = reconstruct(self.codebook, self.codes, self.shape)
        return self._weight

    def _load_from_state_dict(self, *args, **kwargs):
        self._weight = None
        super()._load_from_state_dict(*args, **kwargs)


def _fitted_codebook_size(weight: torch.Tensor, block_size: int, codebook_size: int) -> int:
    return min(codebook_size, weight.numel() // block_size)  # a small table cannot fill a large codebook


@replacement
class PQLinear(ProductQuantized):
    """A Linear stored as a PQ codebook and one index per sub-vector."""

    def __init__(self, in_features: int, out_features: int, bias: bool, block_size: int, codebook_size: int):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self._init_storage(out_features, in_features, block_size, codebook_size)
        self.bias = nn.Parameter(torch.zeros(out_features), requires_grad=False) if bias else None

    @classmethod
    def from_linear(cls, linear: nn.Linear, block_size: int, codebook_size: int, iterations: int = 15,
                    seed: int = 0) -> "PQLinear":
        size = _fitted_codebook_size(linear.weight, block_size, codebook_size)
        module = cls(linear.in_features, linear.out_features, linear.bias is not None, block_size, size)
        module._fit(linear.weight, iterations, seed)
        if linear.bias is not None:
            module.bias.data.copy_(linear.bias.detach())
        return module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.rebuilt_weight(), self.bias)

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

    def export_standin(self, options: ExportOptions) -> nn.Module:
        return frozen_linear(self.rebuilt_weight().detach(), None if self.bias is None else self.bias.detach())


@replacement
class PQEmbedding(ProductQuantized):
    """An embedding table stored as a PQ codebook and one index per sub-vector of each row."""

    def __init__(self, num_embeddings: int, embedding_dim: int, padding_idx: int | None, block_size: int,
                 codebook_size: int):
        super().__init__()
        self.num_embeddings, self.embedding_dim, self.padding_idx = num_embeddings, embedding_dim, padding_idx
        self._init_storage(num_embeddings, embedding_dim, block_size, codebook_size)

    @classmethod
    def from_embedding(cls, embedding: nn.Embedding, block_size: int, codebook_size: int, iterations: int = 15,
                       seed: int = 0) -> "PQEmbedding":
        size = _fitted_codebook_size(embedding.weight, block_size, codebook_size)
        module = cls(embedding.num_embeddings, embedding.embedding_dim, embedding.padding_idx, block_size, size)
        module._fit(embedding.weight, iterations, seed)
        return module

    @property
    def weight(self) -> torch.Tensor:
        return self.rebuilt_weight()

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return F.embedding(ids, self.rebuilt_weight(), self.padding_idx)

    def extra_repr(self) -> str:
        return f"{self.num_embeddings}, {self.embedding_dim}, PQ {self.codebook_size} centroids x {self.block_size}"

    def manifest_entry(self) -> dict[str, Any]:
        return {"class": type(self).__name__, "num_embeddings": self.num_embeddings,
                "embedding_dim": self.embedding_dim, "padding_idx": self.padding_idx,
                "block_size": self.block_size, "codebook_size": self.codebook_size}

    @classmethod
    def from_manifest(cls, entry: dict[str, Any]) -> "PQEmbedding":
        return cls(entry["num_embeddings"], entry["embedding_dim"], entry["padding_idx"], entry["block_size"],
                   entry["codebook_size"])

    def export_standin(self, options: ExportOptions) -> nn.Module:
        return frozen_embedding(self.rebuilt_weight(), self.padding_idx)
