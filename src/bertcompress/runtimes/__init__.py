"""Run a model where it is deployed: torch, ONNX Runtime or OpenVINO, behind one classifier interface.

Every runtime model is an nn.Module whose forward takes input_ids / attention_mask (/ token_type_ids) and
returns an object with `.logits`, so prediction, scoring and latency code serves them all unchanged.
"""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

from bertcompress.core.errors import BertCompressError

RUNTIMES = ("torch", "onnxruntime", "openvino")
ONNX_FILE = "model.onnx"
OPENVINO_FILE = "openvino_model.xml"
EXPORT_RECORD = "export.json"
INSTALL = {"onnxruntime": "pip install onnxruntime", "openvino": "pip install openvino==2026.4.1"}


def require_runtime(runtime: str) -> None:
    """Refuse an unknown or missing runtime with the command that installs it."""
    if runtime not in RUNTIMES:
        raise BertCompressError(f"runtime {runtime!r} is not one of {', '.join(RUNTIMES)}")
    if runtime != "torch" and importlib.util.find_spec(runtime) is None:
        raise BertCompressError(f"runtime {runtime!r} is not installed; install it with: {INSTALL[runtime]}")


def runtime_of(directory: Path) -> str:
    """The runtime an exported (or saved) model directory is for, from the files it holds."""
    directory = Path(directory)
    if (directory / OPENVINO_FILE).exists():
        return "openvino"
    if (directory / ONNX_FILE).exists():
        return "onnxruntime"
    return "torch"


def open_model(directory: Path, runtime: str | None = None, threads: int | None = None):
    """The model in `directory` ready to run in `runtime` (default: the one its files are for)."""
    directory = Path(directory)
    runtime = runtime or runtime_of(directory)
    require_runtime(runtime)
    found = runtime_of(directory)
    if runtime != found:
        raise BertCompressError(f"{directory}: holds a model for {found}, not {runtime}; "
                                f"export it with `bertcompress export {directory} --to "
                                f"{'onnx' if runtime == 'onnxruntime' else runtime}`")
    if runtime == "torch":
        import bertcompress.io as io

        return io.load(directory)
    config = _config(directory)
    if runtime == "onnxruntime":
        from bertcompress.evaluation.onnx_export import OrtModel

        return OrtModel(directory / ONNX_FILE, config, threads)
    from bertcompress.runtimes.openvino import OpenVinoModel

    return OpenVinoModel(directory / OPENVINO_FILE, config, threads)


def _config(directory: Path):
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(directory)
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise BertCompressError(f"{directory / 'config.json'}: not a usable model config ({error})") from None


def model_bytes(directory: Path) -> int:
    """A model directory's size on disk: an export's graph, weights and config, or a saved model's weights,
    config and manifest (tokenizer and notes left out either way)."""
    directory = Path(directory)
    if runtime_of(directory) == "torch":
        from bertcompress.io import directory_bytes_of

        return directory_bytes_of(directory, exclude_tokenizer=True)
    names = {ONNX_FILE, OPENVINO_FILE, OPENVINO_FILE.replace(".xml", ".bin"), "config.json"}
    return sum(f.stat().st_size for f in directory.iterdir() if f.name in names)


def weights_file(directory: Path) -> Path:
    """The file holding a model directory's weights: an export's ONNX graph or OpenVINO .bin, else the saved
    model's safetensors."""
    directory = Path(directory)
    runtime = runtime_of(directory)
    if runtime == "openvino":
        return directory / OPENVINO_FILE.replace(".xml", ".bin")
    if runtime == "onnxruntime":
        return directory / ONNX_FILE
    from bertcompress.model_dir import weights_path

    return weights_path(directory)


def export_record(directory: Path) -> dict | None:
    path = Path(directory) / EXPORT_RECORD
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None
