"""`bertcompress export`: a saved model as ONNX, OpenVINO IR or a plain Transformers checkpoint, each one
verified against the PyTorch model on real inputs before anything is written.

Verification rule: when every replacement module's stand-in computes exactly what the module does, the
exported logits must match to FP32_TOLERANCE. Otherwise (activations rounded at run time by another
kernel, or not at all in a plain checkpoint; or `int8="static"`, where the runtime's own quantizer
quantizes the model again with ranges calibrated on training text: NNCF for OpenVINO, quantize_static for
ONNX Runtime) the export is a different rounding of the same model: its predictions must agree on
MIN_AGREEMENT of the inputs and, where the inputs carry labels, its accuracy may not fall more than
MAX_ACCURACY_DROP points below the PyTorch model's; an embedder's vectors must keep a mean cosine of
MIN_COSINE to PyTorch's. The figures are saved beside the model in export.json.
"""
from __future__ import annotations

import importlib.util
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import torch
import torch.nn as nn

from bertcompress import io
from bertcompress.core.errors import BertCompressError
from bertcompress.core.modules import ExportOptions, standin_view, standins, standins_are_exact
from bertcompress.core.task_types import CLASSIFICATION, EMBEDDING, auto_class, task_type_of
from bertcompress.data.batching import Encoded, encode
from bertcompress.data.tasks import Example
from bertcompress.evaluation.metrics import is_labelled, outputs, score
from bertcompress.files import check_output_path, write_atomically
from bertcompress.hardware import cpu_features, cpu_name, has_int8_dot_product
from bertcompress.plain import ffn_widths, plain_config, plain_problem, plain_state_dict
from bertcompress.runtimes import EXPORT_RECORD, ONNX_FILE, OPENVINO_FILE, model_bytes, require_runtime

FORMATS = {"onnx": "onnxruntime", "openvino": "openvino", "transformers": "torch"}
FP32_TOLERANCE = 1e-4
# Int8 models round activations at run time, and each runtime rounds differently: on the seed-0 MiniLM
# teacher (512 test texts) torch's and ONNX Runtime's dynamic int8 agree on 99.2% at the same accuracy,
# torch's and OpenVINO's (int8 weights, its own activation handling) on 98.0%; int8 itself changes 1.6%
# of the fp32 teacher's predictions. A stricter rule would refuse equally good models.
MIN_AGREEMENT = 0.975
MAX_ACCURACY_DROP = 0.5  # points, where the verification inputs carry labels
MIN_COSINE = 0.99  # embedders: int8 rounding on the packaged MiniLM keeps ~0.99+ (bench/embeddings.py)
INT8_MODES = ("static",)


@dataclass(frozen=True)
class ExportSettings:
    max_length: int = 128
    optimize: bool = True  # ONNX Runtime's transformer fusions, kept only where the outputs still verify
    signed_int8: bool | None = None  # None: int8 x int8 kernels where the CPU has int8 dot products
    overwrite: bool = False
    int8: str | None = None  # "static": quantize again with calibrated activation ranges (see the module doc)
    # False: write the export even when it does not verify, with "verified": false in export.json. For a
    # caller that measures the result's accuracy itself (the search, whose budget decides)
    enforce: bool = True

    def export_options(self, to: str) -> ExportOptions:
        signed = self.signed_int8 if self.signed_int8 is not None else has_int8_dot_product()
        return ExportOptions(signed_int8=signed, plain=to == "transformers", float_weights=self.int8 == "static",
                             dequantize_weights=to == "openvino" and self.int8 is None, qdq=to != "transformers")


