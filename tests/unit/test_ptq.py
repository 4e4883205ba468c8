import copy

import pytest
import torch

import bertcompress as bc
from bertcompress.evaluation.size import stored_bytes
from bertcompress.methods.quantization.packed import PackedLinear
from tests.conftest import random_batch, tiny_model, toy_task


def _weight_only(bits: int):
    """(the quantized copy, its report, its largest logit error) of the tiny model at `bits`."""
    model = tiny_model()
    batch = random_batch()
    with torch.no_grad():
        reference = model(**batch).logits
    quantized = copy.deepcopy(model)
    report = bc.compress(quantized, bc.NaivePTQ(weight_bits=bits), bc.Context())
    with torch.no_grad():
        error = (quantized(**batch).logits - reference).abs().max().item()
    return quantized, report, error


@pytest.mark.parametrize("bits", [8, 4, 2])
def test_weight_only_ptq_stores_b_bits(bits):
    quantized, report, error = _weight_only(bits)
    linear = quantized.bert.encoder.layer[0].intermediate.dense
    assert isinstance(linear, PackedLinear) and linear.spec.bits == bits
    assert linear.packed.numel() == 48 * 32 * bits // 8
    assert report.bytes_after < report.bytes_before * (bits / 32 + 0.15)
    assert 0 < error


def test_weight_only_ptq_error_grows_as_bits_fall():
    errors = {bits: _weight_only(bits)[2] for bits in (8, 4, 2)}
    assert errors[8] < errors[4] < errors[2], errors


def test_static_activation_ptq_calibrates_ranges(tokenizer, tmp_path):
    model = tiny_model()
    ctx = bc.Context(task=toy_task(), tokenizer=tokenizer)
    bc.compress(model, bc.NaivePTQ(weight_bits=8, activation_bits=8, calibration_examples=16), ctx)
    linear = model.bert.encoder.layer[0].attention.self.query
    assert linear.input_spec.bits == 8 and linear.input_scale.item() > 0
    percentile = tiny_model()
    bc.compress(percentile, bc.NaivePTQ(activation_bits=8, observer="percentile", percentile=99.0,
                                        calibration_examples=16), ctx)
    # a percentile range clips outliers, so its step is no larger than min/max's
    assert percentile.bert.encoder.layer[0].attention.self.query.input_scale <= linear.input_scale
    bc.save(model, tmp_path / "m")
    batch = random_batch()
    with torch.no_grad():
        assert torch.equal(bc.load(tmp_path / "m")(**batch).logits, model(**batch).logits)


def test_static_ptq_without_data_is_a_clear_error():
    with pytest.raises(bc.BertCompressError, match="naive_ptq.activation_bits: static activation quantization needs"):
        bc.compress(tiny_model(), bc.NaivePTQ(activation_bits=8), bc.Context())


@pytest.mark.parametrize("kwargs, message", [
    (dict(weight_bits=9), "NaivePTQ.weight_bits"),
    (dict(weight_bits=1), "NaivePTQ.weight_bits"),
    (dict(granularity="row"), "NaivePTQ.granularity"),
])
def test_bad_config(kwargs, message):
    with pytest.raises(bc.BertCompressError, match=message):
        bc.NaivePTQ(**kwargs)


def test_group_size_that_does_not_divide_names_the_layer():
    with pytest.raises(bc.BertCompressError, match="group_size: 5 does not divide bert.encoder.layer.0"):
        bc.compress(tiny_model(), bc.NaivePTQ(granularity="group", group_size=5), bc.Context())


def test_sub_8_bit_model_is_smaller_on_disk():
    from bertcompress.evaluation.size import size_on_disk

    model = tiny_model()
    before = stored_bytes(model)
    bc.compress(model, bc.NaivePTQ(weight_bits=2, embeddings=True, granularity="channel"), bc.Context())
    # a tiny model is dominated by biases, LayerNorms and position embeddings, which stay fp32
    assert stored_bytes(model) < before / 3.5
    assert size_on_disk(model)["weights"] < before / 2.5  # plus the safetensors header


def test_empty_targets_quantize_the_embedding_table_only():
    model = tiny_model()
    report = bc.compress(model, bc.NaivePTQ(weight_bits=3, targets=[], embeddings=True), bc.Context())
    assert report.modules_changed == 1
    assert type(model.bert.encoder.layer[0].intermediate.dense) is torch.nn.Linear
    assert type(model.bert.embeddings.word_embeddings).__name__ == "PackedEmbedding"
    with pytest.raises(bc.BertCompressError, match="nothing to quantize"):
        bc.NaivePTQ(targets=[])
