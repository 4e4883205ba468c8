"""Plain Transformers checkpoints: which models `from_pretrained` rebuilds exactly, and the config that does it.

A BERT-family model in Transformers has one head count, one FFN width and one head width
(hidden / heads) for all its layers. A compressed model fits when every layer agrees and no layer is a
bertcompress replacement module; then its weights load into the stock class with no key missing.
An export may pad narrower FFN layers with zero neurons to the widest one: act(0) = 0 for the activations
in ZERO_AT_ZERO, so the padded model computes exactly the same outputs.
"""
from __future__ import annotations

import copy

import torch
import torch.nn as nn

from bertcompress.arch.spec import get_spec, head_count_of
from bertcompress.core.modules import is_replacement
from bertcompress.core.task_types import auto_class, task_type_of


ZERO_AT_ZERO = {"gelu", "gelu_new", "gelu_fast", "gelu_python", "gelu_pytorch_tanh", "quick_gelu", "relu",
                "silu", "swish", "mish"}


def ffn_widths(model: nn.Module) -> list[int | None]:
    spec = get_spec(model)
    return [getattr(layer.get_submodule(spec.linears["ffn_in"]), "out_features", None)
            for layer in spec.layer_list(model)]


def plain_config(model: nn.Module):
    """A copy of the model's config with the layer count its layers have and the widest FFN among them."""
    spec, widths = get_spec(model), [w for w in ffn_widths(model) if w is not None]
    config = copy.deepcopy(model.config)
    setattr(config, spec.layers_key, len(spec.layer_list(model)))
    if widths:
        setattr(config, spec.intermediate_key, max(widths))
    return config


def plain_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The model's tensors with each narrower FFN padded by zero neurons to the widest (same outputs)."""
    spec, state = get_spec(model), dict(model.state_dict())
    widest = max(w for w in ffn_widths(model) if w is not None)
    root = f"{spec.prefix(model)}{spec.layers}"
    for index, width in enumerate(ffn_widths(model)):
        if width == widest:
            continue
        grow, shrink = f"{root}.{index}.{spec.linears['ffn_in']}", f"{root}.{index}.{spec.linears['ffn_out']}"
        state[f"{grow}.weight"] = _pad(state[f"{grow}.weight"], 0, widest)
        if f"{grow}.bias" in state:
            state[f"{grow}.bias"] = _pad(state[f"{grow}.bias"], 0, widest)
        state[f"{shrink}.weight"] = _pad(state[f"{shrink}.weight"], 1, widest)
    return state


def _pad(tensor: torch.Tensor, dim: int, size: int) -> torch.Tensor:
    shape = list(tensor.shape)
    shape[dim] = size - shape[dim]
    return torch.cat([tensor, tensor.new_zeros(shape)], dim=dim)


def plain_problem(model: nn.Module, pad_ffn: bool = False) -> str | None:
    """Why the stock Transformers class of its task type (AutoModelForSequenceClassification, ...) could
    not hold this model exactly (its own tensors, or with `pad_ffn` the zero-padded ones of
    plain_state_dict), or None."""
    replaced = next(((n, m) for n, m in model.named_modules() if is_replacement(m)), None)
    if replaced is not None:
        return f"{replaced[0]} is a bertcompress {type(replaced[1]).__name__}, which plain Transformers does not have"
    spec, widths = get_spec(model), ffn_widths(model)
    if len(set(widths)) > 1:
        activation = getattr(model.config, "hidden_act", getattr(model.config, "activation", None))
        if not pad_ffn:
            return f"its FFN widths differ by layer ({', '.join(map(str, widths))})"
        if activation not in ZERO_AT_ZERO:
            return f"its FFN widths differ by layer and its activation {activation!r} is not 0 at 0, so zero " \
                   "neurons cannot pad them"
    config = plain_config(model)
    heads = [head_count_of(layer.get_submodule(spec.self_attention)) for layer in spec.layer_list(model)]
    expected = getattr(config, spec.heads_key)
    if any(count != expected for count in heads):
        return (f"its layers keep {', '.join(map(str, heads))} attention heads; a plain {spec.family} model has "
                f"{expected} in every layer (its head width is hidden size / heads)")
    with torch.device("meta"):
        reference = auto_class(task_type_of(model)).from_config(config)
    state = plain_state_dict(model) if pad_ffn else model.state_dict()
    return _first_difference(reference.state_dict(), state, type(reference).__name__)


def _first_difference(reference: dict, state: dict, class_name: str) -> str | None:
    for key in sorted(set(reference) | set(state)):
        if key not in state:
            return f"it has no {key}, which {class_name} needs"
        if key not in reference:
            return f"its {key} has no place in {class_name}"
        if tuple(reference[key].shape) != tuple(state[key].shape):
            return f"its {key} is {list(state[key].shape)} where {class_name} has {list(reference[key].shape)}"
    return None
