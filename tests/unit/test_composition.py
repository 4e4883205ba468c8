"""Composition: every structured step followed by every quantization step applies, stays finite, stores
fewer bytes than either step alone would leave, saves and reloads to identical logits, on every family."""
import copy

import pytest

import bertcompress as bc
from bertcompress.evaluation.size import stored_bytes
from tests.conftest import FAMILIES, assert_finite_and_reloads_identically, tiny_model, toy_task

STRUCTURED = {
    "heads": bc.HeadPruning(fraction=0.5, importance="magnitude"),
    "ffn": bc.FFNPruning(fraction=0.5, importance="magnitude"),
    "layers": bc.LayerRemoval(keep=1),
    "student": bc.Distillation(keep=1, max_steps=2, hidden_mse_weight=1.0),
    "vocabulary": bc.VocabularyPruning(),
}
QUANTIZATION = {
    "int8": bc.DynamicInt8(embeddings=True),
    "w4": bc.NaivePTQ(weight_bits=4, embeddings=True),
}


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("quantization", sorted(QUANTIZATION))
@pytest.mark.parametrize("structured", sorted(STRUCTURED))
def test_structured_then_quantized_saves_and_reloads(structured, quantization, family, tokenizer, tmp_path):
    teacher = tiny_model(family)
    model = copy.deepcopy(teacher)
    ctx = bc.Context(task=toy_task(), tokenizer=tokenizer, teacher=teacher,
                     train=bc.TrainConfig(batch_size=8, max_length=16))
    bc.compress(model, STRUCTURED[structured], ctx)
    after_structure = stored_bytes(model)
    bc.compress(model, QUANTIZATION[quantization], ctx)
    assert stored_bytes(model) < after_structure < stored_bytes(teacher)
    assert_finite_and_reloads_identically(model, tokenizer, tmp_path / "m")


@pytest.mark.parametrize("quantization", sorted(QUANTIZATION))
def test_quantizing_sparse_linears_says_which_order_works(quantization, tokenizer):
    model = tiny_model()
    bc.compress(model, bc.MagnitudePruning(sparsity=0.9))
    with pytest.raises(bc.BertCompressError, match="already replaced by an earlier step .SparseLinear.; apply"):
        bc.compress(model, QUANTIZATION[quantization], bc.Context(task=toy_task(), tokenizer=tokenizer))
