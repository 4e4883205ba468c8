import torch
import torch.nn as nn

from bertcompress.methods.quantization.int8_modules import DynamicInt8Linear, Int8Embedding, quantize_rows


def test_row_quantization_error_is_within_half_a_step():
    weight = torch.randn(64, 48) * torch.rand(64, 1) * 3
    values, scale = quantize_rows(weight)
    assert values.dtype == torch.int8 and values.abs().max() <= 127
    error = (values.float() * scale[:, None] - weight).abs()
    assert torch.all(error <= scale[:, None] / 2 + 1e-7)


def test_dynamic_int8_linear_matches_fp32_within_quantization_noise():
    torch.manual_seed(0)
    linear = nn.Linear(96, 80)
    quantized = DynamicInt8Linear.from_linear(linear)
    x = torch.randn(4, 7, 96)
    reference = linear(x)
    out = quantized(x)
    assert out.shape == reference.shape
    relative = (out - reference).norm() / reference.norm()
    assert relative < 0.02
    # and it is not simply the fp32 result: the int8 kernel really ran
    assert not torch.equal(out, reference)


def test_dynamic_int8_linear_stores_int8():
    quantized = DynamicInt8Linear.from_linear(nn.Linear(32, 16))
    state = quantized.state_dict()
    assert state["weight_int8"].dtype == torch.int8
    assert sum(t.numel() * t.element_size() for t in state.values()) < 32 * 16 * 4 / 3


def test_int8_embedding_lookup_equals_dequantized_rows():
    embedding = nn.Embedding(50, 24, padding_idx=0)
    quantized = Int8Embedding.from_embedding(embedding)
    ids = torch.tensor([[1, 5, 49], [0, 2, 2]])
    assert torch.allclose(quantized(ids), quantized.weight[ids])
    _, scale = quantize_rows(embedding.weight)
    assert torch.all((quantized(ids) - embedding(ids)).abs() <= scale[ids][..., None] / 2 + 1e-7)


def test_without_vnni_the_activation_bits_are_the_ones_that_keep_outputs_closer(monkeypatch):
    import bertcompress as bc
    from bertcompress.methods.quantization import dynamic
    from tests.conftest import tiny_model, tiny_tokenizer, toy_task

    monkeypatch.setattr(dynamic, "has_int8_dot_product", lambda: False)
    model = tiny_model()
    report = bc.compress(model, bc.DynamicInt8(), bc.Context(task=toy_task(), tokenizer=tiny_tokenizer()))
    errors = report.metrics["output_error_by_activation_bits"]
    chosen = {module.reduce_range for module in model.modules() if hasattr(module, "reduce_range")}
    assert chosen == {errors["7"] < errors["8"]} and errors["7"] != errors["8"]
    blind = tiny_model()
    assert "output_error_by_activation_bits" not in bc.compress(blind, bc.DynamicInt8(), bc.Context()).metrics
    assert {m.reduce_range for m in blind.modules() if hasattr(m, "reduce_range")} == {True}
    monkeypatch.setattr(dynamic, "has_int8_dot_product", lambda: True)
    vnni = tiny_model()
    bc.compress(vnni, bc.DynamicInt8(), bc.Context(task=toy_task(), tokenizer=tiny_tokenizer()))
    assert {m.reduce_range for m in vnni.modules() if hasattr(m, "reduce_range")} == {False}
