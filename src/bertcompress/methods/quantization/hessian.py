"""Q-BERT sensitivities: the top eigenvalue of the loss Hessian restricted to one component's weights,
found by power iteration on Hessian-vector products (double backward), batch by batch."""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from contextlib import contextmanager

import torch
import torch.nn as nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from bertcompress.arch.spec import get_spec
from bertcompress.core.context import Context
from bertcompress.core.errors import BertCompressError
from bertcompress.core.task_types import task_type_of
from bertcompress.data.batching import encode, model_inputs
from bertcompress.methods.common import word_embeddings
from bertcompress.training.objectives import importance_loss

ATTENTION_ROLES = ("query", "key", "value", "attention_output")
FFN_ROLES = ("ffn_in", "ffn_out")
RELATIVE_TOLERANCE = 1e-4  # stop iterating once the eigenvalue estimate moves less than this, relatively

Vector = list[torch.Tensor]


def _dot(a: Vector, b: Vector) -> torch.Tensor:
    return sum((x * y).sum() for x, y in zip(a, b))


def _norm(a: Vector) -> torch.Tensor:
    return torch.sqrt(_dot(a, a))


def hessian_vector_product(grads: Sequence[torch.Tensor], params: Sequence[torch.Tensor], vector: Vector) -> Vector:
    """H v for the block of the Hessian whose rows are `grads` (built with create_graph) and columns `params`."""
    pairs = [(g, v) for g, v in zip(grads, vector) if g.requires_grad]
    if not pairs:  # the gradient does not depend on the parameters: zero curvature
        return [torch.zeros_like(p) for p in params]
    products = torch.autograd.grad([g for g, _ in pairs], params, grad_outputs=[v for _, v in pairs],
                                   retain_graph=True, allow_unused=True)
    return [torch.zeros_like(p) if h is None else h.detach() for h, p in zip(products, params)]


def power_iteration(grads: Sequence[torch.Tensor], params: Sequence[torch.Tensor], iterations: int,
                    generator: torch.Generator, tolerance: float = RELATIVE_TOLERANCE) -> float:
    """Dominant eigenvalue (largest magnitude, with its sign) of the Hessian block, as a Rayleigh quotient."""
    vector = [torch.randn(p.shape, generator=generator, dtype=p.dtype).to(p.device) for p in params]
    scale = _norm(vector)
    vector = [v / scale for v in vector]
    eigenvalue = 0.0
    for step in range(iterations):
        product = hessian_vector_product(grads, params, vector)
        estimate = _dot(product, vector).item()  # v has unit norm, so this is vᵀHv
        size = _norm(product)
        if size.item() == 0.0:
            return 0.0
        vector = [h / size for h in product]
        converged = step > 0 and abs(estimate - eigenvalue) <= tolerance * abs(eigenvalue)
        eigenvalue = estimate
        if converged:
            break
    return eigenvalue


def top_eigenvalue(loss_fn: Callable[[], torch.Tensor], params: Sequence[torch.Tensor], iterations: int,
                   generator: torch.Generator) -> float:
    """Dominant Hessian eigenvalue of any scalar loss closure with respect to `params`."""
    with torch.enable_grad():
        grads = torch.autograd.grad(loss_fn(), list(params), create_graph=True)
        return power_iteration(grads, list(params), iterations, generator)


def components(model: nn.Module, include_embeddings: bool = True) -> dict[str, dict[str, nn.Module]]:
    """Q-BERT's groups, in model order: 'embeddings' (word table), then 'layer{i}.attention' and 'layer{i}.ffn'."""
    spec = get_spec(model)
    groups: dict[str, dict[str, nn.Module]] = {}
    if include_embeddings:
        table = word_embeddings(model)
        if not table:
            raise BertCompressError("embeddings: the word-embedding table is not an nn.Embedding (already "
                                    "compressed?); set embeddings: false")
        groups["embeddings"] = table
    kinds = {"attention": ATTENTION_ROLES, "ffn": FFN_ROLES}
    names = {kind: spec.linear_names(model, roles) for kind, roles in kinds.items()}  # layer-major lists
    for index in range(len(spec.layer_list(model))):
        for kind, roles in kinds.items():
            width = len(roles)
            groups[f"layer{index}.{kind}"] = _linears(model, names[kind][index * width:(index + 1) * width])
    if not groups:
        raise BertCompressError("the model has no encoder layers and embeddings are excluded: nothing to quantize")
    return groups


