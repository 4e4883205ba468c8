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
