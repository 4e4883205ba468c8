"""The paths a user would pick instead of bertcompress, on the same fp32 model and with no training: torch
bf16, torch.ao dynamic int8, ONNX Runtime (fp32 or its own dynamic int8) and OpenVINO (f32 or bf16). Each
builder takes the model and a path to write it under, and returns the runnable model and the file whose size
is the peer's size on disk. (OpenVINO int8 from NNCF post-training quantization goes through
`bertcompress export --int8 static`, which verifies it.)"""
from __future__ import annotations

import copy
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn as nn

Peer = Callable[[nn.Module, Path], tuple[nn.Module, Path]]


def torch_bf16(model: nn.Module, path: Path) -> tuple[nn.Module, Path]:
    """The model's weights in bf16, run by torch (its bf16 GEMMs)."""
    from safetensors.torch import save_model

    half = copy.deepcopy(model).to(torch.bfloat16).eval()
    path.mkdir(parents=True, exist_ok=True)
    save_model(half, str(path / "model.safetensors"))
    return half, path / "model.safetensors"


def torch_dynamic_int8(model: nn.Module, path: Path) -> tuple[nn.Module, Path]:
    """The baseline PyTorch users know: torch.ao quantize_dynamic on every Linear (deprecated, still shipped),
    embeddings fp32; its state dict saved at `path` (.pt, written only for its size: never read back)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from torch.ao.quantization import quantize_dynamic

        quantized = quantize_dynamic(copy.deepcopy(model), {nn.Linear}, dtype=torch.qint8)
    path = path.with_suffix(".pt")
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(quantized.state_dict(), path)
    return quantized, path


def onnx_runtime(model: nn.Module, path: Path, quantize: bool = False) -> tuple[nn.Module, Path]:
    """`model` exported to ONNX (our int8 modules as ORT's int8 ops) and run by ONNX Runtime; `quantize`:
    then ORT's own quantize_dynamic on the fp32 export (the other baseline users pick)."""
    from bertcompress.evaluation.onnx_export import OrtModel, export_onnx, ort_dynamic_int8

    path.parent.mkdir(parents=True, exist_ok=True)
    saved = export_onnx(copy.deepcopy(model), path.with_suffix(".onnx"))
    if quantize:
        saved = ort_dynamic_int8(saved, path.with_name(f"{path.name}-int8.onnx"))
    return OrtModel(saved, model.config, threads=torch.get_num_threads()), saved


def ort_dynamic_int8(model: nn.Module, path: Path) -> tuple[nn.Module, Path]:
    return onnx_runtime(model, path, quantize=True)


def openvino(precision: str = "f32") -> Peer:
    """The model converted to OpenVINO IR (through ONNX) and compiled at `precision` (f32 or bf16)."""
    def build(model: nn.Module, path: Path) -> tuple[nn.Module, Path]:
        from bertcompress.evaluation.onnx_export import export_onnx
        from bertcompress.runtimes.openvino import OpenVinoModel, convert

        path.mkdir(parents=True, exist_ok=True)
        xml = convert(export_onnx(copy.deepcopy(model), path / "model.onnx"), path / "openvino_model.xml")
        return OpenVinoModel(xml, model.config, precision=precision), xml.with_suffix(".bin")
    return build
