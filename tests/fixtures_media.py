"""Builders of tiny datasets in the real on-disk layouts, with real media files.

Videos are written by PyAV (h264 in mp4 with an aac track for AVE, flv1 in flv for
CREMA-D), sounds by soundfile, images by Pillow. Frame ``i`` of every video is a flat
colour whose red level is :func:`frame_level` ``(i)``, so tests can tell which frames a
loader sampled.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence
from pathlib import Path

import av
import numpy as np
import soundfile as sf
from PIL import Image

FPS = 10
SIZE = 16


def frame_level(index: int) -> int:
    """Red level of frame ``index`` (distinct, increasing, inside the video range)."""
    return 20 + 10 * index


def write_video(
    path: Path,
    n_frames: int = 8,
    container: str = "mp4",
    codec: str = "h264",
    audio_rate: int | None = None,
    seed: int = 0,
) -> Path:
    """A ``SIZE x SIZE`` video at ``FPS`` whose frame ``i`` is flat with red = ``frame_level(i)``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w", format=container) as out:
        video = out.add_stream(codec, rate=FPS)
        video.width = video.height = SIZE
        video.pix_fmt = "yuv420p"
        sound = None
        if audio_rate is not None:
            sound = out.add_stream("aac", rate=audio_rate)
            sound.layout = "mono"
        for i in range(n_frames):
            rgb = np.empty((SIZE, SIZE, 3), np.uint8)
            rgb[..., 0], rgb[..., 1], rgb[..., 2] = frame_level(i), 128, 255 - frame_level(i)
            out.mux(video.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
        out.mux(video.encode())
        if sound is not None:
            wave = tone(n_frames / FPS, audio_rate, 300 + 50 * seed)[None]
            for start in range(0, wave.shape[1], 1024):
                frame = av.AudioFrame.from_ndarray(
                    np.ascontiguousarray(wave[:, start : start + 1024]), format="flt", layout="mono"
                )
                frame.sample_rate, frame.pts = audio_rate, start
                out.mux(sound.encode(frame))
            out.mux(sound.encode())
    return path


def tone(seconds: float, rate: int, freq: float) -> np.ndarray:
    t = np.arange(int(round(seconds * rate))) / rate
    return (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def write_wav(path: Path, seconds: float = 0.4, rate: int = 16000, channels: int = 1, freq: float = 440.0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    wave = np.stack([tone(seconds, rate, freq * (c + 1)) for c in range(channels)], axis=1)
    sf.write(str(path), wave, rate)
    return path


def write_jpg(path: Path, color: tuple[int, int, int], size: int = SIZE) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (size, size), color).save(path, "JPEG", quality=95)
    return path


def corrupt(path: Path) -> Path:
    """Overwrite a media file with bytes no decoder accepts (keeps its name)."""
    path.write_bytes(b"\x00not a media file\xff" * 16)
    return path


# ----------------------------------------------------------------------------- CREMA-D

CREMAD_ACTORS = (1001, 1002, 1003, 1004, 1060, 1061, 1063, 1074)  # train x4, dev x2, test x2 (published split)
CREMAD_EMOTIONS = ("ANG", "DIS", "FEA", "HAP", "NEU", "SAD")


def make_cremad(root: Path, actors: Sequence[int] = CREMAD_ACTORS, sentences: Sequence[str] = ("DFA",)) -> list[str]:
    """``AudioWAV/<name>.wav`` + ``VideoFlash/<name>.flv`` for every actor x sentence x emotion."""
    names = []
    for a_i, actor in enumerate(actors):
        for sentence in sentences:
            for e_i, emotion in enumerate(CREMAD_EMOTIONS):
                name = f"{actor}_{sentence}_{emotion}_XX"
                # one stereo 44.1 kHz file per actor exercises mono mixing and resampling
                rate, channels = (44100, 2) if e_i == 0 else (16000, 1)
                write_wav(root / "AudioWAV" / f"{name}.wav", 0.3, rate, channels, 200 + 60 * e_i + 7 * a_i)
                write_video(root / "VideoFlash" / f"{name}.flv", 8, "flv", "flv")
                names.append(name)
    return names


# ----------------------------------------------------------------------------- AVE

AVE_CLASSES = ("Church bell", "Dog", "Male speech, man speaking")


def _ave_line(category: str, vid: str, start: int, end: int) -> str:
    return f"{category}&{vid}&good&{start}&{end}"


def make_ave(root: Path, header: bool = True) -> dict[str, list[str]]:
    """Six 2-s mp4 (h264 + aac) and the four annotation files.

    The sets contain one ID listed twice in ``trainSet.txt`` and one ID that is in both
    ``trainSet.txt`` and ``testSet.txt``, like the real release. Events are ``[1, 2]`` s.
    """
    vids = {f"vid{i:02d}": AVE_CLASSES[i % 3] for i in range(6)}
    for i, vid in enumerate(vids):
        write_video(root / "AVE" / f"{vid}.mp4", 20, "mp4", "h264", audio_rate=16000, seed=i)
    lines = {vid: _ave_line(cat, vid, 1, 2) for vid, cat in vids.items()}
    sets = {
        "trainSet.txt": [lines["vid00"], lines["vid01"], lines["vid02"], lines["vid00"]],  # vid00 twice
        "valSet.txt": [lines["vid03"], lines["vid04"]],
        "testSet.txt": [lines["vid05"], lines["vid01"]],  # vid01 also in train
    }
    head = ["Category&VideoID&Quality&StartTime&EndTime"] if header else []
    (root / "Annotations.txt").write_text("\n".join(head + list(lines.values())) + "\n")
    for name, rows in sets.items():
        (root / name).write_text("\r\n".join(head + rows) + "\r\n")
    return sets


# ----------------------------------------------------------------------------- UrbanSound8K-AV

US8K_CLASSES = ("air_conditioner", "car_horn", "dog_bark")
US8K_COLORS = {0: (200, 30, 30), 1: (30, 200, 30), 2: (30, 30, 200)}


def make_us8k_smmt(root: Path, per_class: int = 10) -> list[str]:
    """``Dataset_v3_sound/<class>/<id>.wav`` + ``Dataset_v3_vision/<class>/<id>.jpg``."""
    keys = []
    for c, cls in enumerate(US8K_CLASSES):
        for j in range(per_class):
            clip = f"{100 + j}-{c}-0-{j}"
            write_wav(
                root / "Dataset_v3_sound" / cls / f"{clip}.wav",
                0.25,
                (16000, 22050, 44100)[j % 3],
                1 + j % 2,
                300 + 100 * c,
            )
            write_jpg(root / "Dataset_v3_vision" / cls / f"{clip}.jpg", US8K_COLORS[c])
            keys.append(f"{cls}/{clip}")
    return keys


def make_us8k_metadata(root: Path, per_class: int = 10, class_ids: Iterable[int] = (0, 1, 3)) -> list[str]:
    """``metadata/UrbanSound8K.csv`` + ``audio/fold<k>/<name>.wav`` + ``images/<stem>.jpg``."""
    names = {0: "air_conditioner", 1: "car_horn", 3: "dog_bark"}
    rows, stems = [], []
    for rank, cid in enumerate(class_ids):
        for j in range(per_class):
            fold = 1 + j % 10
            name = f"{100 + j}-{cid}-0-{j}.wav"
            write_wav(root / "audio" / f"fold{fold}" / name, 0.25, 22050, 1, 300 + 100 * cid)
            write_jpg(root / "images" / f"{Path(name).stem}.jpg", US8K_COLORS[rank])
            rows.append([name, 100 + j, 0.0, 0.25, 1, fold, cid, names[cid]])
            stems.append(Path(name).stem)
    (root / "metadata").mkdir(parents=True, exist_ok=True)
    with (root / "metadata" / "UrbanSound8K.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["slice_file_name", "fsID", "start", "end", "salience", "fold", "classID", "class"])
        writer.writerows(rows)
    return stems
