"""Where a command may write: never over one of its own inputs, and over something that is
not its own kind of output only when the user says ``--force``.

Every command that writes a file or directory checks its destinations here first, before
any work, so a mistyped ``--json model.pt`` or ``--out trained.pt`` costs one clear line
and no data. What "its own kind" means: a report (JSON, Markdown, PNG) may replace an older
report, an export may replace an export of the same target; a checkpoint, a Lava package,
a training run or any other directory is not replaced without ``--force``.
"""

from __future__ import annotations

import zipfile
from collections.abc import Iterable
from pathlib import Path

# what a command writes -> the kinds of existing path it may replace without --force
REPLACEABLE = {
    "report": {"file"},
    "nir": {"nir", "file"},
    "onnx": {"onnx", "file"},
    "lava package": {"lava package", "empty directory"},
    "checkpoint": set(),
    "run": {"empty directory"},
}


class OutputError(ValueError):
    """A destination the command must not write to, named with the reason."""


def existing_kind(path: Path) -> str:
    """What already sits at ``path``, in the words the error messages use."""
    if path.is_dir():
        if (path / "manifest.json").is_file():
            return "lava package"
        if (path / "metrics.jsonl").exists() or (path / "last.pt").exists() or (path / "best.pt").exists():
            return "training run"
        return "directory" if any(path.iterdir()) else "empty directory"
    if zipfile.is_zipfile(path):
        return "checkpoint"  # torch.save's zip format (an ONNX or NIR file is not a zip)
    with path.open("rb") as handle:
        head = handle.read(8)
    if head.startswith(b"\x89HDF"):
        return "nir"
    if path.suffix == ".onnx":
        return "onnx"
    return "file"


def _same_or_inside(path: Path, other: Path) -> bool:
    path, other = path.resolve(), other.resolve()
    return path == other or (other.is_dir() and other in path.parents) or (path.is_dir() and path in other.parents)


def check_output(
    path: str | Path | None, writes: str, inputs: Iterable[str | Path | None] = (), force: bool = False
) -> None:
    """Raise ``OutputError`` if ``path`` is (or is inside, or contains) one of ``inputs``, or
    if it exists and holds something a ``writes`` output may not replace without ``force``."""
    if path is None:
        return
    path = Path(path)
    for source in inputs:
        if source is not None and Path(source).exists() and _same_or_inside(path, Path(source)):
            raise OutputError(f"{path} is an input of this command ({source}); write the output somewhere else")
    if not path.exists() and not path.is_symlink():
        return
    kind = existing_kind(path)
    if kind in REPLACEABLE[writes]:
        return
    if writes != "lava package" and writes != "run" and path.is_dir():
        raise OutputError(f"{path} is a directory; the {writes} output is a file")
    if not force:
        raise OutputError(f"{path} already holds a {kind}; pass --force to replace it")
