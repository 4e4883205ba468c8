"""ONNX export of (compressed) sequence classifiers, run in onnxruntime beside the PyTorch models.

Replacement modules trace as the stand-ins they provide through the protocol in `core.modules` (int8
Linears, for example, as DynamicQuantizeLinear + MatMulInteger over the stored int8 weights); this module
knows no compression method.
"""
from __future__ import annotations

import contextlib
import inspect
import logging
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
from transformers.modeling_outputs import SequenceClassifierOutput

from bertcompress.core.modules import ExportOptions, standin_view
from bertcompress.core.task_types import config_task_type, output_name, prediction, task_type_of
from bertcompress.files import atomic_file



def onnx_view(model: nn.Module, signed_int8: bool = False, options: ExportOptions | None = None):
    """The model in eval mode with each replacement module's export stand-in swapped in (see core.modules)."""
    return standin_view(model, options or ExportOptions(signed_int8=signed_int8))


class _LogitsOnly(nn.Module):
    """One tensor out, named inputs in: a graph signature that does not depend on HF output classes."""

    def __init__(self, model: nn.Module, names: tuple[str, ...]):
        super().__init__()
        self.model, self.names = model, names

    def forward(self, input_ids, attention_mask, token_type_ids=None):
        extra = {"token_type_ids": token_type_ids} if "token_type_ids" in self.names else {}
        outputs = self.model(input_ids=input_ids, attention_mask=attention_mask, **extra)
        return prediction(task_type_of(self.model), outputs, attention_mask)


def input_names(model: nn.Module) -> tuple[str, ...]:
    """input_ids and attention_mask, plus token_type_ids where the model takes them (sentence pairs)."""
    takes_types = "token_type_ids" in inspect.signature(model.forward).parameters
    return ("input_ids", "attention_mask", *(("token_type_ids",) if takes_types else ()))


def _example_inputs(model: nn.Module, names: tuple[str, ...], seq_len: int) -> dict[str, torch.Tensor]:
    # batch 2 with a padded row: torch.export specializes sizes 0/1, and the mask path must be traced
    vocab = model.config.vocab_size
    ids = torch.arange(seq_len * 2).reshape(2, seq_len) % (vocab - 5) + 5
    mask = torch.ones_like(ids)
    mask[1, seq_len // 2:] = 0
    inputs = {"input_ids": ids, "attention_mask": mask, "token_type_ids": torch.zeros_like(ids)}
    device = next(model.parameters()).device
    return {name: inputs[name].to(device) for name in names}


def _strip_node_metadata(proto) -> None:
    # the exporter records a stack trace per node: ~2 KB each, local paths included
    for node in proto.graph.node:
        del node.metadata_props[:]


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """Silence exporter chatter (deprecations, dim renames, 'torchvision is not installed'): not problems."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def export_onnx(model: nn.Module, path: str | Path, seq_len: int = 64, opset: int = 18,
                signed_int8: bool = False, options: ExportOptions | None = None) -> Path:
    """Write `model` (fp32 or with our quantized modules) as one .onnx file, batch and sequence dynamic.

    Uses the torch.export-based exporter (the TorchScript one is deprecated); opset 18 is the lowest it
    implements, lower ones go through onnx's version converter. One file, so models must be under 2 GB.
    `signed_int8`: see core.modules.ExportOptions (int8 weights as u8s8 are only exact on VNNI/ARM CPUs);
    `options`, when given, replaces it with every stand-in choice."""
    import onnx

    path, names = Path(path), input_names(model)
    batch, seq = torch.export.Dim("batch"), torch.export.Dim("sequence")
    with onnx_view(model, signed_int8, options) as view, torch.no_grad(), _quiet_exporter():
        program = torch.onnx.export(
            _LogitsOnly(view, names), (), kwargs=_example_inputs(model, names, seq_len),
            input_names=list(names), output_names=[output_name(task_type_of(model))], opset_version=opset,
            dynamo=True, verbose=False,
            dynamic_shapes={name: {0: batch, 1: seq} for name in names})
    proto = program.model_proto
    _strip_node_metadata(proto)
    with atomic_file(path) as tmp:
        onnx.save_model(proto, tmp)
    return path


def ort_session(path: str | Path, threads: int | None = None):
    """A CPU onnxruntime session with all graph optimizations (the int8 fusions live there)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or torch.get_num_threads()
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # errors only
    # idle ORT workers spin-wait by default and starve PyTorch models timed in the same process
    # (teacher at batch 1: 16 -> 40 ms while an ORT session was alive)
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


class OrtModel(nn.Module):
    """An onnxruntime session that looks enough like a HF classifier for predict() and benchmark_many()."""

    def __init__(self, path: str | Path, config, threads: int | None = None):
        super().__init__()
        self.path, self.config = Path(path), config
        self.session = ort_session(path, threads)
        self.names = tuple(i.name for i in self.session.get_inputs())
        self.output = self.session.get_outputs()[0].name
        self.task_type = config_task_type(config)
        # predict() reads the device from the first parameter; ORT runs on CPU
        self.device_anchor = nn.Parameter(torch.zeros(0), requires_grad=False)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None) -> SequenceClassifierOutput:
        if token_type_ids is not None and "token_type_ids" not in self.names:
            raise TypeError(f"{self.path.name} takes no token_type_ids (its inputs: {', '.join(self.names)})")
        values = {"input_ids": input_ids,
                  "attention_mask": torch.ones_like(input_ids) if attention_mask is None else attention_mask,
                  "token_type_ids": torch.zeros_like(input_ids) if token_type_ids is None else token_type_ids}
        feed = {name: values[name].cpu().numpy().astype(np.int64, copy=False) for name in self.names}
        (logits,) = self.session.run([self.output], feed)
        return SequenceClassifierOutput(logits=torch.from_numpy(logits))


def ort_dynamic_int8(fp32_onnx_path: str | Path, out_path: str | Path, per_channel: bool = True,
                     reduce_range: bool = False) -> Path:
    """The ONNX Runtime baseline: quantize_dynamic on the fp32 export (int8 MatMul weights, per column;
    uint8 embedding tables; attention products quantized too), written atomically. `reduce_range`: 7-bit
    weights, ORT's advice for AVX2 CPUs without VNNI, where its u8s8 kernel can saturate."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    out_path = Path(out_path)
    with atomic_file(out_path) as tmp:
        quantize_dynamic(str(fp32_onnx_path), tmp, per_channel=per_channel, reduce_range=reduce_range,
                         weight_type=QuantType.QInt8)
    return out_path


@torch.inference_mode()
def max_logit_difference(torch_model: nn.Module, onnx_path: str | Path, batch: dict[str, torch.Tensor]) -> float:
    """max |logit_torch - logit_ort| over a batch."""
    torch_model.eval()
    expected = prediction(task_type_of(torch_model), torch_model(**batch), batch["attention_mask"]).float()
    config = getattr(torch_model, "config", None)
    got = OrtModel(onnx_path, config)(**batch).logits
    return float((expected - got).abs().max())
