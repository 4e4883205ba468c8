import copy

import pytest
import torch

import bertcompress as bc
from bertcompress.arch.spec import get_spec
from bertcompress.evaluation.size import encoder_linear_bytes
from bertcompress.methods.pruning.fixed_attention import FixedAttention, replace_layer
from bertcompress.methods.pruning.fixed_patterns import (PATTERNS, FixedPatternAttention, allowed_keys,
                                                         pattern_weights)
from bertcompress.surgery import head_count
from tests.conftest import FAMILIES, random_batch, tiny_model, toy_task


def _ctx(model, tokenizer):
    return bc.Context(task=toy_task(), tokenizer=tokenizer, teacher=copy.deepcopy(model),
                      train=bc.TrainConfig(batch_size=8, max_length=16))


def _mask(valid: int, length: int) -> torch.Tensor:
    """The bool (batch, 1, query, key) mask transformers passes with sdpa: keys past `valid` are padding."""
    keys = torch.arange(length) < valid
    return keys[None, None, None, :].expand(1, 1, length, length)


def test_patterns_for_a_short_sentence():
    weights = pattern_weights(PATTERNS, allowed_keys(None, 1, 4, torch.device("cpu")))[0]
    expected = {
        "previous": [[1, 0, 0, 0], [1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0]],  # the first token: itself
        "next": [[0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1], [0, 0, 0, 1]],  # the last token: itself
        "current": torch.eye(4).tolist(),
        "left": [[1, 0, 0, 0], [1, 0, 0, 0], [1 / 2, 1 / 2, 0, 0], [1 / 3, 1 / 3, 1 / 3, 0]],
        "right": [[0, 1 / 3, 1 / 3, 1 / 3], [0, 0, 1 / 2, 1 / 2], [0, 0, 0, 1], [0, 0, 0, 1]],
    }
    for head, name in enumerate(PATTERNS):
        assert torch.allclose(weights[head], torch.tensor(expected[name], dtype=torch.float)), name


def test_patterns_are_row_stochastic_over_real_tokens_and_ignore_padding():
    bool_mask = _mask(valid=5, length=8)
    weights = pattern_weights(PATTERNS, allowed_keys(bool_mask, 1, 8, torch.device("cpu")))[0]
    real = weights[:, :5]  # queries that are real tokens
    assert torch.allclose(real.sum(-1), torch.ones(len(PATTERNS), 5))
    assert torch.all(real[:, :, 5:] == 0)
    assert weights[PATTERNS.index("next"), 4, 4] == 1  # the last real token has no real next token
    assert weights[PATTERNS.index("right"), 2].tolist()[:5] == [0, 0, 0, 0.5, 0.5]
    additive = torch.where(bool_mask, 0.0, torch.finfo(torch.float).min)
    assert torch.equal(pattern_weights(PATTERNS, allowed_keys(additive, 1, 8, torch.device("cpu"))), weights[None])


def test_fixed_heads_mix_values_by_their_pattern():
    torch.manual_seed(0)
    module = FixedPatternAttention("bert", 8, 2, 4, 0, ("current", "previous")).eval()
    x = torch.randn(2, 5, 8)
    context, _ = module(x)
    value = module.value(x)
    assert torch.allclose(context[..., :4], value[..., :4], atol=1e-6)
    assert torch.allclose(context[:, 1:, 4:], value[:, :-1, 4:], atol=1e-6)
    assert module.query.out_features == 0 and module.key.out_features == 0


@pytest.mark.parametrize("family", FAMILIES)
def test_all_heads_learned_reproduces_the_original(family):
    model = tiny_model(family)
    batch = random_batch()
    with torch.no_grad():
        reference = model(**batch).logits
    for index, learned in enumerate([[0, 1, 2, 3], [2, 0, 3, 1]]):  # any order: heads are moved consistently
        replace_layer(model, index, learned, PATTERNS)
    spec = get_spec(model)
    assert all(isinstance(layer.get_submodule(spec.self_attention), FixedPatternAttention)
               for layer in spec.layer_list(model))
    with torch.no_grad():
        assert torch.allclose(model(**batch).logits, reference, atol=1e-5)


def test_all_heads_learned_matches_eager_attention_with_an_additive_mask():
    model = tiny_model()
    model.set_attn_implementation("eager")
    batch = random_batch()
    with torch.no_grad():
        reference = model(**batch).logits
        for index in range(2):
            replace_layer(model, index, [0, 1, 2, 3], PATTERNS)
        assert torch.allclose(model(**batch).logits, reference, atol=1e-5)


