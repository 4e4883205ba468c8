import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
TOLERANCE = 1e-5  # float32 all-reduce sums in a different order than one process does


def _run(processes: int, out: Path) -> dict:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={processes}",
               f"--master_port={port}", "--master_addr=127.0.0.1", "-m", "tests.unit.ddp_worker", str(out)]
    env = {**os.environ, "BERTCOMPRESS_QUIET": "1", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    return torch.load(out)


@pytest.mark.slow
def test_two_cpu_processes_match_one_process(tmp_path):
    single = _run(1, tmp_path / "one.pt")
    double = _run(2, tmp_path / "two.pt")
    assert single["world"] == 1 and double["world"] == 2
    worst = max((single["weights"][k] - double["weights"][k]).abs().max().item() for k in single["weights"])
    assert worst <= TOLERANCE
    moved = max((single["weights"][k] - torch.zeros(())).abs().max().item() for k in single["weights"])
    assert moved > 0
