"""All-or-nothing writes: the one way SNNergy writes checkpoints, caches, split files,
reports and exports.

The content goes to a temporary file in the target's directory, is flushed to disk, then
renamed over the target (atomic on POSIX). An interruption at any moment leaves either
the previous file or the complete new one, never a truncated file at the final name.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], None]) -> Path:
    """Call ``write(handle)`` on a temporary binary file, then move it to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write(path, lambda handle: handle.write(text.encode("utf-8")))


@contextlib.contextmanager
def staged(path: str | os.PathLike) -> Iterator[Path]:
    """A path beside ``path`` to build a file or a whole directory in; moved to ``path``
    only when the block completes, so an interruption leaves the previous output intact.

    A directory replaces the old one by two renames (old aside, new in); between them the
    old one waits in a hidden ``.<name>.*.tmp`` sibling, removed once the new one is in place.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    workspace = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    target = workspace / path.name
    try:
        yield target
        if path.is_dir() and not path.is_symlink():
            os.replace(path, workspace / "previous")
        os.replace(target, path)
    finally:
        shutil.rmtree(workspace, ignore_errors=True)


def atomic_savefig(figure, path: str | os.PathLike, **kwargs) -> Path:
    """``figure.savefig`` through ``atomic_write`` (the format taken from the suffix)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format=Path(path).suffix.lstrip(".") or "png", **kwargs)
    return atomic_write(path, lambda handle: handle.write(buffer.getvalue()))
