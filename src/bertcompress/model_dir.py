"""Checks on a model directory before anything is built from it: config, weights, tokenizer, manifest.

A manifest is a file from outside: its schema is checked, every module it names must exist, every
attribute it sets must be a head count, and the shapes it implies are compared with the weights file's
header on the meta device, so a tampered manifest can neither allocate huge tensors nor replace methods.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from safetensors import SafetensorError, safe_open

from bertcompress.arch.spec import HEAD_ATTRIBUTES, get_spec
from bertcompress.core.errors import BertCompressError, describe_validation_error
from bertcompress.core.modules import is_replacement

WEIGHTS = "model.safetensors"
# weights that plain Transformers must not load: under the standard name it would fill the layers it
# does not know with random values and say nothing (see plain.py)
COMPRESSED_WEIGHTS = "bertcompress.safetensors"
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "vocab.json", "spiece.model", "sentencepiece.bpe.model")
MAX_DIMENSION = 1 << 20


class ModuleEntry(BaseModel):
    model_config = ConfigDict(extra="allow")
    class_: str = Field(alias="class")


class Manifest(BaseModel):
    model_config = ConfigDict(extra="allow")
    format: int
    architecture: str
    model_type: str
    modules: dict[str, ModuleEntry]
    attributes: dict[str, dict[str, int]] = {}
    history: list = []


def read_config(path: Path) -> dict:
    config_path = Path(path) / "config.json"
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BertCompressError(f"{path}: not a model directory (no config.json)") from None
    except (ValueError, UnicodeDecodeError) as error:
        raise BertCompressError(f"{config_path}: not valid JSON ({error})") from None
    if not isinstance(config, dict) or not isinstance(config.get("model_type"), str):
        raise BertCompressError(f"{config_path}: has no 'model_type' string; is this a Transformers model config?")
    return config


def weights_path(path: Path) -> Path:
    """The directory's weights file: bertcompress's own name for compressed layers, else the standard one."""
    compressed = Path(path) / COMPRESSED_WEIGHTS
    if compressed.exists():
        return compressed
    weights = Path(path) / WEIGHTS
    if not weights.exists():
        pickled = [p.name for p in Path(path).glob("*.bin")]
        hint = f" ({pickled[0]} is a pickle file, which bertcompress never loads; convert it to safetensors)" \
            if pickled else ""
        expected = f"{COMPRESSED_WEIGHTS} or {WEIGHTS}" if (Path(path) / "manifest.json").exists() else WEIGHTS
        raise BertCompressError(f"{path}: no {expected}{hint}")
    return weights


def weight_shapes(path: Path) -> dict[str, tuple[tuple[int, ...], str]]:
    """Tensor name -> (shape, dtype) from the safetensors header, without reading the tensors."""
    weights = weights_path(path)
    try:
        with safe_open(str(weights), framework="pt") as handle:
            return {k: (tuple(handle.get_slice(k).get_shape()), handle.get_slice(k).get_dtype()) for k in handle.keys()}
    except (SafetensorError, OSError, ValueError) as error:
        raise BertCompressError(f"{weights}: unreadable or truncated safetensors file ({error})") from None


def check_model_dir(path: Path, need_tokenizer: bool = True) -> None:
    """Everything a model directory needs, checked before any work: config, weights, tokenizer."""
    read_config(path)
    sharded = (Path(path) / f"{WEIGHTS}.index.json").exists()
    if not sharded:
        weight_shapes(path)
    if need_tokenizer:
        check_tokenizer(path)


def check_tokenizer(path: Path) -> None:
    if not any((Path(path) / name).exists() for name in TOKENIZER_FILES):
        raise BertCompressError(f"{path}: no tokenizer files ({', '.join(TOKENIZER_FILES[:3])}, ...); "
                                "save the tokenizer beside the model")


def read_manifest(path: Path) -> Manifest:
    manifest_path = Path(path)
    try:
        data = json.loads(manifest_path.read_text(encoding="utf-8"))
        manifest = Manifest.model_validate(data)
    except (ValueError, UnicodeDecodeError) as error:
        if isinstance(error, ValidationError):
            raise BertCompressError(describe_validation_error(f"{manifest_path}: manifest", error)) from None
        raise BertCompressError(f"{manifest_path}: not valid JSON ({error})") from None
    for name, values in manifest.attributes.items():
        bad = sorted(set(values) - set(HEAD_ATTRIBUTES))
        if bad:
            raise BertCompressError(f"{manifest_path}: attributes of {name!r} may only set {HEAD_ATTRIBUTES}; "
                                    f"got {bad}")
        if any(not 0 < v <= MAX_DIMENSION for v in values.values()):
            raise BertCompressError(f"{manifest_path}: attributes of {name!r} must be positive sizes; got {values}")
    return manifest


def apply_manifest(model: nn.Module, manifest: Manifest, rebuild, where: Path) -> None:
    """Swap in the manifest's modules and set its head counts, refusing names the model does not have."""
    from bertcompress.core.targets import set_submodule

    for name, entry in manifest.modules.items():
        _require_submodule(model, name, where)
        try:
            module = rebuild(entry.model_dump(by_alias=True))
        except BertCompressError as error:
            raise BertCompressError(f"{where}: module {name!r}: {error}") from None
        except (KeyError, TypeError, ValueError, RuntimeError) as error:
            raise BertCompressError(f"{where}: module {name!r}: bad entry ({type(error).__name__}: {error})") from None
        set_submodule(model, name, module)
    for name, values in manifest.attributes.items():
        module = _require_submodule(model, name, where)
        for attribute, value in values.items():
            if not isinstance(getattr(module, attribute, None), int):
                raise BertCompressError(f"{where}: {name!r} has no head-count attribute {attribute!r}")
            setattr(module, attribute, value)


