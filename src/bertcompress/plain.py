"""Plain Transformers checkpoints: which models `from_pretrained` rebuilds exactly, and the config that does it.

A BERT-family model in Transformers has one head count, one FFN width and one head width
(hidden / heads) for all its layers. A compressed model fits when every layer agrees and no layer is a
bertcompress replacement module; then its weights load into the stock class with no key missing.
"""
from __future__ import annotations

import copy

import torch
import torch.nn as nn
from transformers import AutoModelForSequenceClassification

from bertcompress.arch.spec import get_spec, head_count_of
from bertcompress.core.errors import BertCompressError
from bertcompress.core.modules import is_replacement


def plain_config(model: nn.Module):
    """A copy of the model's config with the layer count and FFN width its layers really have; an error
    names the layers when their FFN widths differ."""
    spec = get_spec(model)
    layers = spec.layer_list(model)
    widths = [getattr(layer.get_submodule(spec.linears["ffn_in"]), "out_features", None) for layer in layers]
    if len(set(widths)) > 1:
        raise BertCompressError(f"its FFN widths differ by layer ({', '.join(map(str, widths))}); a plain "
                                f"{spec.family} model has one width for all layers")
    config = copy.deepcopy(model.config)
    setattr(config, spec.layers_key, len(layers))
    if widths and widths[0] is not None:
        setattr(config, spec.intermediate_key, widths[0])
    return config


def plain_problem(model: nn.Module) -> str | None:
    """Why the stock `AutoModelForSequenceClassification` could not hold this model exactly, or None."""
    replaced = next(((n, m) for n, m in model.named_modules() if is_replacement(m)), None)
    if replaced is not None:
        return f"{replaced[0]} is a {type(replaced[1]).__name__}, which plain Transformers does not have"
    spec = get_spec(model)
    try:
        config = plain_config(model)
    except BertCompressError as error:
        return str(error)
    heads = [head_count_of(layer.get_submodule(spec.self_attention)) for layer in spec.layer_list(model)]
    expected = getattr(config, spec.heads_key)
    if any(count != expected for count in heads):
        return (f"its layers keep {', '.join(map(str, heads))} attention heads; a plain {spec.family} model has "
                f"{expected} in every layer (its head width is hidden size / heads)")
    with torch.device("meta"):
        reference = AutoModelForSequenceClassification.from_config(config)
    return _first_difference(reference.state_dict(), model.state_dict(), type(reference).__name__)


def _first_difference(reference: dict, state: dict, class_name: str) -> str | None:
    for key in sorted(set(reference) | set(state)):
        if key not in state:
            return f"it has no {key}, which {class_name} needs"
        if key not in reference:
            return f"its {key} has no place in {class_name}"
        if tuple(reference[key].shape) != tuple(state[key].shape):
            return f"its {key} is {list(state[key].shape)} where {class_name} has {list(reference[key].shape)}"
    return None
