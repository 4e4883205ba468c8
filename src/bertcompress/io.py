"""Save and load (compressed) models: safetensors weights + a manifest that rebuilds the exact shapes."""
from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from safetensors.torch import load_model, save_model
from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer
from transformers.utils import logging as hf_logging

from bertcompress.arch.spec import get_spec, spec_for_type
from bertcompress.core.errors import BertCompressError
from bertcompress.core.modules import is_replacement, linear_entry, rebuild
from bertcompress.core.targets import set_submodule

MANIFEST = "manifest.json"
WEIGHTS = "model.safetensors"
FORMAT_VERSION = 1
HEAD_ATTRIBUTES = ("num_attention_heads", "all_head_size", "n_heads")
PACKAGED_MODELS = {"minilm": "minilm"}

hf_logging.set_verbosity_error()
hf_logging.disable_progress_bar()


def _module_entries(model: nn.Module) -> dict[str, dict[str, Any]]:
    entries = {}
    for name, module in model.named_modules():
        if is_replacement(module):
            entries[name] = module.manifest_entry()
        elif type(module) is nn.Linear:
            entries[name] = linear_entry(module)
    return entries


def _head_attributes(model: nn.Module) -> dict[str, dict[str, int]]:
    spec = get_spec(model)
    root = f"{spec.prefix(model)}{spec.layers}"
    found = {}
    for index, layer in enumerate(spec.layer_list(model)):
        attention = layer.get_submodule(spec.self_attention)
        values = {a: getattr(attention, a) for a in HEAD_ATTRIBUTES if isinstance(getattr(attention, a, None), int)}
        found[f"{root}.{index}.{spec.self_attention}"] = values
    return found


def write_atomically(target: Path, fill) -> Path:
    """Call `fill(tmp_dir)` and move the result to `target` only when it completes."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.tmp-"))
    try:
        fill(staging)
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return target


def directory_bytes_of(path: Path, exclude_tokenizer: bool = False) -> int:
    """Bytes of a saved model directory; optionally only weights, config and manifest."""
    keep = {WEIGHTS, MANIFEST, "config.json"} if exclude_tokenizer else None
    return sum(f.stat().st_size for f in Path(path).iterdir() if f.is_file() and (keep is None or f.name in keep))


def save(model: nn.Module, path: str | Path, tokenizer=None, extra: dict | None = None) -> Path:
    """Write weights, config, manifest (and tokenizer) so that `load(path)` rebuilds the model alone."""
    manifest = {
        "format": FORMAT_VERSION,
        "architecture": type(model).__name__,
        "model_type": model.config.model_type,
        "modules": _module_entries(model),
        "attributes": _head_attributes(model),
        "history": getattr(model, "_bertcompress_history", []),
        **(extra or {}),
    }

    model.config.architectures = [type(model).__name__]

    def fill(directory: Path) -> None:
        model.config.save_pretrained(directory)
        save_model(model, str(directory / WEIGHTS))
        (directory / MANIFEST).write_text(json.dumps(manifest, indent=2))
        if tokenizer is not None:
            tokenizer.save_pretrained(directory)

    return write_atomically(Path(path), fill)


def resolve(source: str | Path) -> Path:
    """Local directory for a packaged name ('minilm') or a path; errors name the missing path."""
    if str(source) in PACKAGED_MODELS:
        from bertcompress.data import assets

        return assets.model_dir(PACKAGED_MODELS[str(source)])
    path = Path(source).expanduser()
    if path.is_dir():
        if not (path / "config.json").exists():
            raise BertCompressError(f"{path}: not a model directory (no config.json)")
        return path
    if path.exists():
        raise BertCompressError(f"{path}: expected a model directory, got a file")
    if str(source).count("/") == 1 and not str(source).startswith((".", "/", "~")):
        return _hub_snapshot(str(source))
    raise BertCompressError(f"model path {str(source)!r} not found (use 'minilm', a local directory or a hub id)")


def _hub_snapshot(repo_id: str) -> Path:
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(repo_id, allow_patterns=["*.json", "*.txt", "*.safetensors", "*.model"]))
    except Exception as error:  # offline machines, unknown ids, private repos
        raise BertCompressError(f"could not fetch hub model {repo_id!r}: {type(error).__name__}") from None


def _check_head(config, num_labels: int | None, path: Path) -> None:
    has_head = any(a.endswith("ForSequenceClassification") for a in (config.architectures or []))
    if num_labels is not None and has_head and config.num_labels != num_labels:
        raise BertCompressError(
            f"{path}: the model's classification head has {config.num_labels} labels but the task has {num_labels}"
        )


def load(source: str | Path = "minilm", num_labels: int | None = None, seed: int = 0) -> nn.Module:
    """A sequence-classification model from a packaged name, a saved bertcompress dir or a HF dir/hub id."""
    path = resolve(source)
    config = AutoConfig.from_pretrained(path)
    spec_for_type(config.model_type)
    _check_head(config, num_labels, path)
    if (path / MANIFEST).exists():
        model = _load_compressed(path, config)
    else:
        torch.manual_seed(seed)  # a fresh classification head is initialised from the seed
        extra = {"num_labels": num_labels} if num_labels else {}
        model = AutoModelForSequenceClassification.from_pretrained(path, **extra)
    model._bertcompress_source = str(path)  # where its tokenizer lives
    return model.eval()


def _load_compressed(path: Path, config) -> nn.Module:
    manifest = json.loads((path / MANIFEST).read_text())
    if manifest.get("format") != FORMAT_VERSION:
        raise BertCompressError(f"{path / MANIFEST}: unsupported format {manifest.get('format')!r}")
    model = AutoModelForSequenceClassification.from_config(config)
    for name, entry in manifest["modules"].items():
        set_submodule(model, name, rebuild(entry))
    for name, values in manifest["attributes"].items():
        module = model.get_submodule(name)
        for attribute, value in values.items():
            setattr(module, attribute, value)
    missing, unexpected = load_model(model, str(path / WEIGHTS), strict=False)
    if missing or unexpected:
        raise BertCompressError(f"{path / WEIGHTS}: weights do not match the manifest "
                                f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
    model._bertcompress_history = manifest.get("history", [])
    return model


def load_tokenizer(source: str | Path = "minilm"):
    return AutoTokenizer.from_pretrained(resolve(source))
