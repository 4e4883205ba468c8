"""Every shipped recipe applied end to end on a tiny model, training shortened, with the property it
promises checked, then saved and reloaded to the same logits."""
import copy

import pytest
import torch.nn as nn

import bertcompress as bc
from bertcompress.arch.spec import get_spec
from bertcompress.evaluation.size import stored_bytes
from bertcompress.methods.pruning.sparse_linear import SparseLinear
from bertcompress.methods.pruning.vocabulary import PrunedVocabularyEmbedding
from bertcompress.methods.quantization.int8_modules import DynamicInt8Linear, Int8Embedding
from bertcompress.methods.quantization.packed import PackedEmbedding, PackedLinear
from bertcompress.methods.quantization.pq import PQEmbedding, PQLinear
from bertcompress.recipe import builtin_recipes, resolve_recipe
from tests.conftest import assert_finite_and_reloads_identically, tiny_model, toy_task

ENCODER_LINEARS = 6 * 6  # six Linears in each of the six layers


def _encoder_linears(model) -> dict[str, nn.Module]:
    return {name: module for name, module in model.named_modules()
            if ".encoder.layer." in name and name.rsplit(".", 1)[-1] in ("query", "key", "value", "dense")}


def _word_embeddings(model) -> nn.Module:
    return model.bert.embeddings.word_embeddings


def _all_of(model, kind) -> bool:
    return all(isinstance(m, kind) for m in _encoder_linears(model).values())


def _sparsity(model) -> float:
    weights = [m.dense_weight() if isinstance(m, SparseLinear) else m.weight for m in _encoder_linears(model).values()]
    return sum(int((w == 0).sum()) for w in weights) / sum(w.numel() for w in weights)


def _int8(model):
    assert _all_of(model, DynamicInt8Linear)
    assert type(model.classifier) is nn.Linear  # the head stays fp32


def check_dynamic_int8(model, reports):
    _int8(model)
    assert isinstance(_word_embeddings(model), Int8Embedding)


def check_dynamic_int8_linears(model, reports):
    _int8(model)
    assert type(_word_embeddings(model)) is nn.Embedding


def check_naive_ptq_w4(model, reports):
    assert _all_of(model, PackedLinear) and isinstance(_word_embeddings(model), PackedEmbedding)
    assert {m.spec.bits for m in _encoder_linears(model).values()} == {4}
    assert _word_embeddings(model).spec.bits == 4


def check_q8bert_qat(model, reports):
    check_dynamic_int8(model, reports)
    assert reports[0].metrics["train_steps"] == 3


def check_q8bert_static_int8(model, reports):
    from bertcompress.methods.quantization.attention_products import QuantizedProductsAttention

    spec = get_spec(model)
    linears = [layer.get_submodule(spec.linears[role]) for layer in spec.layer_list(model) for role in spec.linears]
    assert all(isinstance(m, PackedLinear) and m.input_spec is not None and m.input_spec.bits == 8 for m in linears)
    attentions = [layer.get_submodule(spec.self_attention) for layer in spec.layer_list(model)]
    assert all(isinstance(a, QuantizedProductsAttention) for a in attentions)
    assert all(q.range() is not None for a in attentions for q in a.products.values())
    assert reports[0].metrics["attention_products_layers"] == len(attentions)


def check_quant_noise_ipq(model, reports):
    assert _all_of(model, PQLinear) and isinstance(_word_embeddings(model), PQEmbedding)


def check_gordon_magnitude(model, reports):
    assert _sparsity(model) == pytest.approx(0.4, abs=1e-3)
    assert reports[0].metrics["train_steps"] == 3


def check_movement_pruning(model, reports):
    assert _sparsity(model) == pytest.approx(0.9, abs=0.01)
    assert any(isinstance(m, SparseLinear) for m in _encoder_linears(model).values())


def check_rpp(model, reports):
    assert _sparsity(model) == pytest.approx(0.5, abs=0.01)
    assert reports[0].metrics["recovery_steps"] == 3  # recovery ran (its own run, also cut to 3 steps)


def check_distill_3_layers(model, reports):
    assert len(model.bert.encoder.layer) == model.config.num_hidden_layers == 3
    assert reports[0].metrics["kept_teacher_layers"] == [1, 3, 5]  # layers 2, 4, 6, as DistilBERT keeps
    assert reports[0].metrics["train_steps"] == 3


def _heads(model) -> int:
    return sum(layer.attention.self.num_attention_heads for layer in model.bert.encoder.layer)


def _ffn_width(model) -> int:
    return sum(layer.intermediate.dense.out_features for layer in model.bert.encoder.layer)


def check_distill_prune_int8(model, reports):
    assert len(model.bert.encoder.layer) == 4 and reports[0].metrics["kept_teacher_layers"] == [1, 2, 3, 5]
    assert _heads(model) < 4 * 4 and _ffn_width(model) < 4 * 48  # heads and neurons removed
    _int8(model)
    word = _word_embeddings(model)
    assert isinstance(word, PrunedVocabularyEmbedding) and isinstance(word.table, Int8Embedding)


def check_smallest(model, reports):
    assert len(model.bert.encoder.layer) == 3 and reports[0].metrics["kept_teacher_layers"] == [1, 3, 5]
    assert _ffn_width(model) == 3 * 24  # half of the 3 x 48 neurons (global ranking)
    assert _all_of(model, PackedLinear) and {m.spec.bits for m in _encoder_linears(model).values()} == {4}
    word = _word_embeddings(model)
    assert isinstance(word, PrunedVocabularyEmbedding) and isinstance(word.table, PackedEmbedding)


CHECKS = {name: globals()[f"check_{name.replace('-', '_')}"] for name in builtin_recipes()}


def _shortened(recipe):
    """The recipe with each training step cut to 3 optimizer steps (what is left keeps its settings)."""
    for index, step in enumerate(recipe.steps):
        updates = {"max_steps": 3} if "max_steps" in type(step).model_fields else {}
        if "codebook_size" in type(step).model_fields:
            updates["codebook_size"] = 16  # a tiny Linear has fewer blocks than 256 centroids
        recipe.steps[index] = step.model_copy(update=updates)
    return recipe


def test_every_shipped_recipe_has_a_check():
    assert len(builtin_recipes()) == 12 and set(CHECKS) == set(builtin_recipes())


@pytest.mark.parametrize("name", sorted(builtin_recipes()))
def test_shipped_recipe_end_to_end(name, tokenizer, tmp_path):
    recipe = _shortened(resolve_recipe(name))
    teacher = tiny_model(layers=6)
    model = copy.deepcopy(teacher)
    before = stored_bytes(model)
    ctx = bc.Context(task=toy_task(), tokenizer=tokenizer, teacher=teacher,
                     train=bc.TrainConfig(batch_size=8, max_length=16), workdir=tmp_path / "work")
    _, reports = recipe.apply(model, ctx)
    assert [r.method for r in reports] == [step.method_name for step in recipe.steps]
    CHECKS[name](model, reports)
    assert stored_bytes(model) < before
    assert_finite_and_reloads_identically(model, tokenizer, tmp_path / "saved")
