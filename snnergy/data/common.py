"""What the real-dataset loaders (CREMA-D, AVE, UrbanSound8K-AV) share.

* **Errors** that name what is wrong: a missing path (:func:`require`), a malformed line
  with its file and line number (:class:`AnnotationError`), an undecodable clip
  (:class:`~snnergy.data.media.CorruptClipError`: skipped with a warning and counted, or
  raised under ``strict=True``).
* **Splits** that are reproducible everywhere: seeded orders come from SHA-256 of
  ``seed/key`` (no RNG whose stream could change between library versions), inputs are
  sorted first, and the split actually used is written to a JSON split file that a later
  run can pass back (``split_file=``) to get exactly the same partition.
* **A preprocessing cache**: each clip is decoded once into ``<key>.npz`` (uint8 frames,
  float32 log-mel) under a directory named by a hash of everything that shapes the
  tensors (dataset, resolved data root, T, S, audio parameters, code version), written
  atomically; later runs and epochs read only these files, never the media.
* :class:`AVClipDataset`, the base of the three loaders: a loader only scans its layout
  into :class:`ClipRecord` s and computes its splits.

Cache layout (``<base>`` is ``cache_dir`` if given, else ``$SNNERGY_CACHE/<dataset>`` or
``~/.cache/snnergy/<dataset>``)::

    <base>/<dataset>-<hash of data root>/split-<mode>[-seed<seed>].json
    <base>/<dataset>-<hash of data root>/clips-<hash of preprocessing>/{params.json, <key>.npz}
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import re
import warnings
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset
from tqdm import tqdm

from snnergy.atomic import atomic_write_text
from snnergy.data import media
from snnergy.data.cache import atomic_save_npz, dataset_cache_dir, load_npz, params_hash
from snnergy.data.encoding import encode_time
from snnergy.data.media import AudioParams, CorruptClipError

log = logging.getLogger("snnergy.data")

PREPROCESS_VERSION = 1  # bump when decoding changes, so old cache entries are not reused
SPLITS = ("train", "val", "test")
MODALITIES = ("both", "audio", "video")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
SPLIT_FILE_FORMAT = 1


class AnnotationError(ValueError):
    """A line of an annotation/metadata file that cannot be parsed; names file and line."""

    def __init__(self, path: Path | str, line_no: int, message: str) -> None:
        super().__init__(f"{path}:{line_no}: {message}")
        self.path, self.line_no = Path(path), line_no


class DataWarning(UserWarning):
    """Something in a dataset is suspicious (duplicates, overlaps, corrupt clips) but usable."""


def warn(message: str) -> None:
    """Report both as a Python warning (visible in tests and scripts) and in the log."""
    log.warning(message)
    warnings.warn(message, DataWarning, stacklevel=3)


def require(path: Path, what: str, *, directory: bool = False) -> Path:
    """Return ``path`` if it exists, else raise ``FileNotFoundError`` naming it and its role."""
    ok = path.is_dir() if directory else path.exists()
    if not ok:
        raise FileNotFoundError(
            errno.ENOENT, f"{what} not found (expected {'a directory' if directory else 'a file'})", str(path)
        )
    return path


def require_all(paths: Sequence[Path], what: str) -> None:
    """Raise one ``FileNotFoundError`` listing (the first few of) all missing ``paths``."""
    missing = [p for p in paths if not p.exists()]
    if missing:
        shown = ", ".join(str(p) for p in missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise FileNotFoundError(f"{len(missing)} {what} missing: {shown}")


def read_lines(path: Path) -> list[tuple[int, str]]:
    """Non-blank lines with their 1-based numbers; tolerates a BOM and CRLF line ends."""
    text = path.read_text(encoding="utf-8-sig")
    return [(n, line.strip()) for n, line in enumerate(text.splitlines(), start=1) if line.strip()]


# ----------------------------------------------------------------------------- splits


def seeded_order(keys: Iterable[str], seed: int) -> list[str]:
    """A pseudo-random permutation of ``keys`` that depends only on ``seed`` and the key strings."""
    return sorted(keys, key=lambda k: hashlib.sha256(f"{seed}/{k}".encode()).digest())


def held_out_counts(n: int, fractions: Mapping[str, float]) -> dict[str, int]:
    """Sizes of held-out splits (``round-half-up(n * f)``); the caller's first split takes the rest."""
    counts = {name: int(np.floor(n * f + 0.5)) for name, f in fractions.items()}
    if sum(counts.values()) > n:
        raise ValueError(f"held-out fractions {dict(fractions)} exceed the {n} items available")
    return counts


