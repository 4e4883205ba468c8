import pytest

import bertcompress as bc
from bertcompress.recipe import Recipe, builtin_recipes, resolve_recipe
from tests.conftest import random_batch


def test_builtin_recipes_load_and_apply(model):
    assert {"dynamic-int8", "dynamic-int8-linears", "q8bert-qat", "naive-ptq-w4", "quant-noise-ipq"} <= set(
        builtin_recipes())
    for name in builtin_recipes():
        assert resolve_recipe(name).steps  # every shipped recipe validates
    recipe = resolve_recipe("dynamic-int8")
    _, reports = recipe.apply(model, bc.Context())
    assert [r.method for r in reports] == ["dynamic_int8"]
    assert model(**random_batch()).logits.isfinite().all()


def test_yaml_roundtrip(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("name: mine\nsteps:\n  - method: dynamic_int8\n    embeddings: false\n")
    recipe = Recipe.from_yaml(path)
    assert recipe.name == "mine" and recipe.steps == [bc.DynamicInt8(embeddings=False)]
    assert Recipe.from_dict(recipe.to_dict()).steps == recipe.steps


@pytest.mark.parametrize("text, message", [
    ("steps: [\n  - method: x\n", "malformed YAML at line"),
    ("name: r\nsteps: []\n", "'steps' must be a non-empty list"),
    ("steps:\n  - method: nope\n", r"steps\[0\] \(nope\): unknown method 'nope'"),
    ("steps:\n  - method: dynamic_int8\n    bits: 4\n", r"steps\[0\] \(dynamic_int8\): DynamicInt8\.bits: unknown field"),
    ("steps:\n  - embeddings: true\n", r"steps\[0\]: each step needs a 'method' field"),
    ("stepz:\n  - method: dynamic_int8\n", "unknown top-level field"),
])
def test_bad_recipes_name_the_step_and_field(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(bc.BertCompressError, match=message):
        Recipe.from_yaml(path)


def test_unknown_recipe_name():
    with pytest.raises(bc.BertCompressError, match="unknown recipe 'zzz'"):
        resolve_recipe("zzz")
