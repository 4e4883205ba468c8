"""Every timed variant of the other benchmarks (seed 0, as listed in their bench/results/*.json) and the
torch.ao / ONNX Runtime baselines, timed against the FP32 teacher in one run, so all speed ratios share one
machine state. Run it on a quiet machine, after the other benchmarks (their variants come from the cache):

    python bench/latency.py [--repeats 20] [--smoke]"""
import json
from functools import partial

from bertcompress.benchmarks import (RESULTS, SMOKE, Row, Settings, Table, onnx_runtime, run_table,
                                     torch_dynamic_int8)
from bertcompress.core.registry import config_from_dict

OURS_INT8 = "quantization/dynamic int8 (ours, PTQ)"


def saved_rows(settings: Settings) -> list[Row]:
    """The rows each benchmark timed, rebuilt from their recipes (so the cache finds their models)."""
    rows = []
    for path in sorted((SMOKE if settings.smoke else RESULTS).glob("*.json")):
        listed = json.loads(path.read_text())
        for r in listed.get("rows", []) if isinstance(listed, dict) and path.stem != "latency" else []:
            if r.get("recipe") and r.get("timed", True) and 0 in r.get("seeds", ()) and not r.get("start"):
                rows.append(Row(f"{path.stem}/{r['name']}", tuple(map(config_from_dict, r["recipe"])),
                                train=r.get("train", {})))
    return rows


def table(settings: Settings) -> Table:
    rows = saved_rows(settings)
    ours = [Row("onnxruntime/ours", peer=onnx_runtime, start=OURS_INT8)] if OURS_INT8 in {r.name for r in rows} else []
    return Table(
        section="latency",
        title="Latency of every variant, one run (`bench/latency.py`)",
        description="Seed-0 variants of every benchmark above and the torch.ao / ONNX Runtime baselines, all "
                    "timed in this one run against the FP32 teacher; accuracy on the test split again.",
        rows=[Row("FP32 teacher"), *rows, Row("baseline/pytorch-quantize-dynamic", peer=torch_dynamic_int8),
              Row("onnxruntime/fp32", peer=onnx_runtime),
              Row("onnxruntime/ort-int8", peer=partial(onnx_runtime, quantize=True)), *ours])


if __name__ == "__main__":
    settings = Settings.from_command_line(__doc__)
    run_table(table(settings), settings)
