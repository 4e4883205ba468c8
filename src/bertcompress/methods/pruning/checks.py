"""Up-front checks for head-level methods, so they fail before training rather than after it."""
from __future__ import annotations

import torch.nn as nn

from bertcompress.arch.spec import get_spec
from bertcompress.core.errors import BertCompressError
from bertcompress.surgery import head_count

ROLES = ("query", "key", "value", "attention_output")


def require_stock_attention(model: nn.Module, label: str) -> None:
    """Every layer's attention Linears are float nn.Linear with one block of rows per head (not quantized,
    factorised or already given fixed patterns, whose query/key hold fewer heads)."""
    spec = get_spec(model)
    for index, layer in enumerate(spec.layer_list(model)):
        size = layer.get_submodule(spec.self_attention).attention_head_size
        width = head_count(model, index) * size
        for role in ROLES:
            module = layer.get_submodule(spec.linears[role])
            if type(module) is not nn.Linear:
                raise BertCompressError(f"{label}: layer {index} {role} is a {type(module).__name__}; this method "
                                        "needs float Linears (apply it before quantizing or factorising)")
            features = module.in_features if role == "attention_output" else module.out_features
            if features != width:
                raise BertCompressError(f"{label}: layer {index} {role} has {features} features for "
                                        f"{head_count(model, index)} heads of {size}; its heads were already "
                                        "changed (e.g. fixed attention patterns)")
