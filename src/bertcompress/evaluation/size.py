"""Bytes and parameter counts, by component, as stored (int8 counts one byte, not four)."""
from __future__ import annotations

import tempfile
from collections import Counter
from pathlib import Path

import torch.nn as nn

from bertcompress.arch.spec import get_spec
from bertcompress.core.bytes import stored_bytes, stored_tensors, tensor_bytes

__all__ = ["stored_bytes", "stored_tensors", "counts_by_component", "encoder_linear_bytes", "size_on_disk"]


def counts_by_component(model: nn.Module) -> dict[str, dict[str, int]]:
    """Stored elements and bytes per component (embeddings / attention / ffn / other)."""
    spec = get_spec(model)
    elements, size = Counter(), Counter()
    for name, tensor in stored_tensors(model):
        if name.endswith(("position_ids", "token_type_ids")):
            continue  # index buffers, not weights
        component = spec.component_of(model, name)
        elements[component] += tensor.numel()
        size[component] += tensor_bytes(tensor)
    components = ("embeddings", "attention", "ffn", "other")
    return {
        "parameters": {c: elements[c] for c in components} | {"total": sum(elements.values())},
        "bytes": {c: size[c] for c in components} | {"total": sum(size.values())},
    }


def encoder_linear_bytes(model: nn.Module) -> int:
    spec = get_spec(model)
    return sum(stored_bytes(model.get_submodule(name)) for name in spec.linear_names(model))


def size_on_disk(model: nn.Module) -> dict[str, int]:
    """Bytes of the saved model (weights + config + manifest, no tokenizer)."""
    from bertcompress.io import directory_bytes_of, save
    from bertcompress.model_dir import weights_path

    with tempfile.TemporaryDirectory() as tmp:
        target = save(model, Path(tmp) / "model")
        return {"total": directory_bytes_of(target, exclude_tokenizer=True),
                "weights": weights_path(target).stat().st_size}
