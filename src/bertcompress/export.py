"""`bertcompress export`: a saved model as ONNX, OpenVINO IR or a plain Transformers checkpoint, each one
verified against the PyTorch model on real inputs before anything is written.

Verification rule: when every replacement module's stand-in computes exactly what the module does, the
exported logits must match to FP32_TOLERANCE; otherwise (activations rounded at run time by another
kernel, or not at all in a plain checkpoint) the predicted classes must agree on MIN_AGREEMENT of the
inputs. The figures are saved beside the model in export.json.
"""
from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn

from bertcompress import io
from bertcompress.core.errors import BertCompressError
from bertcompress.core.modules import ExportOptions, standin_view, standins_are_exact
from bertcompress.data.batching import Encoded, encode
from bertcompress.data.tasks import Example
from bertcompress.evaluation.metrics import logits
from bertcompress.files import check_output_path, write_atomically
from bertcompress.hardware import cpu_features, cpu_name
from bertcompress.plain import ffn_widths, plain_config, plain_problem, plain_state_dict
from bertcompress.runtimes import EXPORT_RECORD, ONNX_FILE, OPENVINO_FILE, require_runtime

FORMATS = {"onnx": "onnxruntime", "openvino": "openvino", "transformers": "torch"}
FP32_TOLERANCE = 1e-4
MIN_AGREEMENT = 0.995
INT8_DOT_PRODUCT = ("avx512_vnni", "avx_vnni", "amx_int8", "asimddp")


@dataclass(frozen=True)
class ExportSettings:
    max_length: int = 128
    optimize: bool = True  # ONNX Runtime's transformer fusions, kept only where the outputs still verify
    signed_int8: bool | None = None  # None: int8 x int8 kernels where the CPU has int8 dot products
    overwrite: bool = False

    def export_options(self, to: str) -> ExportOptions:
        signed = self.signed_int8 if self.signed_int8 is not None else bool(set(cpu_features()) & set(INT8_DOT_PRODUCT))
        return ExportOptions(signed_int8=signed, plain=to == "transformers", dequantize_weights=to == "openvino")


@dataclass(frozen=True)
class Reference:
    """The PyTorch model's logits on the verification inputs, and the rule its export must meet."""

    data: Encoded
    logits: torch.Tensor
    exact: bool

    def check(self, candidate: nn.Module) -> dict:
        got = logits(candidate, self.data)
        difference = float((got - self.logits).abs().max()) if len(self.data) else 0.0
        agreement = float((got.argmax(-1) == self.logits.argmax(-1)).float().mean()) if len(self.data) else 1.0
        passed = difference <= FP32_TOLERANCE if self.exact else agreement >= MIN_AGREEMENT
        rule = (f"max |logit difference| <= {FP32_TOLERANCE:g}" if self.exact
                else f"prediction agreement >= {MIN_AGREEMENT:.1%}")
        return {"examples": len(self.data), "max_abs_logit_diff": difference, "agreement": agreement,
                "rule": rule, "verified": passed}


def check_export_request(to: str, out: Path, overwrite: bool) -> None:
    """The cheap checks, before any model is loaded: format, runtime installed, output path."""
    if to not in FORMATS:
        raise BertCompressError(f"--to {to!r} is not a format; use one of {', '.join(FORMATS)}")
    require_runtime(FORMATS[to])
    check_output_path(Path(out), overwrite)


def check_not_source(source: str | Path, out: Path) -> None:
    if Path(source).expanduser().resolve() == Path(out).expanduser().resolve():
        raise BertCompressError(f"{out}: is the model being exported; choose another --out")


def export_model(source: str | Path, to: str, out: Path, examples: list[Example],
                 settings: ExportSettings = ExportSettings()) -> dict:
    """Export, verify and write atomically; returns what export.json records. Nothing is written when
    the export does not verify."""
    check_export_request(to, out, settings.overwrite)
    check_not_source(source, out)
    if not examples:
        raise BertCompressError("no inputs to verify the export on")
    model, tokenizer = io.load(source), io.load_tokenizer(source)
    if to == "transformers":
        _check_plain(model)
    options = settings.export_options(to)
    data = encode(examples, tokenizer, settings.max_length)
    reference = Reference(data, logits(model, data), standins_are_exact(model, options))
    record: dict = {}

    def fill(directory: Path) -> None:
        record.update(WRITERS[to](model, directory, settings, options, reference))
        model.config.save_pretrained(directory) if to != "transformers" else None
        tokenizer.save_pretrained(directory)
        record.update(format=to, runtime=FORMATS[to], source=str(source), exact=reference.exact,
                      size_mb=_model_bytes(directory) / 1e6, cpu={"name": cpu_name(), "features": cpu_features()})
        if not record["verified"]:
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


def _model_bytes(directory: Path) -> int:
    names = {ONNX_FILE, OPENVINO_FILE, OPENVINO_FILE.replace(".xml", ".bin"), io.WEIGHTS, "config.json"}
    return sum(f.stat().st_size for f in directory.iterdir() if f.name in names)


def _to_transformers(model, directory, settings, options, reference) -> dict:
    from transformers import AutoModelForSequenceClassification

    with standin_view(model, options) as view:
        plain = AutoModelForSequenceClassification.from_config(plain_config(view))
        plain.load_state_dict(plain_state_dict(view), strict=True)
        widths = ffn_widths(view)
    plain.save_pretrained(directory)
    reloaded = AutoModelForSequenceClassification.from_pretrained(directory)  # what a user will run
    padded = {"ffn_padded_from": widths} if len(set(widths)) > 1 else {}
    return {**reference.check(reloaded), **padded}


def _to_onnx(model, directory, settings, options, reference) -> dict:
    from bertcompress.evaluation.onnx_export import OrtModel, export_onnx

    path = export_onnx(model, directory / ONNX_FILE, settings.max_length, options=options)
    found = reference.check(OrtModel(path, model.config))
    if settings.optimize:
        found = _fused_if_it_verifies(path, directory, reference, found)
    return found


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


def _to_openvino(model, directory, settings, options, reference) -> dict:
    from bertcompress.evaluation.onnx_export import export_onnx
    from bertcompress.runtimes.openvino import OpenVinoModel, convert

    onnx_path = export_onnx(model, directory / ONNX_FILE, settings.max_length, options=options)
    convert(onnx_path, directory / OPENVINO_FILE)
    onnx_path.unlink()
    return reference.check(OpenVinoModel(directory / OPENVINO_FILE, model.config))


WRITERS: dict[str, Callable[..., dict]] = {"onnx": _to_onnx, "openvino": _to_openvino,
                                            "transformers": _to_transformers}