@dataclass(frozen=True)
class Reference:
    """The PyTorch model's outputs and scores on the verification inputs, and the rule its export must meet."""

    data: Encoded
    rows: list[torch.Tensor]  # each example's prediction tensor (logits; sentence vectors; span logits)
    scores: dict
    compared: object  # what another model's agreement is measured against (predictions, vectors, answers)
    exact: bool
    task_type: str = CLASSIFICATION
    num_labels: int = 2
    label_names: list[str] | None = None  # taggers: an export opened without its config has none of its own

    @classmethod
    def of(cls, model: nn.Module, data: Encoded, exact: bool) -> "Reference":
        num_labels = getattr(model.config, "num_labels", 2)
        names = [str(model.config.id2label.get(i, i)) for i in range(num_labels)] \
            if getattr(model.config, "id2label", None) else None
        rows = outputs(model, data)
        scores, compared = score(model, data, num_labels, label_names=names, rows=rows)
        return cls(data, rows, scores, compared, exact, task_type_of(model), num_labels, names)

    def check(self, candidate: nn.Module) -> dict:
        got = outputs(candidate, self.data, task_type=self.task_type)
        difference = max((float((g - r).abs().max()) for g, r in zip(got, self.rows)), default=0.0)
        mine, _ = score(candidate, self.data, self.num_labels, self.compared, task_type=self.task_type,
                        label_names=self.label_names, rows=got)
        found = {"examples": len(self.data), "max_abs_logit_diff": difference,
                 "agreement": mine.get("agreement", 1.0) if len(self.data) else 1.0}
        if self.exact:
            return {**found, "rule": f"max |logit difference| <= {FP32_TOLERANCE:g}",
                    "verified": difference <= FP32_TOLERANCE}
        if self.task_type == EMBEDDING:
            return {**found, "mean_cosine": found["agreement"],
                    "rule": f"mean cosine to PyTorch's vectors >= {MIN_COSINE}",
                    "verified": found["agreement"] >= MIN_COSINE}
        passed, rule = found["agreement"] >= MIN_AGREEMENT, f"prediction agreement >= {MIN_AGREEMENT:.1%}"
        if len(self.data) and is_labelled(self.data):
            found |= {"accuracy": mine["accuracy"], "reference_accuracy": self.scores["accuracy"]}
            passed = passed and 100 * (self.scores["accuracy"] - mine["accuracy"]) <= MAX_ACCURACY_DROP
            rule += f" and accuracy at most {MAX_ACCURACY_DROP:g} points below PyTorch's"
        return {**found, "rule": rule, "verified": passed}


def check_export_request(to: str, out: Path, overwrite: bool, int8: str | None = None) -> None:
    """The cheap checks, before any model is loaded: format, runtime installed, output path."""
    if to not in FORMATS:
        raise BertCompressError(f"--to {to!r} is not a format; use one of {', '.join(FORMATS)}")
    require_runtime(FORMATS[to])
    if int8 is not None and int8 not in INT8_MODES:
        raise BertCompressError(f"--int8 {int8!r} is not offered; use one of {', '.join(INT8_MODES)}")
    if int8 == "static" and to == "transformers":
        raise BertCompressError("--int8 static needs a runtime with int8 kernels: use --to onnx or --to openvino")
    if int8 == "static" and to == "openvino" and importlib.util.find_spec("nncf") is None:
        raise BertCompressError("--int8 static for OpenVINO uses NNCF, which is not installed; install it with: "
                                "pip install nncf==3.4.0")
    check_output_path(Path(out), overwrite)


def check_not_source(source: str | Path, out: Path) -> None:
    if Path(source).expanduser().resolve() == Path(out).expanduser().resolve():
        raise BertCompressError(f"{out}: is the model being exported; choose another --out")


@dataclass(frozen=True)
class Job:
    """One export: the model, its stand-in choices, the reference it must meet, calibration text if any."""

    model: nn.Module
    settings: ExportSettings
    options: ExportOptions
    reference: Reference
    calibration: Encoded | None = None


