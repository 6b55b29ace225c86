"""Log-mel spectrograms with plain ``torch`` (no librosa, no torchaudio).

torchaudio has no build that loads with the pinned torch, and librosa would pull numba, so
the mel filterbank is computed here. Two mel scales are offered:

* ``"htk"``: ``mel = 2595 * log10(1 + f / 700)`` (HTK, also torchaudio's default);
* ``"slaney"``: linear below 1 kHz (``mel = 3 f / 200``), logarithmic above
  (``mel = 15 + 27 * ln(f / 1000) / ln(6.4)``), as in Slaney's Auditory Toolbox and
  librosa's default.

Triangles are spaced evenly on the chosen mel scale between ``f_min`` and ``f_max``;
``norm="slaney"`` divides each triangle by its bandwidth in Hz (``2 / (f_hi - f_lo)``) so
that every filter has the same area, like librosa's default.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

MEL_SCALES = ("htk", "slaney")

_SLANEY_F_SP = 200.0 / 3.0  # Hz per mel below the break frequency
_SLANEY_MIN_LOG_HZ = 1000.0
_SLANEY_MIN_LOG_MEL = _SLANEY_MIN_LOG_HZ / _SLANEY_F_SP  # 15 mel
_SLANEY_LOG_STEP = math.log(6.4) / 27.0


def hz_to_mel(freq: torch.Tensor, scale: str = "slaney") -> torch.Tensor:
    """Convert frequencies in Hz to mels on the HTK or Slaney scale."""
    freq = torch.as_tensor(freq, dtype=torch.float64)
    if scale == "htk":
        return 2595.0 * torch.log10(1.0 + freq / 700.0)
    if scale == "slaney":
        linear = freq / _SLANEY_F_SP
        log = _SLANEY_MIN_LOG_MEL + torch.log(freq.clamp_min(1e-10) / _SLANEY_MIN_LOG_HZ) / _SLANEY_LOG_STEP
        return torch.where(freq >= _SLANEY_MIN_LOG_HZ, log, linear)
    raise ValueError(f"mel scale must be one of {MEL_SCALES}, got {scale!r}")


def mel_to_hz(mel: torch.Tensor, scale: str = "slaney") -> torch.Tensor:
    """Inverse of :func:`hz_to_mel`."""
    mel = torch.as_tensor(mel, dtype=torch.float64)
    if scale == "htk":
        return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)
    if scale == "slaney":
        linear = mel * _SLANEY_F_SP
        log = _SLANEY_MIN_LOG_HZ * torch.exp(_SLANEY_LOG_STEP * (mel - _SLANEY_MIN_LOG_MEL))
        return torch.where(mel >= _SLANEY_MIN_LOG_MEL, log, linear)
    raise ValueError(f"mel scale must be one of {MEL_SCALES}, got {scale!r}")


def mel_filterbank(
    sample_rate: int,
    n_fft: int,
    n_mels: int,
    f_min: float = 0.0,
    f_max: float | None = None,
    scale: str = "slaney",
    norm: str | None = "slaney",
) -> torch.Tensor:
    """Triangular mel filters as a ``[n_mels, n_fft // 2 + 1]`` float32 matrix."""
    f_max = sample_rate / 2.0 if f_max is None else f_max
    if not 0.0 <= f_min < f_max <= sample_rate / 2.0:
        raise ValueError(f"need 0 <= f_min < f_max <= sample_rate/2, got f_min={f_min}, f_max={f_max}")
    fft_freqs = torch.linspace(0.0, sample_rate / 2.0, n_fft // 2 + 1, dtype=torch.float64)
    mel_edges = torch.linspace(
        float(hz_to_mel(torch.tensor(f_min), scale)),
        float(hz_to_mel(torch.tensor(f_max), scale)),
        n_mels + 2,
        dtype=torch.float64,
    )
    hz_edges = mel_to_hz(mel_edges, scale)
    lower, center, upper = hz_edges[:-2, None], hz_edges[1:-1, None], hz_edges[2:, None]
    rising = (fft_freqs[None, :] - lower) / (center - lower)
    falling = (upper - fft_freqs[None, :]) / (upper - center)
    weights = torch.clamp(torch.minimum(rising, falling), min=0.0)
    if norm == "slaney":
        weights = weights * (2.0 / (upper - lower))
    elif norm is not None:
        raise ValueError(f"norm must be 'slaney' or None, got {norm!r}")
    return weights.to(torch.float32)


def power_spectrogram(wave: torch.Tensor, n_fft: int, hop_length: int) -> torch.Tensor:
    """``|STFT|^2`` with a periodic Hann window and centred (reflect-padded) frames.

    ``wave`` is ``[..., samples]``; the result is ``[..., n_fft // 2 + 1, frames]`` with
    ``frames = 1 + samples // hop_length``.
    """
    lead = wave.shape[:-1]
    flat = wave.reshape(-1, wave.shape[-1]).to(torch.float32)
    window = torch.hann_window(n_fft, periodic=True, dtype=torch.float32)
    spec = torch.stft(
        flat, n_fft=n_fft, hop_length=hop_length, window=window, center=True, pad_mode="reflect", return_complex=True
    )
    power = spec.real.square() + spec.imag.square()
    return power.reshape(*lead, *power.shape[-2:])


def log_mel_spectrogram(
    wave: torch.Tensor,
    sample_rate: int,
    n_fft: int = 512,
    hop_length: int = 256,
    n_mels: int = 64,
    f_min: float = 0.0,
    f_max: float | None = None,
    scale: str = "slaney",
    top_db: float = 80.0,
) -> torch.Tensor:
    """Log-mel spectrogram in dB relative to each clip's maximum, floored at ``-top_db``.

    Referencing each clip to its own peak removes loudness differences between voices and
    recordings; the floor keeps near-silent bins from dominating. Returns
    ``[..., n_mels, frames]`` float32 in ``[-top_db, 0]``.
    """
    fbank = mel_filterbank(sample_rate, n_fft, n_mels, f_min, f_max, scale=scale)
    mel = torch.matmul(fbank, power_spectrogram(wave, n_fft, hop_length))
    db = 10.0 * torch.log10(mel.clamp_min(1e-10))
    peak = db.amax(dim=(-2, -1), keepdim=True)
    return torch.clamp(db - peak, min=-top_db)


def resize_2d(image: torch.Tensor, size: int | tuple[int, int]) -> torch.Tensor:
    """Bilinearly resize the last two dims of ``[..., H, W]`` (any number of leading dims)."""
    out_hw = (size, size) if isinstance(size, int) else tuple(size)
    if tuple(image.shape[-2:]) == out_hw:
        return image
    lead = image.shape[:-2]
    flat = image.reshape(-1, 1, *image.shape[-2:]).to(torch.float32)
    resized = F.interpolate(flat, size=out_hw, mode="bilinear", align_corners=False, antialias=True)
    return resized.reshape(*lead, *out_hw)
