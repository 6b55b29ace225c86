"""UrbanSound8K-AV (10 urban sound classes, one image per clip) from either of two layouts.

* ``"smmt"`` (the SMMT release): ``Dataset_v3_sound/<class>/<id>.wav`` paired with
  ``Dataset_v3_vision/<class>/<id>.jpg``; classes are the sorted class folders (for
  UrbanSound8K's names this equals the classID order). Key ``<class>/<id>``.
* ``"metadata"`` (UrbanSound8K's own release plus images): ``metadata/UrbanSound8K.csv``
  (``slice_file_name, fsID, start, end, salience, fold, classID, class``), sound at
  ``audio/fold<fold>/<slice_file_name>``, and its image at ``images/<stem>.jpg`` where
  ``<stem>`` is the slice file name without ``.wav`` (e.g. ``images/100032-3-0-0.jpg``).
  Classes are ordered by ``classID``; labels are the rank of the classID among those
  present (= the classID on the full set). Key ``<stem>``.

``layout="auto"`` picks ``smmt`` if ``Dataset_v3_vision`` exists, else ``metadata``.

Split (``"stratified"``): within each class, clip keys are sorted, put in a seeded order
and cut 80/10/10 into train/val/test (held-out sizes rounded half up), so every split
keeps the class proportions and the same seed gives the same split on any machine. The
image is a still: it is the same frame at every time step.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from snnergy.data.common import (
    IMAGE_SUFFIXES,
    AnnotationError,
    AVClipDataset,
    ClipRecord,
    require,
    require_all,
    stratified_split,
    warn,
)

LAYOUTS = ("auto", "smmt", "metadata")
FRACTIONS = {"val": 0.1, "test": 0.1}
CSV_COLUMNS = ("slice_file_name", "fsID", "start", "end", "salience", "fold", "classID", "class")
SMMT_SOUND, SMMT_VISION = "Dataset_v3_sound", "Dataset_v3_vision"


class UrbanSound8KAV(AVClipDataset):
    """UrbanSound8K-AV clips as ``(audio, image repeated over T, class)``."""

    name = "us8k"
    split_modes = ("stratified",)
    seeded_modes = ("stratified",)

    def __init__(self, *args: Any, layout: str = "auto", **kwargs: Any) -> None:
        if layout not in LAYOUTS:
            raise ValueError(f"UrbanSound8K-AV layout must be one of {LAYOUTS}, got {layout!r}")
        self.layout = layout
        super().__init__(*args, **kwargs)

    def _scan(self) -> tuple[list[str], dict[str, ClipRecord]]:
        if self.layout == "auto":
            self.layout = "smmt" if (self.data_root / SMMT_VISION).is_dir() else "metadata"
            if self.layout == "metadata" and not (self.data_root / "metadata").is_dir():
                raise FileNotFoundError(
                    f"UrbanSound8K-AV layout not found in {self.data_root}: expected "
                    f"{self.data_root / SMMT_VISION} (SMMT release) "
                    f"or {self.data_root / 'metadata' / 'UrbanSound8K.csv'} (metadata layout)"
                )
        return self._scan_smmt() if self.layout == "smmt" else self._scan_metadata()

    def _scan_smmt(self) -> tuple[list[str], dict[str, ClipRecord]]:
        vision = require(self.data_root / SMMT_VISION, "UrbanSound8K-AV image folder", directory=True)
        sound = require(self.data_root / SMMT_SOUND, "UrbanSound8K-AV sound folder", directory=True)
        classes = sorted(p.name for p in vision.iterdir() if p.is_dir() and not p.name.startswith("."))
        if not classes:
            raise FileNotFoundError(f"no class folders in {vision}")
        records = {}
        for label, cls in enumerate(classes):
            for image in sorted(
                p for p in (vision / cls).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
            ):
                key = f"{cls}/{image.stem}"
                records[key] = ClipRecord(key, label, sound / cls / f"{image.stem}.wav", image)
        require_all(
            [r.audio for r in records.values()], f"UrbanSound8K-AV sounds ({SMMT_SOUND}/<class>/<id>.wav for an image)"
        )
        unpaired = sorted(
            f"{p.parent.name}/{p.stem}" for p in sound.glob("*/*.wav") if f"{p.parent.name}/{p.stem}" not in records
        )
        if unpaired:
            warn(
                f"us8k: {len(unpaired)} sounds in {sound} have no image in {vision} and are ignored, e.g. "
                f"{unpaired[:3]}"
            )
        return classes, records

    def _scan_metadata(self) -> tuple[list[str], dict[str, ClipRecord]]:
        table = require(self.data_root / "metadata" / "UrbanSound8K.csv", "UrbanSound8K metadata")
        rows, names, seen = [], {}, set()
        with table.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle)
            header = [h.strip() for h in next(reader, [])]
            missing = [c for c in CSV_COLUMNS if c not in header]
            if missing:
                raise AnnotationError(table, 1, f"missing columns {missing}; expected {', '.join(CSV_COLUMNS)}")
            col = {c: header.index(c) for c in CSV_COLUMNS}
            for fields in reader:
                line_no = reader.line_num
                if not any(f.strip() for f in fields):
                    continue
                if len(fields) != len(header):
                    raise AnnotationError(table, line_no, f"expected {len(header)} fields, got {len(fields)}")
                name, cls = fields[col["slice_file_name"]].strip(), fields[col["class"]].strip()
                try:
                    fold, class_id = int(fields[col["fold"]]), int(fields[col["classID"]])
                except ValueError:
                    raise AnnotationError(table, line_no, "fold and classID must be integers") from None
                if not name.lower().endswith(".wav") or not cls:
                    raise AnnotationError(table, line_no, f"bad slice_file_name {name!r} or class {cls!r}")
                if names.setdefault(class_id, cls) != cls:
                    raise AnnotationError(
                        table, line_no, f"classID {class_id} is {cls!r} here but {names[class_id]!r} earlier"
                    )
                if Path(name).stem in seen:
                    raise AnnotationError(table, line_no, f"slice_file_name {name!r} is listed twice")
                seen.add(Path(name).stem)
                rows.append((name, fold, class_id))
        if not rows:
            raise AnnotationError(table, 1, "no clips listed")
        ids = sorted(names)
        audio_root, image_root = self.data_root / "audio", self.data_root / "images"
        require(audio_root, "UrbanSound8K audio folder", directory=True)
        require(image_root, "UrbanSound8K-AV image folder (images/<slice stem>.jpg)", directory=True)
        records = {}
        for name, fold, class_id in rows:
            stem = Path(name).stem
            records[stem] = ClipRecord(
                stem, ids.index(class_id), audio_root / f"fold{fold}" / name, image_root / f"{stem}.jpg"
            )
        require_all([r.audio for r in records.values()], "UrbanSound8K sounds (audio/fold<fold>/<slice_file_name>)")
        require_all([r.visual for r in records.values()], "UrbanSound8K-AV images (images/<slice stem>.jpg)")
        return [names[i] for i in ids], records

    def _make_splits(
        self, records: Mapping[str, ClipRecord], mode: str, seed: int
    ) -> tuple[dict[str, list[str]], dict[str, Any]]:
        by_class: dict[int, list[str]] = {}
        for key, record in records.items():
            by_class.setdefault(record.label, []).append(key)
        splits = stratified_split(by_class, seed, FRACTIONS)
        per_class = {
            s: {self.class_names[c]: sum(records[k].label == c for k in keys) for c in sorted(by_class)}
            for s, keys in splits.items()
        }
        return splits, {"layout": self.layout, "fractions": {"train": 0.8, **FRACTIONS}, "per_class": per_class}
