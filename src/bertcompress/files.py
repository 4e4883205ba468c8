"""Writing outputs safely: directories appear whole or not at all, and nothing the user made is replaced.

Every directory bertcompress writes carries a marker file; only a directory with that marker may be
replaced (and only when the caller says so). Staging directories name their process, so a later start
removes the ones a killed process left behind.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from bertcompress.core.errors import BertCompressError

MARKER = ".bertcompress-output"
STAGING_TAG = ".bertcompress-staging-"


def is_our_output(path: Path) -> bool:
    return (Path(path) / MARKER).is_file()


def check_output_path(target: Path, overwrite: bool = False) -> Path:
    """Refuse, before any work, a target we could not write or must not replace."""
    target = Path(target)
    if target.exists() or target.is_symlink():
        if not target.is_dir() or target.is_symlink():
            raise BertCompressError(f"{target}: exists and is not a directory; choose another output path")
        if not is_our_output(target):
            if any(target.iterdir()):
                raise BertCompressError(f"{target}: exists and was not written by bertcompress; "
                                        "choose a new or empty directory (nothing was changed)")
        elif not overwrite:
            raise BertCompressError(f"{target}: already exists; pass --overwrite to replace it")
    parent = _existing_ancestor(target.parent)
    if not parent.is_dir():
        raise BertCompressError(f"{target}: {parent} is a file, so nothing can be written under it")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise BertCompressError(f"{target}: {parent} is not writable")
    return target


def _existing_ancestor(path: Path) -> Path:
    path = Path(os.path.abspath(path))
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_name(name: str, what: str = "--name") -> str:
    """A run or variant name must be one plain path component."""
    if not name or name in (".", "..") or any(c in name for c in "/\\\0") or name.startswith("."):
        raise BertCompressError(f"{what}: {name!r} must be a single directory name (no '/', '..' or leading '.')")
    return name


def remove_stale_staging(parent: Path) -> None:
    """Delete staging directories whose process is gone (a kill -9 during a final write)."""
    if not Path(parent).is_dir():
        return
    for entry in Path(parent).iterdir():
        if _is_staging_name(entry.name) and entry.is_dir() and not _alive(_staging_pid(entry.name)):
            shutil.rmtree(entry, ignore_errors=True)


def _is_staging_name(name: str) -> bool:
    """Exactly the names `write_atomically` gives: '.<target>.bertcompress-staging-<pid>-<suffix>'."""
    return re.fullmatch(rf"\..+{re.escape(STAGING_TAG)}\d+-.+", name) is not None


def _staging_pid(name: str) -> int | None:
    try:
        return int(name.split(STAGING_TAG, 1)[1].split("-", 1)[0])
    except (IndexError, ValueError):
        return None


def _alive(pid: int | None) -> bool:
    if pid is None:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def write_atomically(target: Path, fill: Callable[[Path], None], overwrite: bool = False,
                     kind: str = "output") -> Path:
    """Call `fill(staging)` and move the result to `target` only when it completes.

    An existing target is replaced only if bertcompress wrote it and `overwrite` is set, or if it is an
    empty directory. Anything else is refused before `fill` runs."""
    target = check_output_path(Path(target), overwrite)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_staging(target.parent)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}{STAGING_TAG}{os.getpid()}-"))
    try:
        fill(staging)
        (staging / MARKER).write_text(json.dumps({"kind": kind}))
        _move_into_place(staging, target, overwrite)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return target


def _move_into_place(staging: Path, target: Path, overwrite: bool) -> None:
    retired = None
    if target.exists():
        check_output_path(target, overwrite)  # it may have changed while we worked
        if is_our_output(target):
            retired = target.with_name(f".{target.name}{STAGING_TAG}{os.getpid()}-old")
            target.rename(retired)
        else:
            target.rmdir()  # empty (checked above); rmdir refuses if that changed
    try:
        staging.rename(target)
    except OSError:
        if retired is not None:
            retired.rename(target)
        raise
    if retired is not None:
        shutil.rmtree(retired)


@contextlib.contextmanager
def atomic_file(path: Path) -> Iterator[str]:
    """A temporary file beside `path`, renamed to it only if the block completes (for single files)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # not mkstemp: keep umask permissions
    try:
        yield str(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def private_dir(path: Path) -> Path:
    """Create (or tighten) a directory only this user can read: caches hold files we later load."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    if path.stat().st_mode & 0o077:
        path.chmod(0o700)
    return path
