"""Where built datasets live, and how they are written without ever leaving a broken file.

The cache root is ``$SNNERGY_CACHE`` if set, else ``~/.cache/snnergy``; each dataset takes
a sub-directory of it (e.g. ``<root>/avdigits``). Files are named by a hash of the
parameters that produced them, so changing a parameter builds a new file instead of
silently reusing a stale one, and are written to a temporary file in the same directory
and then renamed, which is atomic on POSIX: an interrupted build leaves no file at the
final name, and readers never see a half-written one.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from snnergy.atomic import atomic_write

CACHE_ENV = "SNNERGY_CACHE"


def cache_root() -> Path:
    """The root of SNNergy's cache: ``$SNNERGY_CACHE`` or ``~/.cache/snnergy``."""
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "snnergy"


def dataset_cache_dir(name: str, cache_dir: str | os.PathLike | None = None) -> Path:
    """``cache_dir`` if given (used as is), else ``cache_root() / name``."""
    return Path(cache_dir).expanduser() if cache_dir is not None else cache_root() / name


def params_hash(params: Mapping[str, Any], length: int = 12) -> str:
    """A short, stable hash of JSON-serialisable build parameters (key order ignored)."""
    blob = json.dumps(params, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:length]


def atomic_save_npz(path: Path, arrays: Mapping[str, np.ndarray], compress: bool = True) -> Path:
    """Write ``arrays`` to ``path`` (an ``.npz``) via a temp file + ``os.replace``.

    On any error the temp file is removed and the exception re-raised, so ``path`` is
    either absent or complete.
    """
    save = np.savez_compressed if compress else np.savez
    return atomic_write(path, lambda handle: save(handle, **arrays))


def load_npz(path: Path) -> dict[str, np.ndarray]:
    """Load every array of an ``.npz`` into memory (the file is closed afterwards)."""
    with np.load(path, allow_pickle=False) as data:
        return {key: data[key] for key in data.files}
