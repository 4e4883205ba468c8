"""The search space of `optimize`: the knobs of one composition (distil to k layers -> prune heads -> prune
FFN neurons -> prune the vocabulary -> quantize), and the recipe a choice of knobs stands for."""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any

import torch.nn as nn

from bertcompress.arch.spec import get_spec
from bertcompress.core.errors import BertCompressError
from bertcompress.methods.distillation.method import Distillation
from bertcompress.methods.pruning.layers import LayerRemoval
from bertcompress.methods.pruning.structured import FFNPruning, HeadPruning
from bertcompress.methods.pruning.vocabulary import VocabularyPruning
from bertcompress.methods.quantization.dynamic import DynamicInt8
from bertcompress.methods.quantization.ptq import NaivePTQ
from bertcompress.methods.quantization.qat import Q8BertQAT
from bertcompress.recipe import Recipe

# quantization choices: none, int8 weights (int8 GEMMs, fp32 embeddings), int8 weights and embeddings,
# 4-bit weights and embeddings (smallest; dequantized to compute), OpenVINO static int8 (the model is
# exported and quantized by NNCF with calibrated activation ranges: measured in OpenVINO), and our own static
# int8 (Q8BERT QAT learning the ranges of every Linear's and attention product's inputs, exported to OpenVINO
# as is: trained rather than calibrated)
QUANTIZATION = ("none", "int8", "int8+embeddings", "4bit", "openvino-static-int8", "qat-static-int8")
RUNTIMES = {"openvino-static-int8": "openvino-static-int8", "qat-static-int8": "openvino"}  # others: torch
OBJECTIVES = ("latency", "size")