def export_model(source: str | Path, to: str, out: Path, examples: list[Example],
                 settings: ExportSettings = ExportSettings(), calibration: list[Example] | None = None) -> dict:
    """Export, verify and write atomically; returns what export.json records. Nothing is written when
    the export does not verify. `calibration`: training text for `int8="static"` (default: `examples`)."""
    check_export_request(to, out, settings.overwrite, settings.int8)
    check_not_source(source, out)
    if not examples:
        raise BertCompressError("no inputs to verify the export on")
    model, tokenizer = io.load(source), io.load_tokenizer(source)
    if to == "transformers":
        _check_plain(model)
    options, static = settings.export_options(to), settings.int8 == "static"
    data = encode(examples, tokenizer, settings.max_length)
    reference = Reference.of(model, data, standins_are_exact(model, options) and not static)
    job = Job(model, settings, options, reference,
              encode(calibration or examples, tokenizer, settings.max_length) if static else None)
    record: dict = {}

    def fill(directory: Path) -> None:
        record.update(WRITERS[to](job, directory))
        model.config.save_pretrained(directory) if to != "transformers" else None
        tokenizer.save_pretrained(directory)
        record.update(format=to, runtime=FORMATS[to], source=str(source), exact=reference.exact,
                      int8=settings.int8, size_mb=model_bytes(directory) / 1e6,
                      cpu={"name": cpu_name(), "features": cpu_features()})
        if not record["verified"] and settings.enforce:
            raise BertCompressError(
                f"the {to} export does not match the PyTorch model on {record['examples']} inputs "
                f"(max |logit difference| {record['max_abs_logit_diff']:.3g}, agreement "
                f"{record['agreement']:.2%}; rule: {record['rule']}); nothing was written")
        (directory / EXPORT_RECORD).write_text(json.dumps(record, indent=2))

    write_atomically(Path(out), fill, overwrite=settings.overwrite, kind="export")
    return record


def _check_plain(model: nn.Module) -> None:
    """Refuse, before any work, a model whose shapes plain Transformers cannot hold."""
    try:
        with standin_view(model, ExportOptions(plain=True)) as view:
            problem = plain_problem(view, pad_ffn=True)
    except BertCompressError as error:
        problem = str(error)
    if problem is not None:
        raise BertCompressError(f"cannot be a plain Transformers checkpoint: {problem}; "
                                "export it --to onnx or --to openvino instead")


def _to_transformers(job: Job, directory: Path) -> dict:
    model_class = auto_class(task_type_of(job.model))
    with standin_view(job.model, job.options) as view:
        plain = model_class.from_config(plain_config(view))
        plain.load_state_dict(plain_state_dict(view), strict=True)
        widths = ffn_widths(view)
    plain.save_pretrained(directory)
    reloaded = model_class.from_pretrained(directory)  # what a user will run
    padded = {"ffn_padded_from": widths} if len(set(widths)) > 1 else {}
    return {**job.reference.check(reloaded), **padded}


def _to_onnx(job: Job, directory: Path) -> dict:
    from bertcompress.evaluation.onnx_export import OrtModel, export_onnx

    path = export_onnx(job.model, directory / ONNX_FILE, job.settings.max_length, options=job.options)
    packed = _packed_if_faster(job, path, directory) if job.calibration is None else {}
    found = job.reference.check(OrtModel(path, None))
    if job.settings.optimize:
        found = _fused_if_it_verifies(path, directory, job.reference, found)
    if job.calibration is not None:
        from bertcompress.runtimes.static_int8 import ort_quantize_static

        quantizer = ort_quantize_static(path, path, job.calibration)
        found = {**found, **job.reference.check(OrtModel(path, None)), **quantizer}
    return {**found, **packed}