def _linears(model: nn.Module, names: list[str]) -> dict[str, nn.Module]:
    chosen = {name: model.get_submodule(name) for name in names}
    for name, module in chosen.items():
        if not isinstance(module, nn.Linear):
            raise BertCompressError(f"{name} is a {type(module).__name__}, not an nn.Linear; Hessian sensitivities "
                                    "need full-precision weights (apply Q-BERT before other quantization)")
    return chosen


def labelled_batches(ctx: Context, batches: int, batch_size: int, seed: int, field: str) -> list[dict]:
    """`batches` seeded random batches of labelled training examples (fewer if the split is small)."""
    if ctx.task is None or ctx.tokenizer is None:
        raise BertCompressError(f"{field}: Hessian sensitivities need labelled data; pass a Context with a task "
                                "and a tokenizer")
    examples = ctx.task.split("train")
    order = torch.randperm(len(examples), generator=torch.Generator().manual_seed(seed)).tolist()
    count = min(len(examples), batches * batch_size)
    data = encode([examples[i] for i in order[:count]], ctx.tokenizer, ctx.train.max_length if ctx.train else 64)
    return [data.batch(list(range(start, min(start + batch_size, count)))) for start in range(0, count, batch_size)]


@contextmanager
def _only_grad_for(model: nn.Module, params: list[nn.Parameter]):
    """Gradients for just these weights (less work), eval mode (no dropout); both restored afterwards."""
    saved = {p: p.requires_grad for p in model.parameters()}
    was_training = model.training
    wanted = {id(p) for p in params}
    try:
        for p in model.parameters():
            p.requires_grad_(id(p) in wanted)
        model.eval()
        yield
    finally:
        for p, flag in saved.items():
            p.requires_grad_(flag)
        model.train(was_training)


def component_eigenvalues(model: nn.Module, groups: dict[str, dict[str, nn.Module]], batches: list[dict],
                          iterations: int, seed: int) -> dict[str, list[float]]:
    """Per component, the dominant Hessian eigenvalue of the cross-entropy on each batch (one value a batch)."""
    weights = {c: [m.weight for m in modules.values()] for c, modules in groups.items()}
    everything = [w for ws in weights.values() for w in ws]
    device = everything[0].device
    generator = torch.Generator().manual_seed(seed)
    values: dict[str, list[float]] = {c: [] for c in groups}
    # fused attention kernels have no double backward; the math kernel is built from differentiable ops
    with _only_grad_for(model, everything), torch.enable_grad(), sdpa_kernel(SDPBackend.MATH):
        for batch in batches:
            batch = {k: v.to(device) for k, v in batch.items()}
            loss = importance_loss(task_type_of(model), model(**model_inputs(batch)), batch, generator)
            # one create_graph backward per batch; each component then iterates on its own block
            grads = torch.autograd.grad(loss, everything, create_graph=True)
            start = 0
            for component, params in weights.items():
                block = grads[start:start + len(params)]
                start += len(params)
                values[component].append(power_iteration(block, params, iterations, generator))
            del grads, loss
    return values


def summarize(values: Sequence[float], use_variance: bool) -> dict[str, float]:
    """Mean and (population) std of the per-batch eigenvalues and Q-BERT's Ω = |mean| (+ std)."""
    mean = sum(values) / len(values)
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))
    return {"mean_eigenvalue": mean, "std_eigenvalue": std, "sensitivity": abs(mean) + (std if use_variance else 0.0)}
