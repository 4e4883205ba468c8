import copy

import pytest
import torch

import bertcompress as bc
from bertcompress.core.report import StepReport
from bertcompress.methods.quantization.int8_modules import DynamicInt8Linear, Int8Embedding
from bertcompress.methods.quantization.packed import PackedLinear
from bertcompress.methods.quantization.qat import convert, prepare
from tests.conftest import FAMILIES, random_batch, tiny_model, toy_task


def test_fake_quantized_weights_lie_on_the_8_bit_grid_and_still_train():
    model = tiny_model()
    linears, tables, _ = prepare(model, bc.Q8BertQAT(granularity="tensor"))
    query = model.bert.encoder.layer[0].attention.self.query
    assert query.weight.unique().numel() <= 255
    original = query.parametrizations.weight.original
    before = original.detach().clone()
    model.train()
    model(**random_batch()).logits.sum().backward()
    assert original.grad is not None and original.grad.abs().sum() > 0  # the STE lets gradients through
    torch.optim.SGD(model.parameters(), lr=0.1).step()
    assert not torch.equal(original, before)
    assert len(tables) == 3  # word, position and token-type tables


def test_per_channel_grid_is_one_per_row():
    model = tiny_model()
    prepare(model, bc.Q8BertQAT())
    weight = model.bert.encoder.layer[0].attention.self.query.weight.detach()
    steps = weight.abs().amax(1, keepdim=True) / 127
    assert torch.allclose(weight / steps, torch.round(weight / steps), atol=1e-3)
    assert weight.unique().numel() > 255  # rows do not share one grid


@pytest.mark.parametrize("granularity", ["tensor", "channel"])
def test_conversion_keeps_the_trained_grid_exactly(granularity):
    model = tiny_model()
    linears, tables, handles = prepare(model, bc.Q8BertQAT(granularity=granularity))
    model.train()
    model(**random_batch())  # set EMA activation ranges
    model.eval()
    baked = {name: m.weight.detach().clone() for name, m in linears.items()}
    words = model.bert.embeddings.word_embeddings.weight.detach().clone()
    convert(model, linears, tables, handles, StepReport("q8bert_qat", {}))
    for name, expected in baked.items():
        module = model.get_submodule(name)
        assert isinstance(module, DynamicInt8Linear)
        assert torch.allclose(module.dequantized_weight(), expected, atol=1e-7)
    assert isinstance(model.bert.embeddings.word_embeddings, Int8Embedding)
    assert torch.allclose(model.bert.embeddings.word_embeddings.weight, words, atol=1e-7)


def test_qat_end_to_end_with_distillation_and_4_bits(tokenizer, tmp_path):
    teacher = tiny_model()
    ctx = bc.Context(task=toy_task(), tokenizer=tokenizer, teacher=teacher,
                     train=bc.TrainConfig(batch_size=8, max_length=16))
    student = copy.deepcopy(teacher)
    report = bc.compress(student, bc.Q8BertQAT(bits=4, max_steps=4, learning_rate=1e-3), ctx)
    assert report.metrics["train_steps"] == 4
    assert isinstance(student.bert.encoder.layer[1].output.dense, PackedLinear)
    assert report.bytes_after < report.bytes_before / 5
    bc.save(student, tmp_path / "s")
    batch = random_batch()
    with torch.no_grad():
        assert torch.equal(bc.load(tmp_path / "s")(**batch).logits, student(**batch).logits)


def test_qat_needs_data_and_a_teacher_when_distilling(tokenizer):
    with pytest.raises(bc.BertCompressError, match="q8bert_qat: this method trains"):
        bc.compress(tiny_model(), bc.Q8BertQAT(max_steps=1), bc.Context())
    with pytest.raises(bc.BertCompressError, match="q8bert_qat.distill: no teacher"):
        bc.compress(tiny_model(), bc.Q8BertQAT(max_steps=1), bc.Context(task=toy_task(), tokenizer=tokenizer))


def test_dynamic_activation_ranges_simulate_the_int8_kernel():
    fp32 = tiny_model()
    model = copy.deepcopy(fp32)
    linears, tables, handles = prepare(model, bc.Q8BertQAT(activation_ranges="dynamic", embeddings=False))
    model.eval()
    batch = random_batch()
    with torch.no_grad():
        simulated = model(**batch).logits
        convert(model, linears, tables, handles, StepReport("q8bert_qat", {}))
        kernel = model(**batch).logits
        reference = fp32(**batch).logits
    assert (simulated - kernel).abs().max() < 0.1 * (reference - kernel).abs().max()


def test_ema_ranges_are_kept_for_static_int8_deployment():
    from bertcompress.methods.quantization.packed import PackedLinear
    from bertcompress.methods.quantization.ranges import EmaRangeQuantizer

    model = tiny_model()
    linears, tables, handles = prepare(model, bc.Q8BertQAT(activation_ranges="ema"))
    model.train()
    model(**random_batch())  # set EMA activation ranges
    model.eval()
    trained = {name: float(m.input_quantizer.max_abs) for name, m in linears.items()
               if isinstance(m.input_quantizer, EmaRangeQuantizer)}
    with torch.no_grad():
        before = model(**random_batch(seed=4)).logits
    convert(model, linears, tables, handles, StepReport("q8bert_qat", {}))
    for name, max_abs in trained.items():
        module = model.get_submodule(name)
        assert isinstance(module, PackedLinear) and module.input_spec.bits == 8
        assert float(module.input_scale) == pytest.approx(max_abs / 127, rel=1e-6)
    with torch.no_grad():  # the converted model computes what the trained, fake-quantized one did
        torch.testing.assert_close(model(**random_batch(seed=4)).logits, before, atol=1e-5, rtol=0)


