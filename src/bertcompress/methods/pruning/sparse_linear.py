"""A pruned Linear stored compactly, so that bytes on disk fall with sparsity, and computed with a torch
sparse kernel only where that was measured faster than dense on CPU (bench/sparse_kernels.py).

Stored forms (fp32 values, so outputs match the masked dense Linear), the smallest is chosen per layer:
  bitmask  values of the kept weights + one bit per weight           4·nnz + numel/8 bytes
  index    values + column index per kept weight (uint8/int16/int32)
           + kept count per row                                      (4 + i)·nnz + c·rows bytes
  block    all values of b×b tiles with any kept weight + 1 bit/tile 4·tiles·b² + all tiles/8 bytes
"""
from __future__ import annotations

import warnings
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from bertcompress.core.errors import BertCompressError
from bertcompress.core.modules import ExportOptions, frozen_linear, replacement

STORAGES = ("bitmask", "index", "block")
KERNELS = ("auto", "dense", "csr", "bsr")
_BIT_WEIGHTS = torch.tensor([1, 2, 4, 8, 16, 32, 64, 128], dtype=torch.uint8)

# Measured on a 2-core AVX2 CPU, torch 2.13 (bench/sparse_kernels.py, BENCHMARKS.md), MiniLM-sized
# Linears, 32x64 and 1x64 tokens: CSR/BSR through addmm beat dense F.linear in every case only at 95 %
# sparsity (0.3-0.8x dense; one 1.0x). At 90 % they win for 64 tokens but lose up to 1.6x for 2048
# tokens; at 50-70 % they are 1.2-19x slower. BSR needs b >= 16 to match CSR.
SPARSE_MAX_DENSITY = 0.05
BSR_MIN_BLOCK = 16


def pack_bits(flags: torch.Tensor) -> torch.Tensor:
    """Booleans (any shape, row-major) -> uint8, eight flags per byte, little-endian within a byte."""
    flat = flags.reshape(-1).to(torch.uint8)
    flat = torch.cat([flat, flat.new_zeros(-flat.numel() % 8)])
    return (flat.view(-1, 8) * _BIT_WEIGHTS.to(flat.device)).sum(dim=1, dtype=torch.uint8)


def unpack_bits(packed: torch.Tensor, count: int) -> torch.Tensor:
    bits = (packed[:, None] >> torch.arange(8, dtype=torch.uint8, device=packed.device)) & 1
    return bits.reshape(-1)[:count].bool()


def _smallest_int(limit: int) -> torch.dtype:
    """Smallest safetensors-friendly integer type that holds 0..limit."""
    for dtype in (torch.uint8, torch.int16, torch.int32):
        if limit <= torch.iinfo(dtype).max:
            return dtype
    return torch.int64


def _bytes_of(dtype: torch.dtype) -> int:
    return torch.empty(0, dtype=dtype).element_size()


