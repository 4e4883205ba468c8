"""The CLI main job on the packaged model and a small slice of the packaged data."""
import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.integration


def test_run_on_a_slice(tmp_path):
    command = [sys.executable, "-m", "bertcompress.cli", "run", "--max-train", "96", "--max-eval", "48",
               "--max-steps", "6", "--repeats", "3", "--output", str(tmp_path / "runs"), "--name", "slice"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=900,
                            env={**os.environ, "BERTCOMPRESS_QUIET": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads((tmp_path / "runs" / "slice" / "results.json").read_text())
    names = [v["variant"] for v in results["variants"]]
    assert names == ["teacher (fp32)", "dynamic-int8", "dynamic-int8-linears"]
    teacher, int8, linears = results["variants"]
    assert teacher["size_mb"] / int8["size_mb"] > 3.5
    assert teacher["size_mb"] > linears["size_mb"] > int8["size_mb"]
    assert teacher["encoder_linear_mb"] / int8["encoder_linear_mb"] > 3.9
    assert all(v["peak_rss_mb"] > 0 for v in results["variants"])
    assert results["task"]["counts"] == {"train": 96, "validation": 48, "test": 48}


def test_optimize_on_a_slice(tmp_path):
    """The search on the packaged model: two trials (the corners), the frontier measured beside the teacher
    and the OpenVINO + NNCF peer, models saved."""
    command = [sys.executable, "-m", "bertcompress.cli", "optimize", "--quick", "--trials", "2", "--max-train", "96",
               "--max-eval", "48", "--max-steps", "6", "--repeats", "2", "--output", str(tmp_path / "runs"),
               "--name", "search", "--storage", f"journal:{tmp_path / 'study.journal'}"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=1200,
                            env={**os.environ, "BERTCOMPRESS_QUIET": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    rows = json.loads((tmp_path / "runs" / "search" / "frontier.json").read_text())
    kinds = [r["kind"] for r in rows]
    assert kinds[0] == "teacher" and kinds[-1] == "peer" and "ours" in kinds
    assert all(r["speedup_b1"] > 0 and r["speedup_b32"] > 0 and r["size_mb"] > 0 for r in rows)
    assert rows[0]["cpu"]["name"] and all(r["cpu"] == rows[0]["cpu"] for r in rows)
    ours = [r for r in rows if r["kind"] == "ours"]
    assert all((tmp_path / "runs" / "search" / "models" / r["name"]).is_dir() for r in ours)
