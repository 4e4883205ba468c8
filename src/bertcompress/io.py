"""Save and load (compressed) models: safetensors weights + a manifest that rebuilds the exact shapes."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from safetensors.torch import load_model, save_model
from transformers import AutoConfig, AutoTokenizer

from bertcompress.arch.spec import get_spec, spec_for_type
from bertcompress.core.errors import BertCompressError, first_line
from bertcompress.core.modules import is_replacement, linear_entry, rebuild
from bertcompress.core.task_types import (CLASSIFICATION, EMBEDDING, TOKEN_CLASSIFICATION, auto_class,
                                          check_task_type, checkpoint_type, task_type_of, type_of_class_name)
from bertcompress.files import write_atomically
from bertcompress.model_dir import (COMPRESSED_WEIGHTS, HEAD_ATTRIBUTES, WEIGHTS, apply_manifest, check_against_weights,
                                    check_head_counts, check_model_dir, check_runs, check_tokenizer, meta_model,
                                    read_config, read_manifest, weight_shapes, weights_path)
from bertcompress.plain import plain_config, plain_problem

MANIFEST = "manifest.json"
NOT_PLAIN_README = """# A bertcompress model

Plain Transformers cannot load this directory: {problem}.
Load it with `bertcompress.load(path)`, or export it with
`bertcompress export PATH --to onnx|openvino|transformers --out DIR`.
"""
FORMAT_VERSION = 1
PACKAGED_MODELS = {"minilm": "minilm"}



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


def directory_bytes_of(path: Path, exclude_tokenizer: bool = False) -> int:
    """Bytes of a saved model directory; optionally only weights, config and manifest."""
    keep = {WEIGHTS, COMPRESSED_WEIGHTS, MANIFEST, "config.json"} if exclude_tokenizer else None
    return sum(f.stat().st_size for f in Path(path).iterdir() if f.is_file() and (keep is None or f.name in keep))


def save(model: nn.Module, path: str | Path, tokenizer=None, extra: dict | None = None,
         overwrite: bool = False) -> Path:
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
    # a model plain Transformers can hold is saved so that `from_pretrained` loads it exactly; any other
    # under a weights name it does not read, so that it refuses instead of loading random layers
    problem = plain_problem(model)
    config = plain_config(model) if problem is None else model.config

    def fill(directory: Path) -> None:
        config.save_pretrained(directory)
        save_model(model, str(directory / (WEIGHTS if problem is None else COMPRESSED_WEIGHTS)))
        (directory / MANIFEST).write_text(json.dumps(manifest, indent=2))
        if problem is not None:
            (directory / "README.md").write_text(NOT_PLAIN_README.format(problem=problem))
        if tokenizer is not None:
            tokenizer.save_pretrained(directory)
        if task_type_of(model) == EMBEDDING:
            write_sentence_transformers_layout(directory, getattr(model.config, get_spec(model).hidden_key))

    return write_atomically(Path(path), fill, overwrite=overwrite, kind="model")


SENTENCE_MODULES = [
    {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
    {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
]


def write_sentence_transformers_layout(directory: Path, hidden_size: int, max_seq_length: int = 256) -> None:
    """The files `SentenceTransformer(directory)` reads beside the model: encoder, mean pooling, L2
    normalisation, which is what core.task_types.mean_pool computes."""
    (directory / "modules.json").write_text(json.dumps(SENTENCE_MODULES, indent=2))
    (directory / "sentence_bert_config.json").write_text(
        json.dumps({"max_seq_length": max_seq_length, "do_lower_case": False}, indent=2))
    (directory / "1_Pooling").mkdir(exist_ok=True)
    (directory / "1_Pooling" / "config.json").write_text(json.dumps(
        {"word_embedding_dimension": hidden_size, "pooling_mode_cls_token": False,
         "pooling_mode_mean_tokens": True, "pooling_mode_max_tokens": False,
         "pooling_mode_mean_sqrt_len_tokens": False}, indent=2))
    (directory / "2_Normalize").mkdir(exist_ok=True)


def check_source(source: str | Path) -> None:
    """The cheap part of `resolve`: a local path that is missing or a file fails before any download."""
    if str(source) in PACKAGED_MODELS:
        return
    path = Path(source).expanduser()
    if path.is_dir():
        return
    if path.exists():
        raise BertCompressError(f"{path}: expected a model directory, got a file")
    if str(source).count("/") != 1 or str(source).startswith((".", "/", "~")):
        raise BertCompressError(f"model path {str(source)!r} not found (use 'minilm', a local directory or a "
                                "hub id)")


def resolve(source: str | Path) -> Path:
    """Local directory for a packaged name ('minilm'), a path or a hub id; errors name the missing path."""
    check_source(source)
    if str(source) in PACKAGED_MODELS:
        from bertcompress.data import assets

        return assets.model_dir(PACKAGED_MODELS[str(source)])
    path = Path(source).expanduser()
    return path if path.is_dir() else _hub_snapshot(str(source))


def _hub_snapshot(repo_id: str) -> Path:
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(repo_id, allow_patterns=["*.json", "*.txt", "*.safetensors", "*.model"]))
    except Exception as error:  # offline machines, unknown ids, private repos
        raise BertCompressError(f"could not fetch hub model {repo_id!r}: {type(error).__name__}") from None


LABELLED_HEADS = {CLASSIFICATION: "classification", TOKEN_CLASSIFICATION: "token classification"}


def _check_head(config, num_labels: int | None, path: Path) -> None:
    """A classifier's or tagger's head must have the task's label count (a fresh head takes it)."""
    head = checkpoint_type(config.architectures)
    if num_labels is not None and head in LABELLED_HEADS and config.num_labels != num_labels:
        raise BertCompressError(f"{path}: the model's {LABELLED_HEADS[head]} head has {config.num_labels} labels but "
                                f"the task has {num_labels}")


