"""Which teacher layer each student layer learns from. Layers are numbered as hidden states are:
0 = embeddings, 1..L = the outputs of the L transformer layers."""
from __future__ import annotations

from bertcompress.core.errors import BertCompressError

STRATEGIES = ("uniform", "last")


def layer_map(mapping: str | list[int], student_layers: int, teacher_layers: int,
              field: str = "layer_map") -> list[int]:
    """Teacher layer (1..teacher_layers) for each student layer 1..student_layers.

    uniform: student layer j <- teacher layer j·(L_t / L_s) (TinyBERT; 3 of 6 -> 2, 4, 6);
    last: the top L_s teacher layers; a list: given explicitly, one teacher layer per student layer."""
    if student_layers > teacher_layers:
        raise BertCompressError(f"{field}: the student has {student_layers} layers, more than the teacher's "
                                f"{teacher_layers}")
    if mapping == "uniform":
        return [round(j * teacher_layers / student_layers) for j in range(1, student_layers + 1)]
    if mapping == "last":
        return list(range(teacher_layers - student_layers + 1, teacher_layers + 1))
    if isinstance(mapping, str):
        raise BertCompressError(f"{field}: {mapping!r} is not one of {', '.join(STRATEGIES)} or a list of "
                                "teacher layers")
    if len(mapping) != student_layers:
        raise BertCompressError(f"{field}: gives {len(mapping)} teacher layers for a student with "
                                f"{student_layers} layers; give exactly one per student layer")
    bad = [layer for layer in mapping if not 1 <= layer <= teacher_layers]
    if bad:
        raise BertCompressError(f"{field}: teacher layers {bad} do not exist; allowed 1..{teacher_layers} "
                                "(0 is the embeddings, used by embedding_mse_weight)")
    return list(mapping)
