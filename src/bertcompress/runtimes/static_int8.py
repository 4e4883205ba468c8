"""Static int8 by each runtime's own post-training quantizer, applied to our (compressed) exported graphs:
NNCF for OpenVINO, `quantize_static` (QDQ) for ONNX Runtime. Both fix the activation ranges from
calibration text, which lets the runtime keep whole layers in int8; we do not write that again. Layers that
already have static ranges of ours (QDQ in the graph) keep them; the quantizer fills in the rest."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from bertcompress.data.batching import Encoded
from bertcompress.files import atomic_file


def feeds(data: Encoded, names: list[str]) -> list[dict[str, np.ndarray]]:
    """One unpadded example per feed, with the graph's input names."""
    found = []
    for index in range(len(data)):
        batch = data.batch([index])
        batch.setdefault("token_type_ids", batch["input_ids"] * 0)
        found.append({name: batch[name].numpy().astype(np.int64) for name in names})
    return found


def nncf_quantize(onnx_path: Path, xml_path: Path, data: Encoded, softmax_products: bool = True) -> dict:
    """ONNX -> OpenVINO IR quantized by nncf.quantize (transformer preset) on `data`. MatMuls whose input is
    already quantized (our static int8 Linears, with ranges calibrated or learned in QAT) keep their own;
    NNCF quantizes the rest, notably the attention products (query x key and, unless `softmax_products` is
    False, attention weights x value) where the model has no trained ranges for them, which makes OpenVINO's
    int8 attention faster. Returns what export.json records."""
    import nncf
    import openvino as ov

    logging.getLogger("nncf").setLevel(logging.ERROR)
    model = ov.convert_model(str(onnx_path))
    names = [port.get_any_name() for port in model.inputs]
    kept = already_quantized_matmuls(model)
    left_float = [] if softmax_products or not kept else softmax_matmuls(model)
    # (without the ignored scope NNCF stacks a quantizer of its own on each of ours)
    quantized = nncf.quantize(model, nncf.Dataset(feeds(data, names)), model_type=nncf.ModelType.TRANSFORMER,
                              subset_size=len(data), ignored_scope=nncf.IgnoredScope(names=kept + left_float))
    ov.save_model(quantized, str(xml_path), compress_to_fp16=False)
    if not kept:
        return {"quantizer": "nncf.quantize (ModelType.TRANSFORMER)"}
    products = "query x key only" if left_float else "query x key and weights x value"
    return {"quantizer": f"ours on {len(kept)} MatMuls (their own ranges); nncf.quantize (ModelType.TRANSFORMER) "
                         f"on the others (attention products: {products})", "matmuls_with_own_ranges": len(kept)}


def already_quantized_matmuls(model) -> list[str]:
    """Names of an OpenVINO model's MatMuls fed by a FakeQuantize (a QDQ pair in the ONNX graph)."""
    return _matmuls_fed_by(model, lambda node: node.get_type_name() == "FakeQuantize")


def softmax_matmuls(model) -> list[str]:
    """Names of the MatMuls that multiply a softmax's output (attention weights x value)."""
    return _matmuls_fed_by(model, _from_softmax)


def _matmuls_fed_by(model, producer_matches) -> list[str]:
    return [op.get_friendly_name() for op in model.get_ordered_ops() if op.get_type_name() == "MatMul"
            and any(producer_matches(port.get_source_output().get_node()) for port in op.inputs())]


def _from_softmax(node, depth: int = 4) -> bool:
    """Whether `node` is a softmax or follows one through a few shape, type, masking or quantizing ops."""
    if node.get_type_name() == "Softmax":
        return True
    passes = node.get_type_name() in ("Select", "Reshape", "Transpose", "Convert", "Multiply", "FakeQuantize")
    return depth > 0 and passes and any(_from_softmax(value.get_node(), depth - 1) for value in node.input_values())


def ort_quantize_static(onnx_path: Path, out_path: Path, data: Encoded) -> dict:
    """quantize_static in QDQ format: int8 weights per channel, uint8 activations with calibrated (min/max)
    ranges, on the MatMuls with weights only: quantizing the attention products too cost more accuracy.
    On the seed-0 MiniLM teacher it still changes 4.5% of predictions (-0.6 points on 512 test texts), so its
    export is refused by verification there; NNCF's (SmoothQuant, bias correction) is the one that holds.
    MatMuls whose weights are already int8 (ours, as DequantizeLinear) are not touched. Returns what
    export.json records."""
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    names = [i.name for i in graph.input]
    weights = {i.name for i in graph.initializer}
    with_weights = [n.name for n in graph.node if n.op_type == "MatMul" and any(i in weights for i in n.input)]
    own = sum(n.op_type == "QuantizeLinear" for n in graph.node)
    if not with_weights:  # (an empty list would tell quantize_static to quantize every node)
        return {"quantizer": "ours only: no float MatMul left for onnxruntime quantize_static"}

    class Calibration(CalibrationDataReader):
        def __init__(self):
            self.items = iter(feeds(data, names))

        def get_next(self):
            return next(self.items, None)

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # it advises pre-processing on the root logger; we verify instead
    try:
        with atomic_file(Path(out_path)) as tmp:
            quantize_static(str(onnx_path), tmp, Calibration(), quant_format=QuantFormat.QDQ, per_channel=True,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                            nodes_to_quantize=with_weights)
    finally:
        root.setLevel(level)
    kept = f"; ours kept on the layers with their own ranges ({own} input quantizers)" if own else ""
    return {"quantizer": f"onnxruntime quantize_static (QDQ) on {len(with_weights)} float MatMuls{kept}"}