def _manifest_type(manifest: Path) -> str | None:
    """The task type a manifest's architecture names; a malformed manifest is left to read_manifest's checks."""
    try:
        architecture = json.loads(manifest.read_text(encoding="utf-8")).get("architecture")
    except (ValueError, AttributeError, UnicodeDecodeError):
        return None
    return type_of_class_name(architecture) if isinstance(architecture, str) else None


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _task_type(path: Path, config, requested: str | None) -> str:
    """The type the checkpoint holds (a compressed model keeps its head; a bare encoder takes any), checked
    against the one asked for."""
    manifest = path / MANIFEST
    held = _manifest_type(manifest) if manifest.exists() else checkpoint_type(config.architectures)
    if requested is None:
        return held or CLASSIFICATION
    check_task_type(requested)
    if held is not None and held != requested:
        raise BertCompressError(f"{path}: holds {_article(held)} {held} model ({(config.architectures or ['?'])[0]}), "
                                f"not {_article(requested)} {requested} model; use {_article(requested)} {requested} "
                                "checkpoint or the base encoder")
    return requested


def load(source: str | Path = "minilm", num_labels: int | None = None, seed: int = 0,
         task_type: str | None = None) -> nn.Module:
    """A model from a packaged name, a saved bertcompress dir or a HF dir/hub id, with the head of its task
    type: the checkpoint's own, else `task_type` (default classification; a fresh head is seeded)."""
    path = resolve(source)
    check_model_dir(path, need_tokenizer=False)
    config = _config(path)
    task_type = _task_type(path, config, task_type)
    if task_type in LABELLED_HEADS:
        _check_head(config, num_labels, path)
    if (path / MANIFEST).exists():
        model = _load_compressed(path, config, task_type)
    else:
        torch.manual_seed(seed)  # a fresh task head is initialised from the seed
        extra = {"num_labels": num_labels} if num_labels and task_type != EMBEDDING else {}
        try:
            model = auto_class(task_type).from_pretrained(path, **extra)
        except (OSError, ValueError, RuntimeError) as error:
            raise BertCompressError(f"{path}: cannot load the model ({first_line(error)})") from None
    model._bertcompress_source = str(path)  # where its tokenizer lives
    return model.eval()


def _config(path: Path):
    try:
        config = AutoConfig.from_pretrained(path)
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise BertCompressError(f"{path / 'config.json'}: not a usable model config ({first_line(error)})") from None
    try:
        spec_for_type(config.model_type)
    except BertCompressError as error:
        raise BertCompressError(f"{path / 'config.json'}: {error}") from None
    return config


def _load_compressed(path: Path, config, task_type: str) -> nn.Module:
    manifest = read_manifest(path / MANIFEST)
    if manifest.format != FORMAT_VERSION:
        raise BertCompressError(f"{path / MANIFEST}: unsupported format {manifest.format!r}")

    def build() -> nn.Module:
        model = auto_class(task_type).from_config(config)
        apply_manifest(model, manifest, rebuild, path / MANIFEST)
        return model

    # every shape is checked against the weights' header on the meta device before memory is used
    check_against_weights(meta_model(build), weight_shapes(path), path / MANIFEST)
    model = build()
    check_head_counts(model, path / MANIFEST)
    weights = weights_path(path)
    missing, unexpected = load_model(model, str(weights), strict=False)
    if missing or unexpected:
        raise BertCompressError(f"{weights}: weights do not match the manifest "
                                f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
    check_runs(model.eval(), path / MANIFEST)
    model._bertcompress_history = manifest.history
    return model


def load_tokenizer(source: str | Path = "minilm"):
    path = resolve(source)
    check_tokenizer(path)
    try:
        return AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise BertCompressError(f"{path}: cannot load the tokenizer ({first_line(error)})") from None


def check_sequence_length(source: str | Path, length: int, option: str = "--max-length") -> None:
    """Refuse a sequence length beyond the model's position table before any work starts."""
    config = read_config(resolve(source))
    limit = config.get("max_position_embeddings")
    if not isinstance(limit, int):
        return
    if config.get("model_type") == "roberta":  # positions start after the padding index
        pad = config.get("pad_token_id")
        limit -= (1 if pad is None else int(pad)) + 1
    if length > limit:
        raise BertCompressError(f"{option} {length} is longer than the model's {limit} positions")