def block_grid(mask: torch.Tensor, block_size: int) -> torch.Tensor | None:
    """Which b×b tiles hold any kept weight (stored whole, zeros included); None if b does not tile."""
    rows, cols = mask.shape
    if block_size < 2 or rows % block_size or cols % block_size:
        return None
    return mask.reshape(rows // block_size, block_size, cols // block_size, block_size).any(dim=3).any(dim=1)


def stored_values(mask: torch.Tensor, storage: str, block_size: int = 0) -> int:
    """How many fp32 values a form stores: the kept weights, or every weight of the kept tiles."""
    if storage == "block":
        return int(block_grid(mask, block_size).sum()) * block_size**2
    return int(mask.sum())


def storage_bytes(mask: torch.Tensor, block_size: int = 0) -> dict[str, int]:
    """Bytes each stored form needs for this mask (forms that do not apply are left out)."""
    rows, cols = mask.shape
    nnz = int(mask.sum())
    sizes = {
        "bitmask": 4 * nnz + (mask.numel() + 7) // 8,
        "index": (4 + _bytes_of(_smallest_int(cols - 1))) * nnz + _bytes_of(_smallest_int(cols)) * rows,
    }
    grid = block_grid(mask, block_size)
    if grid is not None:
        sizes["block"] = 4 * stored_values(mask, "block", block_size) + (grid.numel() + 7) // 8
    return sizes


def choose_kernel(density: float, block_size: int = 0) -> str:
    """A sparse kernel only where it was measured faster than dense (see SPARSE_MAX_DENSITY)."""
    if density > SPARSE_MAX_DENSITY:
        return "dense"
    return "bsr" if block_size >= BSR_MIN_BLOCK else "csr"


@replacement
class SparseLinear(nn.Module):
    """Inference-only Linear rebuilt from a compact form; `kernel` picks dense, CSR or BSR compute
    ('auto': the measured rule, decided when the module is first used, i.e. at load time).
    `nnz` counts stored values: the kept weights, or for block storage every weight of the kept tiles."""

    def __init__(self, in_features: int, out_features: int, bias: bool, storage: str, nnz: int,
                 block_size: int = 0, kernel: str = "auto"):
        super().__init__()
        if storage not in STORAGES:
            raise BertCompressError(f"storage: {storage!r} is not one of {', '.join(STORAGES)}")
        if kernel not in KERNELS or (kernel == "bsr" and storage != "block"):
            raise BertCompressError(f"kernel: {kernel!r} is not one of {', '.join(KERNELS)} "
                                    "('bsr' needs block storage)")
        self.in_features, self.out_features, self.storage, self.nnz = in_features, out_features, storage, nnz
        self.block_size, self.kernel = block_size, kernel
        self._make_buffers()
        self.bias = nn.Parameter(torch.zeros(out_features), requires_grad=False) if bias else None
        self._compute: torch.Tensor | None = None
        self._kernel_used: str | None = None

    def _make_buffers(self) -> None:
        rows, cols, nnz = self.out_features, self.in_features, self.nnz
        if self.storage == "block":
            b = self.block_size
            self.register_buffer("values", torch.zeros(nnz // (b * b), b, b))
            self.register_buffer("block_mask", torch.zeros(((rows // b) * (cols // b) + 7) // 8, dtype=torch.uint8))
            return
        self.register_buffer("values", torch.zeros(nnz))
        if self.storage == "bitmask":
            self.register_buffer("mask", torch.zeros((rows * cols + 7) // 8, dtype=torch.uint8))
        else:
            self.register_buffer("columns", torch.zeros(nnz, dtype=_smallest_int(cols - 1)))
            self.register_buffer("row_counts", torch.zeros(rows, dtype=_smallest_int(cols)))

    @classmethod
    def from_linear(cls, linear: nn.Linear, block_size: int = 0, kernel: str = "auto") -> "SparseLinear":
        """Store `linear`'s nonzero weights in whichever form is smallest for its mask."""
        weight = linear.weight.detach().float()
        mask = weight != 0
        sizes = storage_bytes(mask, block_size)
        storage = min(sizes, key=sizes.get)
        block_size = block_size if storage == "block" else 0
        module = cls(linear.in_features, linear.out_features, linear.bias is not None, storage,
                     stored_values(mask, storage, block_size), block_size, kernel)
        module._fill(weight, mask)
        if linear.bias is not None:
            module.bias.data.copy_(linear.bias.detach())
        return module

    def _fill(self, weight: torch.Tensor, mask: torch.Tensor) -> None:
        if self.storage == "block":
            b = self.block_size
            grid = block_grid(mask, b)
            tiles = weight.reshape(grid.shape[0], b, grid.shape[1], b).permute(0, 2, 1, 3)
            self.values.copy_(tiles[grid])
            self.block_mask.copy_(pack_bits(grid))
            return
        self.values.copy_(weight[mask])  # row-major order, as both rebuilds expect
        if self.storage == "bitmask":
            self.mask.copy_(pack_bits(mask))
        else:
            self.columns.copy_(mask.nonzero()[:, 1].to(self.columns.dtype))
            self.row_counts.copy_(mask.sum(dim=1).to(self.row_counts.dtype))

    def dense_weight(self) -> torch.Tensor:
        rows, cols = self.out_features, self.in_features
        weight = torch.zeros(rows, cols, dtype=self.values.dtype, device=self.values.device)
        if self.storage == "block":
            b = self.block_size
            grid = unpack_bits(self.block_mask, (rows // b) * (cols // b)).view(rows // b, cols // b)
            tiles = weight.view(rows // b, b, cols // b, b).permute(0, 2, 1, 3)
            tiles[grid] = self.values
        elif self.storage == "bitmask":
            weight.view(-1)[unpack_bits(self.mask, rows * cols)] = self.values
        else:
            weight[self._row_ids(), self.columns.long()] = self.values
        return weight

    def _row_ids(self) -> torch.Tensor:
        rows = torch.arange(self.out_features, device=self.row_counts.device)
        return torch.repeat_interleave(rows, self.row_counts.long())

    @property
    def weight(self) -> torch.Tensor:
        """The dense weight, for code that inspects Linears (a copy: editing it changes nothing)."""
        return self.dense_weight()

    @property
    def density(self) -> float:
        return self.nnz / (self.in_features * self.out_features)

    def resolved_kernel(self) -> str:
        return choose_kernel(self.density, self.block_size) if self.kernel == "auto" else self.kernel

    def _prepare(self) -> None:
        kernel = self.resolved_kernel()
        weight = self.dense_weight()
        with warnings.catch_warnings():  # torch flags sparse CSR/BSR as beta on every conversion
            warnings.simplefilter("ignore")
            if kernel == "csr":
                weight = weight.to_sparse_csr()
            elif kernel == "bsr":
                weight = weight.to_sparse_bsr((self.block_size,) * 2)
        self._compute, self._kernel_used = weight, kernel

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._compute is None:
            self._prepare()
        if self._kernel_used == "dense":
            return F.linear(x, self._compute, self.bias)
        if self._kernel_used == "bsr" and x.requires_grad:  # torch has no BSR backward on CPU
            return F.linear(x, self._compute.to_dense(), self.bias)
        return sparse_linear(x, self._compute, self.bias)

    def _load_from_state_dict(self, *args, **kwargs):
        self._compute = None  # rebuild from the newly loaded values
        super()._load_from_state_dict(*args, **kwargs)

    def _apply(self, fn, *args, **kwargs):
        self._compute = None  # rebuilt on the new device / dtype on next use
        return super()._apply(fn, *args, **kwargs)

    def __getstate__(self):
        state = dict(super().__getstate__() if hasattr(super(), "__getstate__") else self.__dict__)
        state["_compute"] = None  # sparse tensors cannot be deep-copied or pickled; rebuilt on first use
        return state

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"sparsity={1 - self.density:.1%}, storage={self.storage}, kernel={self.resolved_kernel()}")

    def manifest_entry(self) -> dict[str, Any]:
        return {"class": type(self).__name__, "in_features": self.in_features, "out_features": self.out_features,
                "bias": self.bias is not None, "storage": self.storage, "nnz": self.nnz,
                "block_size": self.block_size, "kernel": self.kernel}

    @classmethod
    def from_manifest(cls, entry: dict[str, Any]) -> "SparseLinear":
        return cls(entry["in_features"], entry["out_features"], entry["bias"], entry["storage"], entry["nnz"],
                   entry["block_size"], entry.get("kernel", "auto"))

    def export_standin(self, options: ExportOptions) -> nn.Module:
        """The dense weight: sparse CSR/BSR tensors do not trace, and ORT's dense GEMM is the fast path."""
        return frozen_linear(self.dense_weight(), None if self.bias is None else self.bias.detach())


def sparse_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """x @ Wᵀ + b with W sparse (CSR/BSR): MKL's fast path is sparse @ dense, so compute (W xᵀ)ᵀ."""
    flat = x.reshape(-1, x.shape[-1]).t()
    out = torch.mm(weight, flat) if bias is None else torch.addmm(bias[:, None], weight, flat)
    return out.t().reshape(*x.shape[:-1], weight.shape[0])