@dataclass(frozen=True)
class SearchSpace:
    layers: tuple[int, ...] = (6, 5, 4, 3)  # encoder layers kept; fewer than the model's means distillation
    head_fractions: tuple[float, ...] = (0.0, 0.25, 0.5)
    ffn_fractions: tuple[float, ...] = (0.0, 0.25, 0.5)
    vocabulary: tuple[bool, ...] = (False, True)
    quantization: tuple[str, ...] = ("int8+embeddings", "openvino-static-int8")
    distill_epochs: tuple[float, ...] = (2.0,)
    recovery_epochs: tuple[float, ...] = (1.0,)

    @classmethod
    def for_objective(cls, objective: str, model_layers: int, **overrides: Any) -> "SearchSpace":
        """The default space for an objective, its depths cut to the model's."""
        if objective not in OBJECTIVES:
            raise BertCompressError(f"--objective {objective!r} is not offered; use one of {', '.join(OBJECTIVES)}")
        layers = tuple(k for k in range(model_layers, max(model_layers // 2, 1) - 1, -1))
        quantization = ("int8+embeddings", "openvino-static-int8", "qat-static-int8") if objective == "latency" \
            else ("int8+embeddings", "4bit")
        return cls(**{"layers": layers, "quantization": quantization, **overrides})

    @classmethod
    def quick(cls, objective: str, model_layers: int) -> "SearchSpace":
        """A small space for a first answer in minutes: the full depth or half of it, light pruning, one
        epoch of distillation and half an epoch of recovery; no quantization that trains."""
        quantization = ("int8+embeddings", "openvino-static-int8") if objective == "latency" else \
            ("int8+embeddings", "4bit")
        return cls.for_objective(objective, model_layers, layers=(model_layers, max(model_layers // 2, 1)),
                                 quantization=quantization,
                                 head_fractions=(0.0, 0.25), ffn_fractions=(0.0, 0.25), distill_epochs=(1.0,),
                                 recovery_epochs=(0.5,))

    def overridden(self, overrides: tuple[str, ...]) -> "SearchSpace":
        """This space with some knobs' values replaced, each given as 'knob=v1,v2' (`--space layers=4,3`)."""
        return replace(self, **parse_overrides(overrides)) if overrides else self

    def check(self, model: nn.Module) -> None:
        """Refuse a space that allows nothing on this model, before any training."""
        depth = len(get_spec(model).layer_list(model))
        allowed = [k for k in self.layers if 1 <= k <= depth]
        if not allowed:
            raise BertCompressError(f"the search space keeps {sorted(self.layers)} layers but the model has "
                                    f"{depth}; nothing to search")
        unknown = sorted(set(self.quantization) - set(QUANTIZATION))
        if unknown:
            raise BertCompressError(f"quantization choices {unknown} are not offered; use {', '.join(QUANTIZATION)}")
        bad = [f for f in (*self.head_fractions, *self.ffn_fractions) if not 0 <= f < 1]
        if bad:
            raise BertCompressError(f"pruning fractions must be in [0, 1); got {bad}")

    def choices(self, model_layers: int) -> dict[str, tuple]:
        """Every knob with its allowed values on this model (depths beyond the model's dropped)."""
        found = asdict(self)
        found["layers"] = tuple(k for k in self.layers if 1 <= k <= model_layers)
        return {name: tuple(values) for name, values in found.items()}

    def suggest(self, trial, model_layers: int) -> dict[str, Any]:
        """One choice per knob from an Optuna trial (categorical: every knob is a short list)."""
        return {name: trial.suggest_categorical(name, list(values))
                for name, values in self.choices(model_layers).items()}


def _boolean(text: str) -> bool:
    if text.lower() not in ("true", "false", "yes", "no"):
        raise ValueError
    return text.lower() in ("true", "yes")


# how each knob's values are read from text
_KNOB_TYPES = {"layers": int, "head_fractions": float, "ffn_fractions": float, "vocabulary": _boolean,
               "quantization": str, "distill_epochs": float, "recovery_epochs": float}


def parse_overrides(overrides: tuple[str, ...]) -> dict[str, tuple]:
    """'knob=v1,v2' texts as {knob: values}; one clear error naming the text, the knob or the value at fault."""
    parsed: dict[str, tuple] = {}
    knobs = [f.name for f in fields(SearchSpace)]
    for text in overrides:
        name, equals, values = (part.strip() for part in text.partition("="))
        name = name.replace("-", "_")
        if not equals or not values:
            raise BertCompressError(f"--space {text!r}: write a knob and its values, e.g. layers=4,3")
        if name not in knobs:
            raise BertCompressError(f"--space {text!r}: no knob {name!r}; knobs: {', '.join(knobs)}")
        try:
            parsed[name] = tuple(dict.fromkeys(_KNOB_TYPES[name](v.strip()) for v in values.split(",")))
        except ValueError:
            hint = {int: "whole numbers", float: "numbers", _boolean: "yes or no"}[_KNOB_TYPES[name]]
            raise BertCompressError(f"--space {text!r}: {name} takes {hint}, comma-separated") from None
    return parsed


def recipe_for(params: dict[str, Any], model_layers: int, trained: bool = True) -> Recipe:
    """The composition a choice of knobs stands for; the structural steps first, quantization last.
    OpenVINO static int8 is not a step: the runtime quantizes the exported model (see `runtime_for`); our
    static int8 is Q8BERT QAT for `recovery_epochs`, exported to OpenVINO with its trained ranges.
    `trained=False`: the same shapes without any training (layers cut, no recovery), whose speed and size are
    the trained model's: the cheap signal that stops a hopeless trial before it trains."""
    steps = []
    if params["layers"] < model_layers:
        steps.append(Distillation(keep=params["layers"], hidden_mse_weight=1.0, epochs=params["distill_epochs"])
                     if trained else LayerRemoval(keep=params["layers"]))
    recovery = params["recovery_epochs"] if trained else 0.0
    if params["head_fractions"] > 0:
        steps.append(HeadPruning(fraction=params["head_fractions"],
                                 recovery_epochs=0.0 if params["ffn_fractions"] > 0 else recovery))
    if params["ffn_fractions"] > 0:
        steps.append(FFNPruning(fraction=params["ffn_fractions"], recovery_epochs=recovery))
    if params["vocabulary"]:
        steps.append(VocabularyPruning())
    quantization = params["quantization"]
    if quantization in ("int8", "int8+embeddings"):
        steps.append(DynamicInt8(embeddings=quantization == "int8+embeddings"))
    elif quantization == "4bit":
        steps.append(NaivePTQ(weight_bits=4, embeddings=True))
    elif quantization == "qat-static-int8":  # the twin: one step sets every range, hence the same int8 graph
        steps.append(Q8BertQAT(activation_ranges="ema", attention_products=True,
                               **({"epochs": params["recovery_epochs"]} if trained else {"max_steps": 1})))
    return Recipe(describe(params) + ("" if trained else " (shape)"), steps)


def runtime_for(params: dict[str, Any]) -> str:
    return RUNTIMES.get(params["quantization"], "torch")


def describe(params: dict[str, Any]) -> str:
    """A short, stable name for a choice: 'L4-h25-f50-vocab-int8+embeddings'. Training knobs are left out, so
    the name is also the choice's shape: choices with one name run at one speed."""
    parts = [f"L{params['layers']}"]
    parts += [f"h{round(100 * params['head_fractions'])}"] if params["head_fractions"] else []
    parts += [f"f{round(100 * params['ffn_fractions'])}"] if params["ffn_fractions"] else []
    parts += ["vocab"] if params["vocabulary"] else []
    parts += [params["quantization"]] if params["quantization"] != "none" else []
    return "-".join(parts)