def _require_submodule(model: nn.Module, name: str, where: Path) -> nn.Module:
    try:
        return model.get_submodule(name)
    except AttributeError:
        raise BertCompressError(f"{where}: names module {name!r}, which {type(model).__name__} does not have") \
            from None


def check_against_weights(model: nn.Module, shapes: dict[str, tuple[tuple[int, ...], str]], where: Path) -> None:
    """The (meta) model's tensors must be exactly the file's: same names and shapes."""
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    missing = sorted(set(expected) - set(shapes))
    unexpected = sorted(set(shapes) - set(expected))
    if missing or unexpected:
        raise BertCompressError(f"{where}: weights do not match the manifest (missing {missing[:3]}, "
                                f"unexpected {unexpected[:3]})")
    for key, shape in expected.items():
        if shapes[key][0] != shape:
            raise BertCompressError(f"{where}: {key} has shape {list(shapes[key][0])} in the weights but "
                                    f"{list(shape)} by the manifest and config")


def check_head_counts(model: nn.Module, where: Path) -> None:
    """Each layer's head count times head size must equal its query width (a manifest may lie)."""
    spec = get_spec(model)
    for index, layer in enumerate(spec.layer_list(model)):
        attention = layer.get_submodule(spec.self_attention)
        if is_replacement(attention):
            continue  # e.g. fixed-pattern attention: its query holds only the learned heads' rows
        heads = getattr(attention, "num_attention_heads", getattr(attention, "n_heads", None))
        size = getattr(attention, "attention_head_size", None)
        query = layer.get_submodule(spec.linears["query"])
        width = getattr(query, "out_features", None)
        if isinstance(heads, int) and isinstance(size, int) and isinstance(width, int) and heads * size != width:
            raise BertCompressError(f"{where}: layer {index} claims {heads} heads of size {size}, but its query "
                                    f"has {width} outputs")
        total = getattr(attention, "all_head_size", None)
        if isinstance(total, int) and isinstance(width, int) and total != width:
            raise BertCompressError(f"{where}: layer {index} claims all_head_size {total}, but its query has "
                                    f"{width} outputs")


def meta_model(build) -> Any:
    """Build on the meta device: shapes without memory, so absurd sizes cost nothing."""
    with torch.device("meta"):
        return build()


def check_runs(model: nn.Module, where: Path) -> None:
    """One forward pass on two tokens: manifest values of the wrong type surface here, not in the user's job."""
    ids = torch.full((1, 2), min(5, model.config.vocab_size - 1), dtype=torch.long)
    try:
        with torch.no_grad():  # not inference_mode: modules may cache tensors that training reuses later
            model(input_ids=ids, attention_mask=torch.ones_like(ids))
    except (RuntimeError, TypeError, ValueError, IndexError, KeyError, AttributeError) as error:
        message = (str(error).strip().splitlines() or [""])[0][:200]
        raise BertCompressError(f"{where}: the model it describes does not run ({type(error).__name__}: "
                                f"{message})") from None
