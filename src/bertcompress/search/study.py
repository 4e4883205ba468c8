"""Where a search keeps its trials: one Optuna study per (teacher, task, space, objective, seed), in a journal
file under the cache by default or in any database Optuna accepts, so that an interrupted search resumes
and several workers (processes or machines) share one study."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from bertcompress.core.errors import BertCompressError
from bertcompress.data.assets import cache_dir

DIRECTIONS = ["maximize", "maximize"]  # validation accuracy, and speedup or size ratio


def study_key(described: dict) -> str:
    return hashlib.sha256(json.dumps(described, sort_keys=True).encode()).hexdigest()[:16]


def open_storage(url: str | None, key: str):
    """A journal file under the cache (default), `journal:PATH`, or a database URL (sqlite:///..., ...)."""
    import optuna
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    if url is None or url.startswith("journal:"):
        path = Path(url[len("journal:"):]) if url else cache_dir() / "studies" / f"{key}.journal"
        path.parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(str(path)))
    try:
        return optuna.storages.RDBStorage(url)
    except Exception as error:  # noqa: BLE001 - a driver, a network or a URL error: all mean unusable here
        first = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
        raise BertCompressError(f"--storage {url!r} cannot be used ({type(error).__name__}: {first})") from None


def open_study(storage, key: str, seed: int):
    """Create the study, or load it when it exists (resume, or another worker's)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = optuna.samplers.TPESampler(seed=seed, multivariate=True, n_startup_trials=4)
    return optuna.create_study(study_name=f"bertcompress-{key}", storage=storage, directions=DIRECTIONS,
                               sampler=sampler, load_if_exists=True)
