import pytest
import torch
import torch.nn as nn

import bertcompress as bc
from bertcompress.evaluation.size import stored_bytes
from bertcompress.methods.quantization.int8_modules import DynamicInt8Linear, Int8Embedding
from bertcompress.methods.quantization.packed import PackedEmbedding, PackedLinear
from bertcompress.methods.quantization.pq import PQEmbedding, PQLinear, kmeans, reconstruct, subvectors
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


def test_codebook_gradient_sums_the_gradients_of_its_subvectors():
    linear = nn.Linear(16, 12)
    pq = PQLinear.from_linear(linear, block_size=4, codebook_size=8)
    pq.codebook.requires_grad_(True)
    x = torch.randn(5, 16)
    pq(x).pow(2).sum().backward()
    weight = reconstruct(pq.codebook.detach(), pq.codes, (12, 16)).requires_grad_(True)
    nn.functional.linear(x, weight, pq.bias).pow(2).sum().backward()
    expected = torch.zeros(8, 4).index_add_(0, pq.codes.long(), weight.grad.reshape(-1, 4))
    assert torch.allclose(pq.codebook.grad, expected, atol=1e-5)


def test_pq_embedding_rows_and_small_tables():
    table = nn.Embedding(3, 8)
    pq = PQEmbedding.from_embedding(table, block_size=4, codebook_size=256)
    assert pq.codebook_size == 6  # 3 rows x 2 sub-vectors: every sub-vector its own centroid
    ids = torch.tensor([[2, 0, 1]])
    assert torch.allclose(pq(ids), table(ids))


@pytest.mark.parametrize("scheme, kind, table_kind", [("int8", DynamicInt8Linear, Int8Embedding),
                                                      ("int4", PackedLinear, PackedEmbedding),
                                                      ("ipq", PQLinear, PQEmbedding)])
def test_training_ends_fully_quantized(scheme, kind, table_kind, tokenizer, tmp_path):
    teacher = tiny_model()
    student = tiny_model()
    ctx = bc.Context(task=toy_task(), tokenizer=tokenizer, teacher=teacher,
                     train=bc.TrainConfig(batch_size=8, max_length=16))
    report = bc.compress(student, bc.QuantNoise(scheme=scheme, max_steps=3, block_size=4, codebook_size=16,
                                                refresh_every=1, centroid_epochs=0.2), ctx)
    assert isinstance(student.bert.encoder.layer[0].intermediate.dense, kind)
    assert isinstance(student.bert.embeddings.word_embeddings, table_kind)
    assert isinstance(student.bert.embeddings.position_embeddings, table_kind)
    assert report.metrics["train_steps"] == 3 and report.bytes_after < report.bytes_before / 3
    assert ("centroid_steps" in report.metrics) == (scheme == "ipq")
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


def test_centroid_finetuning_moves_codebooks_not_indices(tokenizer):
    teacher = tiny_model()
    ctx = bc.Context(task=toy_task(), tokenizer=tokenizer, teacher=teacher,
                     train=bc.TrainConfig(batch_size=8, max_length=16))
    untuned, tuned = tiny_model(), tiny_model()
    config = dict(scheme="ipq", max_steps=2, block_size=4, codebook_size=16, embeddings=False)
    bc.compress(untuned, bc.QuantNoise(centroid_epochs=0, **config), ctx)
    bc.compress(tuned, bc.QuantNoise(centroid_epochs=0.5, centroid_learning_rate=1e-2, **config), ctx)
    before, after = (m.bert.encoder.layer[0].output.dense for m in (untuned, tuned))
    assert torch.equal(before.codes, after.codes)
    assert not torch.allclose(before.codebook, after.codebook)
    assert not after.codebook.requires_grad


def test_zero_epochs_quantizes_the_trained_weights_without_noise_training(tokenizer):
    """epochs=0 is iPQ after training (the baseline Quant-Noise is compared with): no step is taken, and the
    codes are those of the untouched weights."""
    ctx = bc.Context(task=toy_task(), tokenizer=tokenizer, teacher=tiny_model(),
                     train=bc.TrainConfig(batch_size=8, max_length=16))
    model = tiny_model()
    original = model.bert.encoder.layer[0].output.dense.weight.detach().clone()
    config = dict(scheme="ipq", block_size=4, codebook_size=16, embeddings=False, centroid_epochs=0)
    report = bc.compress(model, bc.QuantNoise(epochs=0, **config), ctx)
    assert report.metrics["train_steps"] == 0 and "quantized after training" in report.notes[0]
    with torch.no_grad():
        direct_linear = nn.Linear(48, 32)
        direct_linear.weight.copy_(original)
        direct = PQLinear.from_linear(direct_linear, 4, 16, 15, 0)
    assert torch.equal(model.bert.encoder.layer[0].output.dense.codes, direct.codes)
    trained = tiny_model()
    noisy = bc.QuantNoise(epochs=1, max_steps=2, learning_rate=0.05, **config)
    assert bc.compress(trained, noisy, ctx).metrics["train_steps"] == 2
    assert not torch.equal(trained.bert.encoder.layer[0].output.dense.codes, direct.codes)