# --- attention products with trained ranges -----------------------------------------------------------


def _attentions(model):
    from bertcompress.arch.spec import get_spec

    spec = get_spec(model)
    return [layer.get_submodule(spec.self_attention) for layer in spec.layer_list(model)]


@pytest.mark.parametrize("family", FAMILIES)
def test_attention_products_start_as_the_stock_attention_and_keep_its_linears(family):
    """Before any range is trained the replacement computes what the stock attention does (padding included)
    and holds the very Linears the QAT parametrizes."""
    from bertcompress.methods.quantization.attention_products import (QuantizedProductsAttention,
                                                                      quantize_attention_products)

    model = tiny_model(family).eval()
    batch = _batch(family)
    linears = {id(m) for a in _attentions(model) for m in a.modules() if isinstance(m, torch.nn.Linear)}
    with torch.no_grad():
        stock = model(**batch).logits
        assert quantize_attention_products(model) == 2
        replaced = model(**batch).logits
    assert all(isinstance(a, QuantizedProductsAttention) and not a.training for a in _attentions(model))
    assert {id(m) for a in _attentions(model) for m in a.modules() if isinstance(m, torch.nn.Linear)} == linears
    torch.testing.assert_close(replaced, stock, atol=1e-6, rtol=0)
    with pytest.raises(bc.BertCompressError, match="layer 0's self-attention is a QuantizedProductsAttention"):
        quantize_attention_products(model)


def _batch(family):
    batch = random_batch()
    batch["attention_mask"][0, -3:] = 0  # padding, so the mask path counts
    if family == "distilbert":
        batch.pop("token_type_ids", None)
    return batch


def test_product_inputs_lie_on_their_trained_grids():
    """Each product's inputs are quantized with the range its EMA learned: symmetric int8 for query, key and
    value; [0, max] on 255 steps for the softmax weights."""
    model = tiny_model()
    prepare(model, bc.Q8BertQAT(activation_ranges="ema", attention_products=True))
    model.train()
    model(**random_batch())
    model.eval()
    attention = _attentions(model)[0]
    seen = {}
    for name, quantizer in attention.products.items():
        quantizer.register_forward_hook(lambda m, i, o, name=name: seen.update({name: (i[0], o)}))
    with torch.no_grad():
        model(**random_batch(seed=5))
    assert set(seen) == {"query", "key", "weights", "value"}
    for name, (before, after) in seen.items():
        low, high = attention.products[name].range()
        assert (low == 0) == (name == "weights") and high > 0
        step = high / (255 if name == "weights" else 127)
        codes = after / step
        torch.testing.assert_close(codes, codes.round(), atol=1e-3, rtol=0)
        assert codes.min() >= (0 if name == "weights" else -127) - 1e-3 and codes.max() <= 255 + 1e-3
        assert (after - before).abs().max() <= step / 2 + 1e-6 or before.abs().max() > high
    assert seen["key"][1].shape[-2:] == seen["query"][1].shape[-2:][::-1]  # key enters transposed


def test_attention_products_need_fixed_activation_ranges():
    with pytest.raises(bc.BertCompressError, match="attention_products: needs activations: true"):
        bc.Q8BertQAT(attention_products=True)
    with pytest.raises(bc.BertCompressError, match="activation_ranges: ema"):
        bc.Q8BertQAT(attention_products=True, activation_ranges="ema", activations=False)


def test_qat_with_attention_products_trains_converts_saves_and_reloads(tokenizer, tmp_path):
    from bertcompress.methods.quantization.attention_products import QuantizedProductsAttention

    teacher = tiny_model()
    ctx = bc.Context(task=toy_task(), tokenizer=tokenizer, teacher=teacher,
                     train=bc.TrainConfig(batch_size=8, max_length=16))
    student = copy.deepcopy(teacher)
    report = bc.compress(student, bc.Q8BertQAT(activation_ranges="ema", attention_products=True, max_steps=3), ctx)
    assert report.metrics["attention_products_layers"] == 2 and "attention products too" in report.notes[0]
    attention = _attentions(student)[1]
    assert isinstance(attention, QuantizedProductsAttention)
    assert isinstance(attention.query, PackedLinear) and attention.query.input_spec.bits == 8
    assert all(q.range() is not None for q in attention.products.values())
    bc.save(student, tmp_path / "s")
    reloaded = bc.load(tmp_path / "s")
    assert [q.range() for q in _attentions(reloaded)[1].products.values()] == \
        [q.range() for q in attention.products.values()]
    batch = random_batch()
    with torch.no_grad():
        assert torch.equal(reloaded(**batch).logits, student(**batch).logits)


def test_attention_products_refuse_a_changed_attention_before_replacing_any_layer():
    from bertcompress.methods.pruning.fixed_attention import replace_layer
    from bertcompress.methods.quantization.attention_products import quantize_attention_products

    model = tiny_model()
    replace_layer(model, 1, [0], ("previous", "next", "current"))
    stock = type(_attentions(model)[0])
    with pytest.raises(bc.BertCompressError, match="layer 1's self-attention is a FixedPatternAttention"):
        quantize_attention_products(model)
    assert type(_attentions(model)[0]) is stock
