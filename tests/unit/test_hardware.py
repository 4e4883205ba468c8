"""`bertcompress hardware`: features parsed from cpuinfo, a GEMM probe that runs, advice that follows the
measured ratios and the features."""
import json

import pytest

from bertcompress.cli import main
from bertcompress.hardware import advice, cpu_features, gemm_probe

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
     ["use int8", "keep reduce_range: true", "does not pay"]),
    (["avx512_vnni", "avx512_bf16"], {"fp32_ms": 30, "bf16_ms": 10, "int8_ms": 10, "int8_7bit_ms": 12},
     ["use int8", "reduce_range: false", "bf16 pays"]),
    (["asimddp"], {"fp32_ms": 10, "bf16_ms": 20, "int8_ms": 10, "int8_7bit_ms": 11},
     ["saves size, not time", "reduce_range: false", "does not pay"]),
])
def test_advice_follows_ratios_and_features(features, probe, expected):
    lines = advice(features, probe)
    assert len(lines) == 3
    for line, fragment in zip(lines, expected):
        assert fragment in line, (line, fragment)


def test_cli_reports_json(capsys):
    with pytest.raises(SystemExit) as done:
        main(["hardware", "--json", "--repeats", "1"])
    assert done.value.code == 0
    found = json.loads(capsys.readouterr().out)
    assert found["features"] == cpu_features() and found["runtimes"]["torch"]
    assert len(found["advice"]) == 3 and found["gemm_probe"]["fp32_ms"] > 0
