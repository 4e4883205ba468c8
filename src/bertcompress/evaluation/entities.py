"""Entity-level precision, recall and F1 of predicted tags, by seqeval's rules (the conlleval script's:
an entity counts when its type and its exact span both match), plus word accuracy."""
from __future__ import annotations

from collections.abc import Sequence


def entity_scores(predicted: Sequence[Sequence[int]], gold: Sequence[Sequence[int]],
                  label_names: Sequence[str]) -> dict:
    """Scores as fractions; words beyond a truncated sentence's last kept piece count as 'O' predictions."""
    from seqeval.metrics import f1_score, precision_score, recall_score

    names = list(label_names)
    outside = "O" if "O" in names else names[0]
    y_true = [[names[t] for t in tags] for tags in gold]
    y_pred = [[names[t] for t in tags] + [outside] * (len(g) - len(tags)) for tags, g in zip(predicted, gold)]
    words = sum(len(g) for g in gold)
    correct = sum(p == t for pred, true in zip(y_pred, y_true) for p, t in zip(pred, true))
    # seqeval returns numpy floats; plain floats keep every result JSON-serialisable
    return {"f1": float(f1_score(y_true, y_pred, zero_division=0)),
            "precision": float(precision_score(y_true, y_pred, zero_division=0)),
            "recall": float(recall_score(y_true, y_pred, zero_division=0)),
            "word_accuracy": correct / max(words, 1), "n": len(gold)}
