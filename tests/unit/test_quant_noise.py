import pytest
import torch
import torch.nn as nn

import bertcompress as bc
from bertcompress.evaluation.size import stored_bytes
from bertcompress.methods.quantization.int8_modules import DynamicInt8Linear
from bertcompress.methods.quantization.packed import PackedLinear
from bertcompress.methods.quantization.pq import PQLinear, kmeans, reconstruct, subvectors
from bertcompress.methods.quantization.quant_noise import BlockNoise
from tests.conftest import random_batch, tiny_model, toy_task


def noise(scheme="int4", p=0.5, weight=None):
    weight = torch.randn(64, 32) if weight is None else weight
    config = bc.QuantNoise(scheme=scheme, p=p, block_size=4, codebook_size=16)
    return BlockNoise(config, weight, torch.Generator().manual_seed(0)), weight


def test_a_fraction_p_of_blocks_is_quantized_in_training_only():
    module, weight = noise(p=0.3)
    out = module(weight)
    quantized_blocks = (out != weight).reshape(64, 8, 4).any(-1).float().mean().item()
    assert 0.2 < quantized_blocks < 0.4
    changed = out != weight
    assert torch.equal(out[changed], module.quantized(weight)[changed])
    module.eval()
    assert torch.equal(module(weight), weight)


def test_straight_through_gradient_reaches_every_weight():
    module, weight = noise(p=1.0)
    weight.requires_grad_(True)
    scale = torch.randn(64, 32)
    (module(weight) * scale).sum().backward()
    assert torch.equal(weight.grad, scale)


def test_kmeans_beats_its_own_initialisation_and_stores_small():
    linear = nn.Linear(64, 48)
    vectors = subvectors(linear.weight, 4)
    start, start_codes = kmeans(vectors, 16, iterations=0, seed=0)
    fitted, codes = kmeans(vectors, 16, iterations=10, seed=0)
    error = lambda book, idx: (reconstruct(book, idx, (48, 64)) - linear.weight).pow(2).sum()  # noqa: E731
    assert error(fitted, codes) < error(start, start_codes)
    pq = PQLinear.from_linear(linear, block_size=4, codebook_size=16)
    assert pq.codes.dtype == torch.uint8 and pq.codes.numel() == 48 * 64 // 4
    assert stored_bytes(pq) == 16 * 4 * 4 + 48 * 64 // 4 + 48 * 4  # codebook + indices + bias
    x = torch.randn(3, 64)
    assert torch.allclose(pq(x), nn.functional.linear(x, reconstruct(pq.codebook, pq.codes, (48, 64)), linear.bias))


@pytest.mark.parametrize("scheme, kind", [("int8", DynamicInt8Linear), ("int4", PackedLinear), ("ipq", PQLinear)])
def test_training_ends_fully_quantized(scheme, kind, tokenizer, tmp_path):
    teacher = tiny_model()
    student = tiny_model()
    ctx = bc.Context(task=toy_task(), tokenizer=tokenizer, teacher=teacher,
                     train=bc.TrainConfig(batch_size=8, max_length=16))
    report = bc.compress(student, bc.QuantNoise(scheme=scheme, max_steps=3, block_size=4, codebook_size=16,
                                                refresh_every=1), ctx)
    assert isinstance(student.bert.encoder.layer[0].intermediate.dense, kind)
    assert report.metrics["train_steps"] == 3 and report.bytes_after < report.bytes_before / 3
    bc.save(student, tmp_path / "m")
    batch = random_batch()
    with torch.no_grad():
        assert torch.equal(bc.load(tmp_path / "m")(**batch).logits, student(**batch).logits)


def test_block_size_must_divide():
    with pytest.raises(bc.BertCompressError, match="block_size: 5 does not divide"):
        noise(weight=torch.randn(8, 32))[0].__class__(bc.QuantNoise(block_size=5), torch.randn(8, 32),
                                                      torch.Generator())


def test_bad_rate_names_the_field():
    with pytest.raises(bc.BertCompressError, match="QuantNoise.p"):
        bc.QuantNoise(p=0)
