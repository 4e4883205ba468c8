import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
TOLERANCE = 1e-5  # float32 all-reduce sums in a different order than one process does


def _run(processes: int, batch_size: int, out: Path) -> dict:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={processes}",
               f"--master_port={port}", "--master_addr=127.0.0.1", "-m", "tests.unit.ddp_worker", str(out),
               str(batch_size)]
    env = {**os.environ, "BERTCOMPRESS_QUIET": "1", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    return torch.load(out)


def _largest_difference(a: dict, b: dict) -> float:
    return max((a[key].float() - b[key].float()).abs().max().item() for key in a)


@pytest.mark.slow
@pytest.mark.parametrize("batch_size", [12, 7, 1], ids=["even-shards", "uneven-shards", "empty-shards"])
def test_two_cpu_processes_match_one_process(tmp_path, batch_size):
    """Batches of 7 split 4 + 3 over two processes (and the epoch's last batch, 6, splits 3 + 3): the loss is
    normalised by the global batch, so shards of different sizes still give the one-process gradient. Batches
    of 1 leave one process an empty shard: it runs one example weighted zero."""
    single = _run(1, batch_size, tmp_path / "one.pt")
    double = _run(2, batch_size, tmp_path / "two.pt")
    assert single["world"] == 1 and double["world"] == 2
    assert _largest_difference(single["initial"], double["initial"]) == 0  # both start from the same model
    assert _largest_difference(single["weights"], double["weights"]) <= TOLERANCE
    assert _largest_difference(single["weights"], single["initial"]) > 100 * TOLERANCE  # training moved them
