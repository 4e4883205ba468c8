"""`bertcompress hardware`: features parsed from cpuinfo, a GEMM probe that runs, advice that follows the
measured ratios and the features."""
import json

import pytest

from bertcompress.cli import main
from bertcompress.hardware import advice, cpu_features, gemm_probe, has_int8_dot_product

X86 = "processor\t: 0\nmodel name\t: Some CPU\nflags\t\t: fpu sse avx2 fma avx512f avx512_vnni avx512_bf16\n"
ARM = "processor\t: 0\nFeatures\t: fp asimd asimddp sve\n"


def test_features_from_cpuinfo():
    assert cpu_features(X86) == ["avx2", "avx512f", "avx512_vnni", "avx512_bf16"]
    assert cpu_features(ARM) == ["asimddp", "sve"]
    assert cpu_features("") == []


def test_probe_times_every_precision():
    probe = gemm_probe(repeats=2, shape=(64, 32, 48))
    assert set(probe) == {"fp32_ms", "bf16_ms", "int8_ms", "int8_7bit_ms"}
    assert all(value > 0 for value in probe.values())


@pytest.mark.parametrize("features, probe, expected", [
    (["avx2"], {"fp32_ms": 30, "bf16_ms": 60, "int8_ms": 20, "int8_7bit_ms": 20},
     ["use int8", "7-bit activations", "does not pay"]),
    (["avx512_vnni", "avx512_bf16"], {"fp32_ms": 30, "bf16_ms": 10, "int8_ms": 10, "int8_7bit_ms": 12},
     ["use int8", "full 8-bit activations", "bf16 pays"]),
    (["asimddp"], {"fp32_ms": 10, "bf16_ms": 20, "int8_ms": 10, "int8_7bit_ms": 11},
     ["saves size, not time", "full 8-bit activations", "does not pay"]),
])
def test_advice_follows_ratios_and_features(features, probe, expected):
    lines = advice(features, probe)
    assert len(lines) == 3
    for line, fragment in zip(lines, expected):
        assert fragment in line, (line, fragment)


def test_the_static_int8_path_is_advised_only_with_int8_dot_products_and_openvino():
    probe = {"fp32_ms": 30, "bf16_ms": 10, "int8_ms": 10, "int8_7bit_ms": 12}
    advised = advice(["avx512_vnni"], probe, {"openvino": "2025.0"})
    assert len(advised) == 4 and "q8bert-static-int8" in advised[-1]
    assert len(advice(["avx512_vnni"], probe, {"openvino": None})) == 3
    assert len(advice(["avx2"], probe, {"openvino": "2025.0"})) == 3


def test_cli_reports_json(capsys):
    with pytest.raises(SystemExit) as done:
        main(["hardware", "--json", "--repeats", "1"])
    assert done.value.code == 0
    found = json.loads(capsys.readouterr().out)
    assert found["features"] == cpu_features() and found["runtimes"]["torch"]
    static = has_int8_dot_product(found["features"]) and found["runtimes"].get("openvino")
    assert len(found["advice"]) == 3 + bool(static) and found["gemm_probe"]["fp32_ms"] > 0


@pytest.mark.parametrize("features, reduced", [(["avx2"], True), (["avx2", "avx512_vnni"], False),
                                               (["amx_int8"], False), (["asimddp"], False)])
def test_dynamic_int8_picks_7_bit_activations_only_without_int8_dot_products(features, reduced, monkeypatch):
    import bertcompress as bc
    import bertcompress.hardware as hardware
    from bertcompress.methods.quantization.int8_modules import DynamicInt8Linear
    from tests.conftest import tiny_model

    monkeypatch.setattr(hardware, "cpu_features", lambda text=None: features)
    model = tiny_model()
    report = bc.compress(model, bc.DynamicInt8())
    kinds = {m.reduce_range for m in model.modules() if isinstance(m, DynamicInt8Linear)}
    assert kinds == {reduced} and f"{7 if reduced else 8}-bit activations" in " ".join(report.notes)
    explicit = tiny_model()
    bc.compress(explicit, bc.DynamicInt8(reduce_range=not reduced))
    assert {m.reduce_range for m in explicit.modules() if isinstance(m, DynamicInt8Linear)} == {not reduced}
