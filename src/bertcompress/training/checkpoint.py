"""Resumable training state without pickle: tensors in safetensors, everything else in JSON.

Nested state (model, optimizer, scheduler, hooks, RNG) is split into a flat tensor table and a JSON
skeleton that points into it. The JSON records the tensors file's sha256 and the run's key, so a
checkpoint that was tampered with, truncated or written by another run is refused, not loaded.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from bertcompress.core.errors import BertCompressError
from bertcompress.data.assets import sha256_of
from bertcompress.files import atomic_file

STATE_FILE = "train_state.json"
TENSORS_PREFIX = "train_state-"
_TENSOR, _TUPLE, _PAIRS = "__tensor__", "__tuple__", "__pairs__"


def flatten(state: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """JSON-able skeleton of `state`; its tensors go into `tensors` under fresh keys."""
    if isinstance(state, torch.Tensor):
        key = f"t{len(tensors)}"
        # own, contiguous storage: safetensors refuses shared memory and strided views (e.g. FLOP's SVD factors)
        tensors[key] = state.detach().cpu().clone(memory_format=torch.contiguous_format)
        return {_TENSOR: key}
    if isinstance(state, dict):
        if all(isinstance(k, str) for k in state):
            return {k: flatten(v, tensors) for k, v in state.items()}
        return {_PAIRS: [[k, flatten(v, tensors)] for k, v in state.items()]}  # int keys (optimizer state)
    if isinstance(state, tuple):
        return {_TUPLE: [flatten(v, tensors) for v in state]}
    if isinstance(state, list):
        return [flatten(v, tensors) for v in state]
    if state is None or isinstance(state, (bool, int, float, str)):
        return state
    raise TypeError(f"cannot checkpoint a {type(state).__name__}")


def unflatten(skeleton: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(skeleton, dict):
        if set(skeleton) == {_TENSOR}:
            return tensors[skeleton[_TENSOR]]
        if set(skeleton) == {_TUPLE}:
            return tuple(unflatten(v, tensors) for v in skeleton[_TUPLE])
        if set(skeleton) == {_PAIRS}:
            return {k: unflatten(v, tensors) for k, v in skeleton[_PAIRS]}
        return {k: unflatten(v, tensors) for k, v in skeleton.items()}
    if isinstance(skeleton, list):
        return [unflatten(v, tensors) for v in skeleton]
    return skeleton


def _tensor_file(sha256: str) -> str:
    return f"{TENSORS_PREFIX}{sha256[:16]}.safetensors"


def save_state(directory: Path, state: dict, run_key: str) -> None:
    """Write the tensors under a name made from their hash, then the JSON that names and vouches for them:
    the JSON's rename is the commit point, so a kill at any moment leaves a consistent pair."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    tensors: dict[str, torch.Tensor] = {}
    skeleton = flatten(state, tensors)
    with atomic_file(directory / "tensors.partial") as staged:
        save_file(tensors, staged)
    digest = sha256_of(directory / "tensors.partial")
    (directory / "tensors.partial").replace(directory / _tensor_file(digest))
    record = {"run": run_key, "sha256": digest, "state": skeleton}
    with atomic_file(directory / STATE_FILE) as staged:
        Path(staged).write_text(json.dumps(record))
    for old in directory.glob(f"{TENSORS_PREFIX}*.safetensors"):
        if old.name != _tensor_file(digest):
            old.unlink(missing_ok=True)


def load_state(directory: Path, run_key: str) -> dict | None:
    """The saved state, or None when there is none; an error when it cannot be trusted."""
    directory = Path(directory)
    json_path = directory / STATE_FILE
    if not json_path.exists():
        return None
    try:
        record = json.loads(json_path.read_text(encoding="utf-8"))
        if not isinstance(record, dict) or not {"run", "sha256", "state"} <= set(record) \
                or not isinstance(record["sha256"], str):
            raise ValueError("missing fields")
    except (ValueError, UnicodeDecodeError) as error:
        raise BertCompressError(f"{json_path}: unreadable checkpoint ({error}); delete {directory} to start over") \
            from None
    if record["run"] != run_key:
        raise BertCompressError(f"{directory}: checkpoint belongs to another training run; delete it to start over")
    tensor_path = directory / _tensor_file(record["sha256"])
    if not tensor_path.exists() or sha256_of(tensor_path) != record["sha256"]:
        raise BertCompressError(f"{tensor_path}: does not match the hash its checkpoint recorded; refusing to "
                                f"load it (delete {directory} to start over)")
    try:
        return unflatten(record["state"], load_file(str(tensor_path)))
    except (SafetensorError, KeyError, TypeError) as error:
        raise BertCompressError(f"{directory}: damaged checkpoint ({error}); delete it to start over") from None