def fraction_split(
    keys: Iterable[str], seed: int, fractions: Mapping[str, float], rest: str = "train"
) -> dict[str, list[str]]:
    """Seeded split of ``keys`` (sorted first): held-out splits take their fraction, ``rest`` the remainder."""
    order = seeded_order(sorted(keys), seed)
    counts = held_out_counts(len(order), fractions)
    out, start = {}, 0
    for name, count in counts.items():
        out[name] = sorted(order[start : start + count])
        start += count
    return {rest: sorted(order[start:]), **out}


def stratified_split(
    keys_by_class: Mapping[Any, Iterable[str]], seed: int, fractions: Mapping[str, float]
) -> dict[str, list[str]]:
    """:func:`fraction_split` inside every class, so each split keeps the class proportions."""
    merged: dict[str, list[str]] = {}
    for cls in sorted(keys_by_class):
        for name, keys in fraction_split(keys_by_class[cls], seed, fractions).items():
            merged.setdefault(name, []).extend(keys)
    return {name: sorted(keys) for name, keys in merged.items()}


def write_split_file(
    path: Path,
    *,
    dataset: str,
    data_root: Path,
    mode: str,
    seed: int | None,
    splits: Mapping[str, Sequence[str]],
    **info: Any,
) -> Path:
    """Record a partition (clip keys per split) plus how it was made, as JSON."""
    doc = {
        "format": SPLIT_FILE_FORMAT,
        "dataset": dataset,
        "data_root": str(data_root),
        "mode": mode,
        "seed": seed,
        "counts": {name: len(keys) for name, keys in splits.items()},
        **info,
        "splits": {name: list(keys) for name, keys in splits.items()},
    }
    return atomic_write_text(path, json.dumps(doc, indent=1) + "\n")


def read_split_file(path: Path | str, dataset: str | None = None) -> dict[str, Any]:
    """Load a split file written by :func:`write_split_file` (checks format and dataset)."""
    path = require(Path(path), "split file")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise AnnotationError(path, exc.lineno, f"not valid JSON: {exc.msg}") from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("splits"), dict):
        raise ValueError(f"{path}: not a SNNergy split file (no 'splits' mapping)")
    if dataset is not None and doc.get("dataset") != dataset:
        raise ValueError(f"{path}: split file is for dataset {doc.get('dataset')!r}, not {dataset!r}")
    return doc


# ----------------------------------------------------------------------------- clips + cache


@dataclass(frozen=True)
class ClipRecord:
    """One sample: where its sound and picture(s) are, its label, and an optional time window (s)."""

    key: str
    label: int
    audio: Path
    visual: Path
    window: tuple[float, float] | None = None
    media_key: str | None = None  # cache identity when several samples share decoded media

    @property
    def still(self) -> bool:
        return self.visual.suffix.lower() in IMAGE_SUFFIXES


@dataclass(frozen=True)
class Preprocessing:
    """Everything that shapes a cached clip (with the dataset, root and loader options: the cache key)."""

    image_size: int
    time_steps: int
    audio: AudioParams

    def to_dict(self) -> dict:
        return {
            "image_size": self.image_size,
            "time_steps": self.time_steps,
            "audio": self.audio.to_dict(),
            "version": PREPROCESS_VERSION,
        }


def entry_name(key: str) -> str:
    """A file name for a clip key; keys with unsafe characters get a hash suffix to stay unique."""
    if re.fullmatch(r"[A-Za-z0-9._-]+", key) and not key.startswith("."):
        return f"{key}.npz"
    return f"{re.sub(r'[^A-Za-z0-9._-]', '_', key).lstrip('.')}-{params_hash({'key': key}, 8)}.npz"


