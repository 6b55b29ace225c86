"""AVE (Audio-Visual Event, 28 classes) from its own layout.

``<root>/AVE/<VideoID>.mp4`` plus ``Annotations.txt``, ``trainSet.txt``, ``valSet.txt``
and ``testSet.txt`` whose lines read ``Category&VideoID&Quality&StartTime&EndTime``
(a first line starting with ``Category&`` is a header and skipped). Classes are the
sorted categories of ``Annotations.txt``. The split is the official one, line for line:

* An ID listed twice in one set file gives two samples, and an ID listed in two set files
  is in both splits, exactly as the files say. Both are reported with counts in a
  :class:`~snnergy.data.common.DataWarning` and kept in :attr:`AVE.id_report` and the
  split file, never silently dropped or fixed.
* ``window="event"`` (default): frames and audio come from the annotated event
  ``[StartTime, EndTime]`` seconds; ``window="clip"``: from the whole video.
  Audio is the mp4's own audio track.

A sample's key is its annotation minus the quality, ``Category&VideoID&Start&End``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from snnergy.data.common import AnnotationError, AVClipDataset, ClipRecord, read_lines, require, require_all, warn

SET_FILES = {"train": "trainSet.txt", "val": "valSet.txt", "test": "testSet.txt"}
WINDOWS = ("event", "clip")


def parse_annotations(path: Path) -> list[tuple[int, str, str, float, float]]:
    """``(line_no, category, video_id, start, end)`` for every annotation line of ``path``."""
    require(path, "AVE annotation file")
    rows = []
    for index, (line_no, line) in enumerate(read_lines(path)):
        if index == 0 and line.startswith("Category&"):
            continue
        fields = line.rsplit("&", 4)  # category names could hold '&'; the other fields cannot
        if len(fields) != 5:
            raise AnnotationError(path, line_no, f"expected Category&VideoID&Quality&StartTime&EndTime, got {line!r}")
        category, video_id, _quality, start, end = (f.strip() for f in fields)
        try:
            t0, t1 = float(start), float(end)
        except ValueError:
            raise AnnotationError(path, line_no, f"StartTime/EndTime are not numbers: {start!r}, {end!r}") from None
        if not category or not video_id:
            raise AnnotationError(path, line_no, "empty Category or VideoID")
        if not 0 <= t0 < t1:
            raise AnnotationError(path, line_no, f"need 0 <= StartTime < EndTime, got {t0:g}, {t1:g}")
        rows.append((line_no, category, video_id, t0, t1))
    return rows


class AVE(AVClipDataset):
    """AVE events as ``(audio, video, category)`` with the official split."""

    name = "ave"
    split_modes = ("official",)

    def __init__(self, *args: Any, window: str = "event", **kwargs: Any) -> None:
        if window not in WINDOWS:
            raise ValueError(f"AVE window must be one of {WINDOWS}, got {window!r}")
        self.window = window
        super().__init__(*args, **kwargs)

    def _extra_params(self) -> dict[str, Any]:
        return {"window": self.window}

    def _scan(self) -> tuple[list[str], dict[str, ClipRecord]]:
        video_dir = require(self.data_root / "AVE", "AVE video folder", directory=True)
        annotations = self.data_root / "Annotations.txt"
        for name in (annotations.name, *SET_FILES.values()):  # all present before any is parsed
            require(self.data_root / name, "AVE annotation file")
        classes = sorted({row[1] for row in parse_annotations(annotations)})
        self._set_keys: dict[str, list[str]] = {}
        records: dict[str, ClipRecord] = {}
        for split, name in SET_FILES.items():
            path = self.data_root / name
            keys = []
            for line_no, category, vid, t0, t1 in parse_annotations(path):
                if category not in classes:
                    raise AnnotationError(path, line_no, f"category {category!r} is not in {annotations}")
                key = f"{category}&{vid}&{t0:g}&{t1:g}"
                window = (t0, t1) if self.window == "event" else None
                media_key = f"{vid}_{t0:g}-{t1:g}" if self.window == "event" else vid
                records[key] = ClipRecord(
                    key, classes.index(category), video_dir / f"{vid}.mp4", video_dir / f"{vid}.mp4", window, media_key
                )
                keys.append(key)
            self._set_keys[split] = keys
        require_all(sorted({r.visual for r in records.values()}), "AVE videos (AVE/<VideoID>.mp4 named in a set file)")
        self.id_report = self._report()
        return classes, records

    def _report(self) -> dict[str, Any]:
        """Repeated IDs within a set file and IDs shared between set files (warned, kept)."""
        ids = {s: [k.split("&")[-3] for k in keys] for s, keys in self._set_keys.items()}
        duplicates = {s: {v: n for v, n in sorted(Counter(vs).items()) if n > 1} for s, vs in ids.items()}
        names = list(ids)
        overlaps = {f"{a}&{b}": sorted(set(ids[a]) & set(ids[b])) for i, a in enumerate(names) for b in names[i + 1 :]}
        for s, dup in duplicates.items():
            if dup:
                warn(
                    f"ave: {SET_FILES[s]} lists {len(dup)} video IDs more than once "
                    f"({sum(dup.values()) - len(dup)} extra lines, kept), e.g. {list(dup)[:3]}"
                )
        for pair, shared in overlaps.items():
            if shared:
                a, b = pair.split("&")
                warn(
                    f"ave: {len(shared)} video IDs are in both {SET_FILES[a]} and {SET_FILES[b]} (kept in both), "
                    f"e.g. {shared[:3]}"
                )
        return {"duplicates": duplicates, "overlaps": overlaps}

    def _make_splits(
        self, records: Mapping[str, ClipRecord], mode: str, seed: int
    ) -> tuple[dict[str, list[str]], dict[str, Any]]:
        return {s: list(keys) for s, keys in self._set_keys.items()}, {
            "window": self.window,
            "id_report": self.id_report,
        }
