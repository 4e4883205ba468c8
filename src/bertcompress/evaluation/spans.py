"""Exact match and F1 of predicted answer texts, as the official SQuAD v1.1 evaluation script computes them:
answers normalised (lower case, no punctuation, no articles, single spaces), each prediction scored
against its best-matching gold answer, averaged over questions."""
from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Mapping, Sequence

ARTICLES = re.compile(r"\b(a|an|the)\b")
PUNCTUATION = set(string.punctuation)


def normalize_answer(text: str) -> str:
    text = "".join(c for c in text.lower() if c not in PUNCTUATION)
    return " ".join(ARTICLES.sub(" ", text).split())


def exact_match(prediction: str, gold: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(gold))


def token_f1(prediction: str, gold: str) -> float:
    predicted, expected = normalize_answer(prediction).split(), normalize_answer(gold).split()
    common = Counter(predicted) & Counter(expected)
    overlap = sum(common.values())
    if overlap == 0:
        return 0.0
    precision, recall = overlap / len(predicted), overlap / len(expected)
    return 2 * precision * recall / (precision + recall)


def squad_scores(predictions: Mapping[str, str], golds: Mapping[str, Sequence[str]]) -> dict:
    """{"exact_match", "f1"} as fractions over the questions in `golds` (a missing prediction scores 0)."""
    if not golds:
        return {"exact_match": 0.0, "f1": 0.0, "n": 0}
    em = f1 = 0.0
    for question, answers in golds.items():
        predicted = predictions.get(question, "")
        em += max(exact_match(predicted, gold) for gold in answers)
        f1 += max(token_f1(predicted, gold) for gold in answers)
    return {"exact_match": em / len(golds), "f1": f1 / len(golds), "n": len(golds)}
