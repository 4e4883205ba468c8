"""How good a compressed sentence embedder is: agreement with its teacher's vectors (mean cosine; recall@k
of the teacher's nearest neighbours over a corpus) and, where texts carry labels, leave-one-out kNN
accuracy (a label read off the k nearest other texts, by cosine); where texts come in pairs with a
similarity score (STS-style), Spearman's rho between the pairs' cosines and the scores."""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

NEIGHBOURS = 10


def _similarities(vectors: torch.Tensor) -> torch.Tensor:
    """Cosine similarities between all pairs, with each text's similarity to itself excluded."""
    unit = F.normalize(vectors.float(), dim=-1)
    similarities = unit @ unit.T
    return similarities.fill_diagonal_(float("-inf"))


def nearest(vectors: torch.Tensor, k: int = NEIGHBOURS) -> torch.Tensor:
    """Indices of each text's k nearest other texts (rows: texts)."""
    k = min(k, len(vectors) - 1)
    return _similarities(vectors).topk(k, dim=-1).indices


def mean_cosine(vectors: torch.Tensor, reference: torch.Tensor) -> float:
    return float(F.cosine_similarity(vectors.float(), reference.float(), dim=-1).mean())


def neighbour_recall(vectors: torch.Tensor, reference: torch.Tensor, k: int = NEIGHBOURS) -> float:
    """Share of the reference's k nearest neighbours (per text, over the same corpus) that `vectors` also
    ranks among its k nearest, averaged over texts."""
    if len(vectors) < 2:
        return 1.0
    ours, theirs = nearest(vectors, k), nearest(reference, k)
    hits = [len(set(a.tolist()) & set(b.tolist())) for a, b in zip(ours, theirs)]
    return sum(hits) / (len(hits) * ours.shape[1])


def knn_accuracy(vectors: torch.Tensor, labels: Sequence[int], k: int = NEIGHBOURS) -> float | None:
    """Leave-one-out kNN accuracy: each labelled text takes the majority label of its k nearest others
    (ties to the nearer); None when the texts carry no labels."""
    labels_t = torch.tensor(list(labels))
    if len(labels_t) < 2 or bool((labels_t < 0).any()):
        return None
    neighbour_labels = labels_t[nearest(vectors, k)]
    count = int(labels_t.max()) + 1
    # votes weighted 1 + a small rank bonus so that ties go to the label of the nearer neighbours
    rank_bonus = torch.linspace(1e-3, 0, neighbour_labels.shape[1])
    votes = torch.zeros(len(labels_t), count).scatter_add_(1, neighbour_labels, 1 + rank_bonus.expand_as(
        neighbour_labels).contiguous())
    return float((votes.argmax(-1) == labels_t).float().mean())


def embedding_scores(vectors: torch.Tensor, labels: Sequence[int], reference: torch.Tensor | None = None) -> dict:
    """kNN accuracy (None without labels) and, against a reference model's vectors, mean cosine and recall@k."""
    found = {"knn_accuracy": knn_accuracy(vectors, labels), "n": len(vectors)}
    if reference is not None:
        found |= {"mean_cosine": mean_cosine(vectors, reference),
                  f"neighbour_recall_at_{NEIGHBOURS}": neighbour_recall(vectors, reference)}
    return found


def ranks(values: torch.Tensor) -> torch.Tensor:
    """1-based ranks, ties sharing their mean rank."""
    order = values.argsort()
    sorted_values = values[order]
    ranked = torch.empty_like(values, dtype=torch.float64)
    start = 0
    while start < len(values):
        end = start
        while end + 1 < len(values) and sorted_values[end + 1] == sorted_values[start]:
            end += 1
        ranked[order[start : end + 1]] = (start + end) / 2 + 1
        start = end + 1
    return ranked


def spearman(first: torch.Tensor, second: torch.Tensor) -> float:
    """Spearman's rank correlation (Pearson's of the ranks); 0 when either side is constant."""
    a, b = ranks(first.double()), ranks(second.double())
    a, b = a - a.mean(), b - b.mean()
    scale = float(a.norm() * b.norm())
    return float(a @ b) / scale if scale else 0.0


def pair_scores(vectors: torch.Tensor, gold: Sequence[float]) -> dict:
    """Spearman's rho between each pair's cosine (vectors: all first texts, then all second texts) and the
    gold scores."""
    count = len(gold)
    cosines = F.cosine_similarity(vectors[:count].float(), vectors[count : 2 * count].float(), dim=-1)
    return {"spearman": spearman(cosines, torch.tensor(list(gold))), "pairs": count}
