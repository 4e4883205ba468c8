"""Measurements a claim needs beyond a variant's score: head ablations with per-example outcomes and
attention statistics (Kovaleva, Michel, Voita), how much fine-tuning moved each layer, and plain truncated
SVD at FLOP's ranks. Each returns JSON-able results, cached per teacher by the runner."""
from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

import torch.nn as nn

from bertcompress.analysis.ablation import heads_disabled
from bertcompress.analysis.heads import attention_statistics
from bertcompress.arch.spec import get_spec
from bertcompress.core.context import Context
from bertcompress.core.targets import set_submodule
from bertcompress.core.task_types import task_type_of
from bertcompress.data.batching import Encoded
from bertcompress.evaluation.metrics import outputs, per_example
from bertcompress.io import load
from bertcompress.reproduce.spec import Budget
from bertcompress.surgery.heads import head_count
from bertcompress.surgery.linear import LowRankLinear, factorize
from bertcompress.training.finetune import finetune


def example_scores(model: nn.Module, data: Encoded) -> list[float]:
    task_type = task_type_of(model)
    return [round(s, 4) for s in per_example(data, outputs(model, data, task_type=task_type), task_type)]


@dataclass
class ProbeInputs:
    teacher: nn.Module
    ctx: Context
    model_source: str  # the pre-trained model the teacher was fine-tuned from
    test: Encoded  # the budget's test examples (what variants are scored on)
    analysis: Encoded  # the first test examples the head analyses use
    validation: Encoded  # where a probe chooses (lone heads), never where it is judged
    budget: Budget
    built: Callable[[str], nn.Module]  # a variant of this seed by name (built on demand)


def head_probe(inputs: ProbeInputs) -> dict:
    """Attention patterns and roles per head; outcomes without each head, without each layer's attention,
    and with one head per layer kept (the head chosen on validation, judged on the analysis examples)."""
    model, data = inputs.teacher, inputs.analysis
    patterns, roles = attention_statistics(model, data, inputs.ctx.task, inputs.ctx.tokenizer,
                                           inputs.ctx.train.max_length)
    counts = [head_count(model, layer) for layer in range(len(get_spec(model).layer_list(model)))]

    def scored(plan: dict, on: Encoded = data) -> list[float]:
        with heads_disabled(model, plan):
            return example_scores(model, on)

    without = {f"{layer}.{head}": scored({layer: [head]}) for layer, n in enumerate(counts) for head in range(n)}
    lone = []
    for layer, n in enumerate(counts):
        def alone(head: int, on: Encoded) -> list[float]:
            return scored({layer: [h for h in range(n) if h != head]}, on)
        choice = max(range(n), key=lambda head: sum(alone(head, inputs.validation)))
        lone.append({"layer": layer, "head": choice, "scores": alone(choice, data)})
    return {"base": example_scores(model, data), "without_head": without, "lone_head": lone,
            "without_layer": [scored({layer: range(n)}) for layer, n in enumerate(counts)],
            "patterns": [p["label"] for p in patterns], "roles": [r["role"] for r in roles], "heads_per_layer": counts}


def layer_change_probe(inputs: ProbeInputs) -> dict:
    """Per layer: relative change of its weights from the pre-trained model to the teacher, and the teacher's
    outcomes when that layer alone is put back to its pre-trained weights."""
    pretrained = load(inputs.model_source, num_labels=getattr(inputs.teacher.config, "num_labels", None),
                      task_type=task_type_of(inputs.teacher))
    spec = get_spec(inputs.teacher)
    tuned_layers, start_layers = spec.layer_list(inputs.teacher), spec.layer_list(pretrained)
    change, restored = [], []
    for tuned, start in zip(tuned_layers, start_layers):
        before, after = start.state_dict(), tuned.state_dict()
        moved = sum(float((after[k] - before[k]).norm() ** 2) for k in after) ** 0.5
        size = sum(float(before[k].norm() ** 2) for k in after) ** 0.5
        change.append(round(moved / size, 6))
        saved = copy.deepcopy(after)
        tuned.load_state_dict(before)
        try:
            restored.append(example_scores(inputs.teacher, inputs.test))
        finally:
            tuned.load_state_dict(saved)
    return {"relative_change": change, "restored": restored}


SVD_EPOCHS = 1.0  # as FLOP's training in claim 14
SVD_LEARNING_RATE = 3e-5


def svd_probe(inputs: ProbeInputs) -> dict:
    """The teacher's Linears factorized by truncated SVD to the ranks FLOP kept, then fine-tuned (distilled)
    for the same epochs FLOP trained: the same size, the plain method."""
    flop = inputs.built("FLOP 50%")
    ranks = {name: module.rank for name, module in flop.named_modules() if isinstance(module, LowRankLinear)}
    model = copy.deepcopy(inputs.teacher)
    for name, rank in ranks.items():
        set_submodule(model, name, factorize(model.get_submodule(name), rank, name))
    result = finetune(model, inputs.ctx, "truncated-svd", epochs=inputs.budget.epochs(SVD_EPOCHS),
                      learning_rate=SVD_LEARNING_RATE, distill=True)
    parameters = sum(p.numel() for p in model.parameters())
    return {"scores": example_scores(model, inputs.test), "factorized": len(ranks), "train_steps": result.steps,
            "parameters": parameters, "flop_parameters": sum(p.numel() for p in flop.parameters())}


PROBES: dict[str, Callable[[ProbeInputs], dict]] = {
    "heads": head_probe, "layer_change": layer_change_probe, "svd": svd_probe}


def probe_data_sizes(budget: Budget) -> dict:
    """What a cached probe result depends on besides the teacher."""
    return {"analysis": budget.analysis_examples, "test": budget.eval_examples, "epochs_scale": budget.epochs_scale}
