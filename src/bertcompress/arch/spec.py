"""One table per model family: base model attribute, layer list, the Linear roles inside a layer, config keys."""
from __future__ import annotations

from dataclasses import dataclass

import torch.nn as nn

from bertcompress.core.errors import BertCompressError

LINEAR_ROLES = ("query", "key", "value", "attention_output", "ffn_in", "ffn_out")
# Where a self-attention module keeps its head count (BERT-likes: num_attention_heads, DistilBERT: n_heads),
# and every attribute that changes when heads are removed: the count and the heads' total width.
HEAD_COUNT_ATTRIBUTES = ("num_attention_heads", "n_heads")
HEAD_ATTRIBUTES = (*HEAD_COUNT_ATTRIBUTES, "all_head_size")


@dataclass(frozen=True)
class ArchSpec:
    family: str
    base: str  # attribute of the task model that holds the encoder model
    embeddings: str  # relative to base
    layers: str  # relative to base: the ModuleList of transformer layers
    self_attention: str  # relative to a layer: the module that owns the head count
    linears: dict[str, str]  # role -> path relative to a layer
    heads_key: str
    hidden_key: str
    intermediate_key: str
    layers_key: str

    def base_model(self, model: nn.Module) -> nn.Module:
        return getattr(model, self.base) if hasattr(model, self.base) else model

    def prefix(self, model: nn.Module) -> str:
        return f"{self.base}." if hasattr(model, self.base) else ""

    def layer_list(self, model: nn.Module) -> nn.ModuleList:
        return self.base_model(model).get_submodule(self.layers)

    def embeddings_module(self, model: nn.Module) -> nn.Module:
        return self.base_model(model).get_submodule(self.embeddings)

    def linear_names(self, model: nn.Module, roles: tuple[str, ...] = LINEAR_ROLES) -> list[str]:
        """Full module names of the encoder Linears with the given roles, layer by layer."""
        root = f"{self.prefix(model)}{self.layers}"
        return [
            f"{root}.{index}.{self.linears[role]}"
            for index in range(len(self.layer_list(model)))
            for role in roles
        ]

    def component_of(self, model: nn.Module, parameter_name: str) -> str:
        """'embeddings', 'attention', 'ffn' or 'other' for a parameter or buffer name."""
        prefix = self.prefix(model)
        if parameter_name.startswith(f"{prefix}{self.embeddings}."):
            return "embeddings"
        layers_root = f"{prefix}{self.layers}."
        if parameter_name.startswith(layers_root):
            inner = parameter_name[len(layers_root):].split(".", 1)[1]
            for role, path in self.linears.items():
                if inner.startswith(path + "."):
                    return "ffn" if role.startswith("ffn") else "attention"
            return "attention" if "attention" in inner else "ffn"
        return "other"


def _by_role(*paths: str) -> dict[str, str]:
    """A layer's Linear paths, given in LINEAR_ROLES order."""
    return dict(zip(LINEAR_ROLES, paths, strict=True))


_BERT_LIKE = dict(
    embeddings="embeddings",
    layers="encoder.layer",
    self_attention="attention.self",
    linears=_by_role("attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense",
                     "intermediate.dense", "output.dense"),
    heads_key="num_attention_heads",
    hidden_key="hidden_size",
    intermediate_key="intermediate_size",
    layers_key="num_hidden_layers",
)

SPECS: dict[str, ArchSpec] = {
    "bert": ArchSpec(family="bert", base="bert", **_BERT_LIKE),
    "roberta": ArchSpec(family="roberta", base="roberta", **_BERT_LIKE),
    "electra": ArchSpec(family="electra", base="electra", **_BERT_LIKE),
    "distilbert": ArchSpec(
        family="distilbert",
        base="distilbert",
        embeddings="embeddings",
        layers="transformer.layer",
        self_attention="attention",
        linears=_by_role("attention.q_lin", "attention.k_lin", "attention.v_lin", "attention.out_lin", "ffn.lin1",
                         "ffn.lin2"),
        heads_key="n_heads",
        hidden_key="dim",
        intermediate_key="hidden_dim",
        layers_key="n_layers",
    ),
}


def head_count_of(attention: nn.Module) -> int:
    """The head count a self-attention module keeps, under whichever name its family uses."""
    return next(getattr(attention, a) for a in HEAD_COUNT_ATTRIBUTES if hasattr(attention, a))


def spec_for_type(model_type: str) -> ArchSpec:
    try:
        return SPECS[model_type]
    except KeyError:
        raise BertCompressError(
            f"model type {model_type!r} is not a supported BERT-family encoder; "
            f"supported: {', '.join(sorted(SPECS))}"
        ) from None


def get_spec(model: nn.Module) -> ArchSpec:
    config = getattr(model, "config", None)
    if config is None or not getattr(config, "model_type", None):
        raise BertCompressError(f"{type(model).__name__} has no Hugging Face config; cannot locate its layers")
    return spec_for_type(config.model_type)
