"""OpenVINO: convert an exported ONNX graph to IR and run it on the CPU like a Transformers classifier."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
from transformers.modeling_outputs import SequenceClassifierOutput

from bertcompress.core.task_types import config_task_type

PRECISIONS = ("f32", "bf16")


def convert(onnx_path: Path, xml_path: Path) -> Path:
    """ONNX -> OpenVINO IR (.xml + .bin). Weights keep their stored types (int8 stays int8); no fp16
    compression, so an fp32 model's IR computes what its graph does."""
    import openvino as ov

    ov.save_model(ov.convert_model(str(onnx_path)), str(xml_path), compress_to_fp16=False)
    return xml_path


class OpenVinoModel(nn.Module):
    """A compiled OpenVINO CPU model that looks enough like a HF classifier for prediction and latency."""

    def __init__(self, xml_path: str | Path, config, threads: int | None = None, precision: str = "f32"):
        super().__init__()
        import openvino as ov

        self.path, self.config = Path(xml_path), config
        # f32 by default: on CPUs with bf16 units OpenVINO would otherwise pick bf16 on its own
        properties = {"INFERENCE_PRECISION_HINT": precision, "PERFORMANCE_HINT": "LATENCY",
                      "INFERENCE_NUM_THREADS": threads or torch.get_num_threads()}
        self.compiled = ov.Core().compile_model(str(self.path), "CPU", properties)
        self.names = tuple(port.get_any_name() for port in self.compiled.inputs)
        self.task_type = config_task_type(config)
        self.device_anchor = nn.Parameter(torch.zeros(0), requires_grad=False)  # callers read .device

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None) -> SequenceClassifierOutput:
        values = {"input_ids": input_ids,
                  "attention_mask": torch.ones_like(input_ids) if attention_mask is None else attention_mask,
                  "token_type_ids": torch.zeros_like(input_ids) if token_type_ids is None else token_type_ids}
        feed = {name: values[name].cpu().numpy().astype(np.int64, copy=False) for name in self.names}
        logits = self.compiled(feed)[self.compiled.output(0)]
        return SequenceClassifierOutput(logits=torch.from_numpy(np.array(logits)))