@pytest.mark.parametrize("family", FAMILIES)
def test_fixed_heads_lose_query_and_key_weights_and_reload(family, tokenizer, tmp_path):
    model = tiny_model(family)
    linear_bytes = encoder_linear_bytes(model)
    config = FixedAttention(learnable_heads=1, selection="first", epochs=0)
    report = bc.compress(model, config, _ctx(model, tokenizer))
    spec = get_spec(model)
    for layer in spec.layer_list(model):
        assert layer.get_submodule(spec.linears["query"]).out_features == 8
        assert layer.get_submodule(spec.linears["key"]).out_features == 8
        assert layer.get_submodule(spec.linears["value"]).out_features == 32
    assert encoder_linear_bytes(model) < linear_bytes and report.bytes_after < report.bytes_before
    assert report.metrics["head_patterns"][0] == ["learned", "current", "previous", "next"]
    assert [head_count(model, i) for i in range(2)] == [4, 4]
    batch = random_batch()
    with torch.no_grad():
        logits = model(**batch).logits
    assert torch.isfinite(logits).all()
    bc.save(model, tmp_path / "m")
    reloaded = bc.load(tmp_path / "m")
    assert isinstance(get_spec(reloaded).layer_list(reloaded)[1].get_submodule(spec.self_attention),
                      FixedPatternAttention)
    with torch.no_grad():
        assert torch.equal(reloaded(**batch).logits, logits)


def test_gradient_selection_then_training_on_the_toy_task(tokenizer):
    model = tiny_model("distilbert")
    report = bc.compress(model, FixedAttention(learnable_heads=2, patterns=["left", "right"], max_steps=3),
                         _ctx(model, tokenizer))
    assert report.metrics["train_steps"] == 3 and report.modules_changed == 2
    assert all(len(heads) == 2 for heads in report.metrics["learned_heads"])
    assert report.metrics["head_patterns"][1] == ["learned", "learned", "left", "right"]
    model.train()
    loss = model(**random_batch(), labels=torch.tensor([0, 1, 0])).loss
    loss.backward()  # fixed heads still pass gradients to their value weights
    assert model.distilbert.transformer.layer[0].attention.v_lin.weight.grad.abs().sum() > 0


def test_bad_input(tokenizer):
    with pytest.raises(bc.BertCompressError, match="FixedAttention.patterns"):
        FixedAttention(patterns=["diagonal"])
    with pytest.raises(bc.BertCompressError, match="FixedAttention.learnable_heads"):
        FixedAttention(learnable_heads=0)
    model = tiny_model()
    with pytest.raises(bc.BertCompressError, match="learnable_heads: 5 is more than the 4 heads"):
        bc.compress(model, FixedAttention(learnable_heads=5), _ctx(model, tokenizer))
    with pytest.raises(bc.BertCompressError, match="'gradient' needs data"):
        bc.compress(model, FixedAttention(epochs=0), bc.Context())
    with pytest.raises(bc.BertCompressError, match="fixed_attention.distill: no teacher"):
        bc.compress(model, FixedAttention(selection="first"), bc.Context(task=toy_task(), tokenizer=tokenizer))
    assert type(model.bert.encoder.layer[0].attention.self) is not FixedPatternAttention  # untouched on failure
    bc.compress(model, FixedAttention(selection="first", epochs=0), bc.Context())
    with pytest.raises(bc.BertCompressError, match="heads were already changed"):
        bc.compress(model, FixedAttention(selection="first", epochs=0), bc.Context())
    with pytest.raises(bc.BertCompressError, match="already has fixed attention"):
        replace_layer(model, 0, [0], PATTERNS)
    quantized = tiny_model()
    bc.compress(quantized, bc.DynamicInt8(), bc.Context())
    with pytest.raises(bc.BertCompressError, match="needs float Linears"):
        bc.compress(quantized, FixedAttention(selection="first", epochs=0), bc.Context())


def test_quantizing_after_fixed_attention_saves_and_reloads(tmp_path):
    model = tiny_model()
    bc.compress(model, FixedAttention(learnable_heads=2, selection="first", epochs=0), bc.Context())
    bc.compress(model, bc.DynamicInt8(), bc.Context())
    batch = random_batch()
    with torch.no_grad():
        logits = model(**batch).logits
    bc.save(model, tmp_path / "m")
    with torch.no_grad():
        assert torch.equal(bc.load(tmp_path / "m")(**batch).logits, logits)


def test_onnx_export_matches_at_another_length(tmp_path):
    pytest.importorskip("onnxruntime")
    from bertcompress.evaluation.onnx_export import export_onnx, max_logit_difference

    model = tiny_model("distilbert")
    bc.compress(model, FixedAttention(learnable_heads=1, selection="first", epochs=0), bc.Context())
    path = export_onnx(model, tmp_path / "model.onnx", seq_len=16)
    assert max_logit_difference(model, path, random_batch(batch_size=5, length=23, seed=2)) <= 1e-4


def test_a_replaced_layer_keeps_the_models_mode():
    """Replacing a layer of a model in eval mode must not switch dropout back on for that layer."""
    model = tiny_model().eval()
    replace_layer(model, 0, [0], ("previous", "next", "current"))
    assert not model.bert.encoder.layer[0].attention.self.training
