"""The variants API: recipes checked on the model before any work; variants built once and reused by recipe;
an interrupted job resumes variant by variant; measurement pairs speedups round by round."""
from __future__ import annotations

import copy

import pytest
import torch

import bertcompress as bc
from bertcompress.core.errors import BertCompressError
from bertcompress.measure import paired_speedup
from bertcompress.recipe import Recipe, resolve_recipe
from bertcompress.variants import Variant, VariantCache, build_all, check_recipes
from tests.conftest import random_batch, tiny_model, toy_task


def test_a_recipe_that_cannot_apply_fails_before_any_training(tokenizer):
    model = tiny_model()  # 2 layers: a 3-layer student cannot be cut from it
    with pytest.raises(BertCompressError, match="distill-3-layers"):
        check_recipes([resolve_recipe("dynamic-int8"), resolve_recipe("distill-3-layers")], model, toy_task(),
                      tokenizer)
    check_recipes([resolve_recipe("dynamic-int8")], model, toy_task(), tokenizer)  # a fitting one passes
    assert all(type(m) is not bc.DynamicInt8 for m in model.modules())  # the model itself is untouched


def test_check_leaves_the_model_unchanged(tokenizer):
    model = tiny_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    check_recipes([resolve_recipe("gordon-magnitude")], model, toy_task(), tokenizer)
    after = model.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)


def _recipe(name: str, *steps) -> Recipe:
    return Recipe(name, list(steps))


def test_variants_are_built_once_and_reused_by_recipe(tmp_path, tokenizer):
    teacher = tiny_model()
    cache = VariantCache("teacher-x", tmp_path / "variants")
    variants = [Variant("int8", _recipe("int8", bc.DynamicInt8())),
                Variant("cut", _recipe("cut", bc.LayerRemoval(keep=1)))]
    first = build_all(teacher, variants, bc.Context(), cache, tokenizer, log=lambda _: None)
    assert [b.cached for b in first.values()] == [False, False]
    again = build_all(teacher, variants, bc.Context(), cache, tokenizer, log=lambda _: None)
    assert [b.cached for b in again.values()] == [True, True]
    batch = random_batch()
    for name in first:
        torch.testing.assert_close(again[name].model(**batch).logits, first[name].model(**batch).logits)
    assert again["cut"].reports[0]["method"] == "layer_removal"
    other = not bc.DynamicInt8().embeddings
    changed = [Variant("int8", _recipe("int8", bc.DynamicInt8(embeddings=other)))]
    assert build_all(teacher, changed, bc.Context(), cache, tokenizer, log=lambda _: None)["int8"].cached is False


def test_an_interrupted_job_resumes_with_the_variants_it_finished(tmp_path, tokenizer):
    teacher, cache = tiny_model(), VariantCache("teacher-y", tmp_path / "variants")

    class Boom(RuntimeError):
        pass

    calls = []

    def log(line):
        calls.append(line)
        if line.startswith("first") and len(calls) == 1:
            raise Boom  # dies right after the first variant was saved
    variants = [Variant("first", _recipe("first", bc.DynamicInt8())),
                Variant("second", _recipe("second", bc.LayerRemoval(keep=1)))]
    with pytest.raises(Boom):
        build_all(teacher, variants, bc.Context(), cache, tokenizer, log=log)
    resumed = build_all(teacher, variants, bc.Context(), cache, tokenizer, log=lambda _: None)
    assert resumed["first"].cached is True and resumed["second"].cached is False


def test_duplicate_variant_names_are_refused(tmp_path):
    variant = Variant("same", _recipe("same", bc.DynamicInt8()))
    with pytest.raises(BertCompressError, match="unique"):
        build_all(tiny_model(), [variant, variant], bc.Context(), VariantCache("t", tmp_path), log=lambda _: None)


def test_paired_speedup_uses_each_round():
    baseline = {"samples_ms": [10.0, 20.0, 10.0, 10.0]}
    own = {"samples_ms": [5.0, 20.0, 5.0, 10.0]}  # the slow round hit both alike
    spread = paired_speedup(baseline, own)
    assert spread["median"] == pytest.approx(1.5) and spread["q1"] <= spread["median"] <= spread["q3"]


def test_accuracy_rows_score_models_outside_our_layout(tokenizer):
    """A peer's model (torch.ao dynamic int8) is scored like ours; only our byte counts are left out."""
    import warnings

    from bertcompress.measure import accuracy_rows

    model = tiny_model()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        peer = torch.ao.quantization.quantize_dynamic(copy.deepcopy(model), {torch.nn.Linear}, dtype=torch.qint8)
    ours, theirs = accuracy_rows({"ours": model, "peer": peer}, toy_task(), tokenizer, 16)
    assert "encoder_linear_mb" in ours and "encoder_linear_mb" not in theirs
    assert theirs["agreement"] >= 0.75  # int8 of the same weights mostly agrees with them
