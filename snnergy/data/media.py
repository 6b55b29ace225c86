"""Decoding real media files into the model's fixed-size tensors.

Only real decoders are used: PyAV (FFmpeg) for video containers (mp4/h264, flv/flv1) and
for the audio track of a container, PyAV's image2 demuxer for JPEG/PNG, soundfile for
wav. Every failure of a decoder on a file is re-raised as :class:`CorruptClipError`
naming the file, so that loaders can tell "this clip is broken" (skip and count it) from
"this code is broken" (any other exception propagates).

Choices (documented in ``docs/datasets.md``):

* **Audio**: mixed to mono (mean of channels), resampled with ``scipy.signal.resample_poly``
  to :attr:`AudioParams.sample_rate` (16 kHz by default: every CREMA-D wav is 16 kHz, and
  speech and urban sounds keep their structure below 8 kHz), log-mel in dB relative to
  the clip's own peak (``snnergy.data.audio_features``), floored at ``-top_db`` and mapped
  to ``[0, 1]`` so that audio and video share a range and silence is 0.
* **Video**: ``T`` frames sampled evenly *in time*: the window ``[a, b)`` is cut into ``T``
  equal segments and the frame nearest to each segment's centre is taken (centres, not
  end points, so fades at the edges of a clip are avoided; frames repeat when the window
  holds fewer than ``T`` frames). Frames are converted to RGB and resized to ``S x S``
  by FFmpeg's area filter in one step (the whole frame, no crop).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import av
import numpy as np
import soundfile as sf
import torch
from scipy.signal import resample_poly

from snnergy.data.audio_features import log_mel_spectrogram, resize_2d

AUDIO_ENCODINGS = ("repeat", "chunks")
Window = tuple[float, float] | None  # seconds from the start of the media, or the whole file


class CorruptClipError(RuntimeError):
    """A media file exists but cannot be decoded (or decodes to nothing)."""

    def __init__(self, path: Path | str, reason: str) -> None:
        super().__init__(f"cannot decode {path}: {reason}")
        self.path, self.reason = Path(path), reason


# Library errors that mean "bad file", not "bad code". LibsndfileError is a RuntimeError.
_DECODE_ERRORS = (av.FFmpegError, sf.LibsndfileError, EOFError, RuntimeError, OSError)


@dataclass(frozen=True)
class AudioParams:
    """How a waveform becomes the ``[1, S, S]`` (or ``[T, 1, S, S]``) audio input.

    ``seconds=None`` uses the whole clip (or event window) and lets the resize to ``S``
    columns stretch or squeeze time, as S-CMRL does; a number crops or zero-pads to that
    duration first so that one column always means the same time span.
    ``encoding="repeat"`` presents one spectrogram at every time step (S-CMRL, QKFormer);
    ``"chunks"`` cuts the spectrogram into ``T`` consecutive pieces, one per step.
    """

    sample_rate: int = 16000
    n_fft: int = 512
    hop_length: int = 160
    n_mels: int = 128
    top_db: float = 80.0
    seconds: float | None = None
    encoding: str = "repeat"

    def __post_init__(self) -> None:
        if self.encoding not in AUDIO_ENCODINGS:
            raise ValueError(f"audio encoding must be one of {AUDIO_ENCODINGS}, got {self.encoding!r}")
        if self.seconds is not None and self.seconds <= 0:
            raise ValueError(f"audio seconds must be positive, got {self.seconds}")

    def to_dict(self) -> dict:
        return asdict(self)


def _mono_resampled(samples: np.ndarray, rate: int, target: int) -> np.ndarray:
    """``[channels, n]`` at ``rate`` -> mono float32 ``[n']`` at ``target``."""
    mono = samples.astype(np.float64).mean(axis=0)
    if rate != target:
        g = math.gcd(int(rate), int(target))
        mono = resample_poly(mono, target // g, int(rate) // g)
    return mono.astype(np.float32)


def _crop(samples: np.ndarray, rate: int, window: Window) -> np.ndarray:
    if window is None:
        return samples
    start, stop = (max(0, int(round(t * rate))) for t in window)
    return samples[:, start:stop]


def read_wav(path: Path, sample_rate: int, window: Window = None) -> np.ndarray:
    """Mono float32 samples of a sound file at ``sample_rate`` (its own rate is read from the file)."""
    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except _DECODE_ERRORS as exc:
        raise CorruptClipError(path, f"{type(exc).__name__}: {exc}") from exc
    data = _crop(data.T, rate, window)
    if data.shape[1] == 0:
        raise CorruptClipError(path, "no audio samples" + (f" in window {window}" if window else ""))
    return _mono_resampled(data, rate, sample_rate)


def read_container_audio(path: Path, sample_rate: int, window: Window = None) -> np.ndarray:
    """Mono float32 samples of the first audio stream of a container (e.g. AVE's aac in mp4).

    The window is measured from the first decoded sample.
    """
    try:
        with av.open(str(path)) as container:
            if not container.streams.audio:
                raise CorruptClipError(path, "no audio stream")
            stream = container.streams.audio[0]
            to_planar = av.AudioResampler(format="fltp")  # keeps layout and rate
            chunks, rate = [], stream.codec_context.sample_rate
            for frame in container.decode(stream):
                rate = frame.sample_rate
                chunks += [f.to_ndarray() for f in to_planar.resample(frame)]
            chunks += [f.to_ndarray() for f in to_planar.resample(None)]
    except _DECODE_ERRORS as exc:
        if isinstance(exc, CorruptClipError):
            raise
        raise CorruptClipError(path, f"{type(exc).__name__}: {exc}") from exc
    if not chunks:
        raise CorruptClipError(path, "audio stream decodes to no samples")
    data = _crop(np.concatenate(chunks, axis=1), rate, window)
    if data.shape[1] == 0:
        raise CorruptClipError(path, f"no audio samples in window {window}")
    return _mono_resampled(data, rate, sample_rate)


def read_audio(path: Path, sample_rate: int, window: Window = None) -> np.ndarray:
    """Dispatch on the suffix: soundfile for wav/flac/ogg, PyAV for anything else."""
    if path.suffix.lower() in (".wav", ".flac", ".ogg"):
        return read_wav(path, sample_rate, window)
    return read_container_audio(path, sample_rate, window)


def audio_image(wave: np.ndarray, params: AudioParams, size: int, time_steps: int) -> torch.Tensor:
    """Log-mel image in [0, 1]: ``[1, 1, S, S]`` for ``repeat``, ``[T, 1, S, S]`` for ``chunks``.

    Row 0 is the lowest mel band. ``chunks`` resizes the spectrogram to ``S x (T*S)`` and
    cuts it into ``T`` consecutive ``S x S`` pieces, so a short clip still yields T chunks.
    """
    if params.seconds is not None:
        n = int(round(params.seconds * params.sample_rate))
        wave = np.pad(wave[:n], (0, max(0, n - len(wave))))
    wave = np.pad(wave, (0, max(0, params.n_fft - len(wave))))  # reflect padding needs > n_fft/2
    db = log_mel_spectrogram(
        torch.from_numpy(wave), params.sample_rate, params.n_fft, params.hop_length, params.n_mels, top_db=params.top_db
    )
    unit = (db + params.top_db) / params.top_db  # [n_mels, frames] in [0, 1]
    pieces = time_steps if params.encoding == "chunks" else 1
    image = resize_2d(unit, (size, size * pieces)).clamp(0.0, 1.0)  # [S, pieces*S]
    return image.reshape(size, pieces, size).permute(1, 0, 2).unsqueeze(1).contiguous()


def evenly_spaced_times(start: float, stop: float, count: int) -> np.ndarray:
    """Centres of ``count`` equal segments of ``[start, stop)``."""
    return start + (np.arange(count) + 0.5) * (stop - start) / count


def _frame_times(container: av.container.InputContainer, path: Path) -> np.ndarray:
    """Presentation times (s) of every video frame, from packet timestamps (no decoding)."""
    stream = container.streams.video[0]
    stamps = []
    for packet in container.demux(stream):
        if packet.size == 0:
            continue
        stamp = packet.pts if packet.pts is not None else packet.dts
        if stamp is None:
            raise CorruptClipError(path, "video packet without timestamp")
        stamps.append(stamp)
    if not stamps:
        raise CorruptClipError(path, "no video frames")
    return np.sort(np.asarray(stamps, dtype=np.float64)) * float(stream.time_base)


def read_frames(path: Path, count: int, size: int, window: Window = None) -> np.ndarray:
    """``count`` RGB frames, evenly spaced over ``window`` (default: the whole clip), as uint8 ``[count, 3, S, S]``.

    A first pass reads only packet timestamps to place the frames; the second decodes up to
    the last frame needed and converts only the chosen ones. Window times are relative to
    the first frame.
    """
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise CorruptClipError(path, "no video stream")
            times = _frame_times(container, path)
        step = float(np.median(np.diff(times))) if len(times) > 1 else 0.0
        rel = times - times[0]
        start, stop = window if window is not None else (0.0, rel[-1] + step)
        stop = max(stop, start + 1e-9)
        targets = evenly_spaced_times(start, stop, count)
        chosen = np.abs(rel[None, :] - targets[:, None]).argmin(axis=1)  # nearest frame per target
        wanted = {int(i): None for i in chosen}
        last = max(wanted)
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            for index, frame in enumerate(container.decode(stream)):
                if index in wanted:
                    wanted[index] = frame.to_ndarray(width=size, height=size, format="rgb24", interpolation="AREA")
                if index >= last:
                    break
    except _DECODE_ERRORS as exc:
        if isinstance(exc, CorruptClipError):
            raise
        raise CorruptClipError(path, f"{type(exc).__name__}: {exc}") from exc
    decoded = [i for i, f in wanted.items() if f is not None]
    if not decoded:
        raise CorruptClipError(path, "no frame could be decoded")
    # Frames the decoder dropped (damaged tail) fall back to the nearest decoded one.
    frames = [wanted[i] if wanted[i] is not None else wanted[min(decoded, key=lambda d: abs(d - i))] for i in chosen]
    return np.stack(frames).transpose(0, 3, 1, 2).copy()


def read_image(path: Path, size: int) -> np.ndarray:
    """One still image (JPEG, PNG) as uint8 ``[1, 3, S, S]``, decoded and resized by FFmpeg."""
    try:
        with av.open(str(path)) as container:
            frame = next(container.decode(video=0), None)
            if frame is None:
                raise CorruptClipError(path, "image decodes to nothing")
            rgb = frame.to_ndarray(width=size, height=size, format="rgb24", interpolation="AREA")
    except _DECODE_ERRORS as exc:
        if isinstance(exc, CorruptClipError):
            raise
        raise CorruptClipError(path, f"{type(exc).__name__}: {exc}") from exc
    return rgb.transpose(2, 0, 1)[None].copy()