def _packed_if_faster(job: Job, path: Path, directory: Path) -> dict:
    """Where stand-ins can keep sub-8-bit weights packed (MatMulNBits), export that graph too, time both in
    ONNX Runtime (batch 1 and 32, interleaved) and keep the faster; the record keeps both figures."""
    from bertcompress.evaluation.latency import benchmark_many
    from bertcompress.evaluation.onnx_export import OrtModel, export_onnx

    packed_options = replace(job.options, packed_nbits=True)
    if [type(s) for _, s in standins(job.model, packed_options).values()] == \
            [type(s) for _, s in standins(job.model, job.options).values()]:
        return {}
    packed_path = export_onnx(job.model, directory / f"packed-{ONNX_FILE}", job.settings.max_length,
                              options=packed_options)
    graphs = {"dequantized": OrtModel(path, job.model.config), "packed": OrtModel(packed_path, job.model.config)}
    timed = benchmark_many(graphs, (1, 32), min(job.settings.max_length, 64), repeats=5)
    ms = {name: {f"b{b}": timed[name][f"batch_{b}"]["median_ms"] for b in (1, 32)} for name in graphs}
    score = {name: ms[name]["b1"] * ms[name]["b32"] for name in graphs}  # geometric: both batch sizes count
    kept = min(score, key=score.get)
    sizes = {"dequantized": path.stat().st_size / 1e6, "packed": packed_path.stat().st_size / 1e6}
    if kept == "packed":
        packed_path.replace(path)
    else:
        packed_path.unlink()
    return {"sub_8_bit_weights": {"kept": kept, "latency_ms": ms, "size_mb": sizes}}


def _fused_if_it_verifies(path: Path, directory: Path, reference: Reference, plain_found: dict) -> dict:
    """Apply ONNX Runtime's transformer fusions (attention, LayerNorm, GELU) and keep them only if the
    fused graph still verifies; the record says which graph was kept and what the fusions found."""
    from bertcompress.evaluation.onnx_export import OrtModel

    fused_path = directory / f"fused-{ONNX_FILE}"
    fusions = _fuse(path, fused_path)
    found = reference.check(OrtModel(fused_path, None))
    if found["verified"]:
        fused_path.replace(path)
        return {**found, "optimized": True, "fusions": fusions}
    fused_path.unlink()
    return {**plain_found, "optimized": False, "fusions": fusions,
            "not_optimized_because": f"fused graph differs by {found['max_abs_logit_diff']:.3g}"}


def _fuse(path: Path, out: Path) -> dict[str, int]:
    from onnxruntime.transformers.optimizer import optimize_model

    logging.getLogger("onnxruntime.transformers").setLevel(logging.ERROR)
    # num_heads/hidden_size 0: read per layer from the graph, which allows pruned layers of any width
    optimized = optimize_model(str(path), model_type="bert", num_heads=0, hidden_size=0, opt_level=0)
    optimized.save_model_to_file(str(out))
    return {name: count for name, count in optimized.get_fused_operator_statistics().items() if count}


def _to_openvino(job: Job, directory: Path) -> dict:
    from bertcompress.evaluation.onnx_export import export_onnx
    from bertcompress.runtimes.openvino import OpenVinoModel, convert

    onnx_path = export_onnx(job.model, directory / ONNX_FILE, job.settings.max_length, options=job.options)
    ir = directory / OPENVINO_FILE
    quantizer = {}
    if job.calibration is None:
        convert(onnx_path, ir)
    else:
        from bertcompress.runtimes.static_int8 import nncf_quantize

        quantizer = nncf_quantize(onnx_path, ir, job.calibration)
    found = job.reference.check(OpenVinoModel(ir, job.model.config))
    if not found["verified"] and quantizer.get("matmuls_with_own_ranges"):
        # attention weights at 8 bits cost the most accuracy (Q8BERT MiniLM: -0.6 points with them, 0.0
        # with query x key alone, which keeps most of the speed)
        because = f"with them it agreed on {found['agreement']:.2%}" + \
            (f" at accuracy {found['accuracy']:.2%}" if "accuracy" in found else "")
        quantizer = {**nncf_quantize(onnx_path, ir, job.calibration, softmax_products=False),
                     "not_all_attention_products_because": because}
        found = job.reference.check(OpenVinoModel(ir, job.model.config))
    onnx_path.unlink()
    return {**found, **quantizer}


WRITERS: dict[str, Callable[[Job, Path], dict]] = {"onnx": _to_onnx, "openvino": _to_openvino,
                                                    "transformers": _to_transformers}
