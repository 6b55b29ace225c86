"""CREMA-D (91 actors, 6 emotions) from its own layout: ``AudioWAV/*.wav`` + ``VideoFlash/*.flv``.

File names are ``{actor}_{sentence}_{emotion}_{level}`` (e.g. ``1001_DFA_ANG_XX``); the
label is the emotion, in the order of :data:`EMOTIONS` (alphabetical; OGM-GE and S-CMRL
each use another order). Audio comes from the wav (its own sample rate is read from the
file), frames from the flv.

Split modes (``split_mode=``):

* ``"speaker-independent"`` (default): the published audeering split, 18 test and 17
  dev (= ``val``) actors listed below, every other actor in ``train``. No actor is in two
  splits, so the test measures generalisation to unseen speakers.
* ``"actor-random"``: the same idea with a seeded draw of actors (proportions 56/17/18 of
  91, rounded), for repeated-split studies.
* ``"clip-random"``: ``train``/``test`` only, a seeded draw of 744/7442 of the clips for
  test (6698/744 on the full set), like OGM-GE and S-CMRL. **Not subject-disjoint**: the
  same actors occur in train and test, so scores are optimistic; offered for comparison
  with that work only.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from snnergy.data.common import AVClipDataset, ClipRecord, fraction_split, require, require_all, warn

EMOTIONS = ("ANG", "DIS", "FEA", "HAP", "NEU", "SAD")
TEST_ACTORS = (
    1063,
    1074,
    1079,
    1076,
    1078,
    1082,
    1084,
    1089,
    1080,
    1083,
    1088,
    1090,
    1068,
    1069,
    1071,
    1077,
    1086,
    1087,
)
DEV_ACTORS = (1060, 1061, 1049, 1053, 1054, 1055, 1058, 1075, 1059, 1070, 1085, 1057, 1062, 1064, 1065, 1066, 1067)
ACTOR_FRACTIONS = {"val": 17 / 91, "test": 18 / 91}
CLIP_TEST_FRACTION = 744 / 7442
_NAME = re.compile(r"(?P<actor>\d{4})_(?P<sentence>[A-Z]{3})_(?P<emotion>[A-Z]{3})_(?P<level>[A-Z]{2})")


def parse_name(path: Path) -> dict[str, str]:
    """Fields of a CREMA-D file name; a name that does not follow the scheme is an error."""
    match = _NAME.fullmatch(path.stem)
    if match is None or match["emotion"] not in EMOTIONS:
        raise ValueError(f"{path}: name does not match ActorID_Sentence_EMOTION_Level with EMOTION in {EMOTIONS}")
    return match.groupdict()


def actor_of(key: str) -> int:
    return int(key.split("_", 1)[0])


class CremaD(AVClipDataset):
    """CREMA-D clips as ``(audio, video, emotion)``; see the module docstring for splits."""

    name = "cremad"
    split_modes = ("speaker-independent", "actor-random", "clip-random")
    seeded_modes = ("actor-random", "clip-random")

    def _scan(self) -> tuple[list[str], dict[str, ClipRecord]]:
        audio_dir = require(self.data_root / "AudioWAV", "CREMA-D audio folder", directory=True)
        video_dir = require(self.data_root / "VideoFlash", "CREMA-D video folder", directory=True)
        wavs = sorted(p for p in audio_dir.glob("*.wav") if not p.name.startswith("."))
        if not wavs:
            raise FileNotFoundError(f"no .wav files in CREMA-D audio folder {audio_dir}")
        records = {}
        for wav in wavs:
            fields = parse_name(wav)
            records[wav.stem] = ClipRecord(
                wav.stem, EMOTIONS.index(fields["emotion"]), wav, video_dir / f"{wav.stem}.flv"
            )
        require_all([r.visual for r in records.values()], "CREMA-D videos (VideoFlash/<name>.flv for a wav)")
        unpaired = sorted({p.stem for p in video_dir.glob("*.flv")} - set(records))
        if unpaired:
            warn(
                f"cremad: {len(unpaired)} videos in {video_dir} have no wav in {audio_dir} and are ignored, e.g. "
                f"{unpaired[:3]}"
            )
        return list(EMOTIONS), records

    def _make_splits(
        self, records: Mapping[str, ClipRecord], mode: str, seed: int
    ) -> tuple[dict[str, list[str]], dict[str, Any]]:
        actors = sorted({actor_of(k) for k in records})
        if mode == "speaker-independent":
            held = {"val": set(DEV_ACTORS), "test": set(TEST_ACTORS)}
            by_actor = {a: next((s for s, group in held.items() if a in group), "train") for a in actors}
        elif mode == "actor-random":
            drawn = fraction_split([str(a) for a in actors], seed, ACTOR_FRACTIONS)
            by_actor = {int(a): s for s, group in drawn.items() for a in group}
        else:  # clip-random
            splits = fraction_split(records, seed, {"test": CLIP_TEST_FRACTION})
            return splits, self._info(splits, disjoint=False)
        splits = {s: sorted(k for k in records if by_actor[actor_of(k)] == s) for s in ("train", "val", "test")}
        return splits, self._info(splits, disjoint=True)

    @staticmethod
    def _info(splits: Mapping[str, list[str]], disjoint: bool) -> dict[str, Any]:
        return {
            "subject_disjoint": disjoint,
            "actors": {s: sorted({actor_of(k) for k in keys}) for s, keys in splits.items()},
        }
