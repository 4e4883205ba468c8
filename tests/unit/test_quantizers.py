import pytest
import torch

from bertcompress.core.errors import BertCompressError
from bertcompress.methods.quantization.quantizers import (QuantSpec, dequantize, fake_quantize, pack_bits, qparams,
                                                          quantize, unpack_bits)

SPECS = [QuantSpec(bits, symmetric, granularity, 8)
         for bits in (2, 3, 4, 8) for symmetric in (True, False) for granularity in ("tensor", "channel", "group")]


@pytest.mark.parametrize("spec", SPECS, ids=str)
def test_dequantized_error_is_at_most_half_a_step(spec):
    weight = torch.randn(12, 32) * torch.linspace(0.1, 3, 12)[:, None] + 0.3
    codes, scale, zero = quantize(weight, spec)
    assert codes.min() >= spec.qmin and codes.max() <= spec.qmax
    error = (dequantize(codes, scale, zero, spec) - weight).abs()
    step = scale.reshape(-1, 1).expand(-1, weight.numel() // scale.numel()).reshape(weight.shape)
    assert torch.all(error <= step / 2 + 1e-6)


@pytest.mark.parametrize("spec", SPECS, ids=str)
def test_packing_roundtrips_and_takes_b_bits(spec):
    codes, _, _ = quantize(torch.randn(10, 16), spec)
    packed = pack_bits(codes, spec)
    assert packed.dtype == torch.uint8 and packed.numel() == (codes.numel() * spec.bits + 7) // 8
    assert torch.equal(unpack_bits(packed, codes.shape, spec), codes)


def test_asymmetric_grid_represents_zero_exactly():
    spec = QuantSpec(4, symmetric=False, granularity="tensor")
    x = torch.tensor([0.0, 0.7, 2.9, 1.3])  # all positive: the range is widened to include 0
    codes, scale, zero = quantize(x, spec)
    assert dequantize(codes, scale, zero, spec)[0] == 0.0


def test_ste_passes_gradients_inside_the_range_and_zero_outside():
    spec = QuantSpec(8, symmetric=True, granularity="tensor")
    x = torch.tensor([-3.0, -1.0, -0.5, 0.2, 0.9, 1.0, 5.0], requires_grad=True)
    scale, zero = torch.tensor([1.0 / 127]), torch.tensor([0.0])  # representable range [-1, 1]
    out = fake_quantize(x, spec, scale, zero)
    out.backward(torch.ones_like(out))
    assert x.grad.tolist() == [0.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0]  # the range's ends are inside
    assert out[0].item() == pytest.approx(-1.0) and out[-1].item() == pytest.approx(1.0)


def test_fake_quantize_equals_quantize_dequantize():
    spec = QuantSpec(4, symmetric=False, granularity="group", group_size=8)
    x = torch.randn(4, 16)
    codes, scale, zero = quantize(x, spec)
    assert torch.allclose(fake_quantize(x, spec), dequantize(codes, scale, zero, spec), atol=1e-6)


@pytest.mark.parametrize("kwargs, message", [
    (dict(bits=9), "bits: 9 is outside the allowed range 2..8"),
    (dict(bits=1), "bits: 1 is outside"),
    (dict(granularity="row"), "granularity: 'row'; allowed"),
])
def test_bad_specs(kwargs, message):
    with pytest.raises(BertCompressError, match=message):
        QuantSpec(**kwargs)


def test_group_size_below_one_is_refused_only_for_groups():
    with pytest.raises(BertCompressError, match="group_size: 0 must be >= 1"):
        QuantSpec(4, granularity="group", group_size=0)
    assert QuantSpec(4, granularity="group", group_size=1).group_size == 1
    assert QuantSpec(4, granularity="channel", group_size=0).granularity == "channel"  # unused there


def test_group_size_is_checked_against_the_last_dimension():
    spec = QuantSpec(4, granularity="group", group_size=4)
    spec.check_shape(torch.Size([2, 5, 16]))  # only the last dimension must be a multiple
    message = "^group_size: 4 does not divide weight's last dimension 10; choose a divisor of 10$"
    with pytest.raises(BertCompressError, match=message):
        spec.check_shape(torch.Size([4, 6, 10]))
    QuantSpec(4, granularity="channel", group_size=4).check_shape(torch.Size([4, 6, 10]))


def test_group_size_must_divide_the_dimension():
    with pytest.raises(BertCompressError, match="group_size: 5 does not divide"):
        qparams(torch.randn(4, 16), QuantSpec(4, granularity="group", group_size=5))