def decode_clip(record: ClipRecord, prep: Preprocessing) -> dict[str, np.ndarray]:
    """Decode one clip: ``audio`` float32 ``[1 or T, 1, S, S]``, ``video`` uint8 ``[1 or T, 3, S, S]``."""
    wave = media.read_audio(record.audio, prep.audio.sample_rate, record.window)
    audio = media.audio_image(wave, prep.audio, prep.image_size, prep.time_steps)
    if record.still:
        video = media.read_image(record.visual, prep.image_size)
    else:
        video = media.read_frames(record.visual, prep.time_steps, prep.image_size, record.window)
    return {"audio": audio.numpy().astype(np.float32), "video": video.astype(np.uint8)}


class AVClipDataset(Dataset):
    """Base of the real-dataset loaders: ``(audio [T,1,S,S], video [T,3,S,S], label)`` items.

    Subclasses set :attr:`name`, :attr:`split_modes` (the first is the default) and
    :attr:`seeded_modes`, and implement :meth:`_scan` and :meth:`_make_splits`.
    Construction parses the layout, fixes the split (computed, or read back from
    ``split_file``), writes the split file, and makes sure every clip of the requested
    split is in the cache, decoding the missing ones (``workers`` threads). Clips that do
    not decode are dropped, listed in :attr:`skipped` and reported with a warning, or
    raise :class:`CorruptClipError` when ``strict``. Items are read from the cache only.
    """

    name = "dataset"
    split_modes: tuple[str, ...] = ("default",)
    seeded_modes: tuple[str, ...] = ()

    def __init__(
        self,
        data_root: str | os.PathLike,
        split: str = "train",
        image_size: int = 128,
        time_steps: int = 6,
        cache_dir: str | os.PathLike | None = None,
        seed: int = 0,
        modality: str = "both",
        *,
        split_mode: str | None = None,
        split_file: str | os.PathLike | None = None,
        audio: AudioParams = AudioParams(),
        strict: bool = False,
        workers: int = 0,
        progress: bool = True,
    ) -> None:
        split_mode = split_mode or self.split_modes[0]
        if split_mode not in self.split_modes:
            raise ValueError(f"unknown {self.name} split_mode {split_mode!r}; valid: {', '.join(self.split_modes)}")
        if modality not in MODALITIES:
            raise ValueError(f"unknown modality {modality!r}; valid: {', '.join(MODALITIES)}")
        if image_size < 1 or time_steps < 1:
            raise ValueError(f"image_size and time_steps must be >= 1, got {image_size}, {time_steps}")
        self.data_root = require(Path(data_root).expanduser(), f"{self.name} data root", directory=True).resolve()
        self.split, self.modality, self.strict = split, modality, strict
        self.image_size, self.time_steps = image_size, time_steps
        self.prep = Preprocessing(image_size, time_steps, audio)

        self.class_names, records = self._scan()
        self.num_classes = len(self.class_names)
        source_dir = (
            dataset_cache_dir(self.name, cache_dir) / f"{self.name}-{params_hash({'root': str(self.data_root)}, 10)}"
        )
        self.split_info = self._resolve_split(records, split_mode, seed, split_file, source_dir)
        if split not in self.split_info["splits"]:
            raise ValueError(
                f"split {split!r} does not exist in {self.name} split mode {self.split_info['mode']!r}; available: "
                f"{', '.join(self.split_info['splits'])}"
            )
        wanted = self.split_info["splits"][split]
        unknown = [k for k in wanted if k not in records]
        if unknown:
            raise ValueError(
                f"{self.split_path}: {len(unknown)} clips of split {split!r} are not in {self.data_root}, e.g. "
                f"{unknown[:3]}"
            )

        cache_params = {
            "dataset": self.name,
            "root": str(self.data_root),
            **self._extra_params(),
            **self.prep.to_dict(),
        }
        self.cache_path = source_dir / f"clips-{params_hash(cache_params)}"
        self.cache_path.mkdir(parents=True, exist_ok=True)
        params_file = self.cache_path / "params.json"
        if not params_file.exists():
            atomic_write_text(params_file, json.dumps(cache_params, indent=1) + "\n")
        self.skipped: list[tuple[str, str]] = []
        self.records = self._prepare([records[k] for k in wanted], workers, progress)
        self.labels = [r.label for r in self.records]

    # -- what a loader provides ---------------------------------------------------------

    def _scan(self) -> tuple[list[str], dict[str, ClipRecord]]:
        """Parse the on-disk layout: class names and every clip, keyed by a unique key."""
        raise NotImplementedError

    def _make_splits(
        self, records: Mapping[str, ClipRecord], mode: str, seed: int
    ) -> tuple[dict[str, list[str]], dict[str, Any]]:
        """Partition clip keys for ``mode``; also return extra facts to store in the split file."""
        raise NotImplementedError

    def _extra_params(self) -> dict[str, Any]:
        """Loader options that change the decoded tensors (part of the cache key)."""
        return {}

    # -- machinery ----------------------------------------------------------------------

    def _resolve_split(
        self,
        records: Mapping[str, ClipRecord],
        mode: str,
        seed: int,
        split_file: str | os.PathLike | None,
        source_dir: Path,
    ) -> dict[str, Any]:
        if split_file is not None:
            self.split_path = Path(split_file)
            return read_split_file(self.split_path, self.name)
        splits, info = self._make_splits(records, mode, seed)
        used_seed = seed if mode in self.seeded_modes else None
        suffix = f"-seed{seed}" if used_seed is not None else ""
        self.split_path = source_dir / f"split-{mode}{suffix}.json"
        write_split_file(
            self.split_path,
            dataset=self.name,
            data_root=self.data_root,
            mode=mode,
            seed=used_seed,
            splits=splits,
            **info,
        )
        return read_split_file(self.split_path, self.name)

    def entry_path(self, record: ClipRecord) -> Path:
        return self.cache_path / entry_name(record.media_key or record.key)

    def _build(self, record: ClipRecord) -> str | None:
        """Decode ``record`` into the cache; return the reason if the clip is corrupt."""
        try:
            arrays = decode_clip(record, self.prep)
        except CorruptClipError as exc:
            if self.strict:
                raise
            return str(exc)
        atomic_save_npz(self.entry_path(record), arrays, compress=False)
        return None

    def _prepare(self, records: list[ClipRecord], workers: int, progress: bool) -> list[ClipRecord]:
        todo = list({self.entry_path(r): r for r in records if not self.entry_path(r).exists()}.values())
        bar = tqdm(
            total=len(todo),
            desc=f"decoding {self.name} {self.split}",
            disable=not progress or len(todo) < 2,
            leave=False,
        )
        failed: dict[Path, tuple[str, str]] = {}
        with bar, ThreadPoolExecutor(max(1, workers)) as pool:
            for record, reason in zip(todo, pool.map(self._build, todo)):
                if reason is not None:
                    failed[self.entry_path(record)] = (record.media_key or record.key, reason)
                bar.update()
        self.skipped = sorted(failed.values())
        if failed:
            listed = "; ".join(reason for _, reason in self.skipped[:5]) + (" ..." if len(failed) > 5 else "")
            warn(f"{self.name} {self.split}: skipped {len(failed)} corrupt clips: {listed}")
        kept = [r for r in records if self.entry_path(r) not in failed]
        if not kept:
            raise RuntimeError(f"{self.name} split {self.split!r} has no decodable clip in {self.data_root}")
        return kept

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, int]:
        record = self.records[index]
        data = load_npz(self.entry_path(record))
        audio = torch.from_numpy(data["audio"])
        video = torch.from_numpy(data["video"]).float() / 255.0
        audio = encode_time(audio[0] if audio.shape[0] == 1 else audio, self.time_steps)
        video = encode_time(video[0] if video.shape[0] == 1 else video, self.time_steps)
        if self.modality == "video":
            audio = torch.zeros_like(audio)
        elif self.modality == "audio":
            video = torch.zeros_like(video)
        return audio, video, record.label
