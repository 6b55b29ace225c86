"""``avdigits``: the embedded audio-visual benchmark that needs no download.

Each sample is one digit 0-9 *seen* (an 8x8 scikit-learn digit image) and *heard* (the
digit's English word spoken by ``espeak-ng``). The two sensors fail in opposite
directions: a per-sample "see-saw" value ``m ~ U(0, 1)`` drowns the audio in white noise
(SNR falls from +20 dB at ``m = 0`` to -25 dB at ``m = 1``) while it occludes and noises
the image the other way round (a grey square covering up to the whole frame at
``m = 0``, nothing at ``m = 1``). So each modality alone is reliable on only part of the
data and plateaus well below what the pair reaches: fusion has to matter. See
``docs/avdigits.md`` for the design, the numbers and how to reproduce them.

Generalisation is tested, not memorised: every image belongs to one split only, and the
voices of the test (and validation) split never occur in training. A *voice* is an
espeak-ng English accent combined with a voice variant (timbre); the variants are split
disjointly, so no test variant is ever heard in training, with any accent.

The build takes some ten seconds on two cores, is cached as one compressed ``.npz`` keyed
by a hash of its parameters (``snnergy.data.cache``), and is resized and time-encoded on
access so that any ``image_size``/``time_steps`` reuse the same file.

Run ``python -m snnergy.data.avdigits --probe`` for linear-probe accuracies per modality.
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from torch.utils.data import Dataset

from snnergy.data.audio_features import log_mel_spectrogram, resize_2d
from snnergy.data.cache import atomic_save_npz, dataset_cache_dir, load_npz, params_hash
from snnergy.data.encoding import encode_time

CLASS_NAMES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
SPLITS = ("train", "val", "test")
MODALITIES = ("both", "audio", "video")
ESPEAK_PACKAGE = "espeak-ng"

# espeak-ng's built-in English accents (language voices) ...
ACCENTS = ("en", "en-us", "en-gb-scotland", "en-gb-x-gbclan", "en-gb-x-rp", "en-gb-x-gbcwmd", "en-029", "en-us-nyc")
# ... and voice variants (timbre, pitch range, breathiness); speaker = accent + variant.
VARIANTS = (
    "m1",
    "m2",
    "m3",
    "m4",
    "m5",
    "m6",
    "m7",
    "m8",
    "f1",
    "f2",
    "f3",
    "f4",
    "f5",
    "klatt",
    "klatt2",
    "klatt3",
    "klatt4",
    "adam",
    "alex",
    "annie",
    "belinda",
    "boris",
    "david",
    "ed",
    "iven",
    "john",
    "linda",
    "max",
    "michel",
    "norbert",
    "paul",
    "quincy",
    "rob",
    "robert",
    "steph",
    "travis",
    "victor",
    "whisper",
    "croak",
    "Storm",
)

# Base resolution stored in the cache; resized to image_size on access.
IMAGE_BASE = 32
N_MELS = 64
SAMPLE_RATE = 22050  # espeak-ng's output rate
N_FFT = 512  # 23 ms
HOP = 352  # 16 ms; a window of 63 hops gives exactly 64 frames
WINDOW = 63 * HOP  # 1.006 s of audio per sample
F_MAX = 8000.0
TOP_DB = 80.0
SPEED_WPM = (110, 200)
PITCH = (25, 75)


@dataclass(frozen=True)
class Degradation:
    """How the see-saw value ``m`` in [0, 1] degrades each modality (part of the cache key).

    Each quantity is interpolated linearly from its value at ``m = 0`` to that at
    ``m = 1``; the occluder side (a fraction of the frame) is clipped to [0, 1], so values
    past 1 make the image fully occluded over a range of ``m``.
    """

    snr_db_at: tuple[float, float] = (20.0, -25.0)  # audio SNR in dB at m = 0 and m = 1
    occluder_at: tuple[float, float] = (1.0, 0.0)  # occluder side / frame side
    pixel_noise_at: tuple[float, float] = (0.4, 0.05)  # std of Gaussian pixel noise

    @staticmethod
    def _lerp(ends: tuple[float, float], m: float) -> float:
        return ends[0] + (ends[1] - ends[0]) * m

    def snr_db(self, m: float) -> float:
        return self._lerp(self.snr_db_at, m)

    def occluder(self, m: float) -> float:
        return min(1.0, max(0.0, self._lerp(self.occluder_at, m)))

    def pixel_noise(self, m: float) -> float:
        return max(0.0, self._lerp(self.pixel_noise_at, m))


@dataclass(frozen=True)
class AVDigitsSpec:
    """Everything a build depends on besides the seed; tests shrink it for speed."""

    train_pairs: int = 2000
    val_pairs: int = 500
    test_pairs: int = 500
    image_fractions: tuple[float, float, float] = (0.6, 0.2, 0.2)
    accents: tuple[str, ...] = ACCENTS
    variants: tuple[str, ...] = VARIANTS
    val_variants: int = 6
    test_variants: int = 6
    degradation: Degradation = Degradation()
    version: int = 1

    def pairs(self, split: str) -> int:
        return {"train": self.train_pairs, "val": self.val_pairs, "test": self.test_pairs}[split]


DEFAULT_SPEC = AVDigitsSpec()


class EspeakMissingError(RuntimeError):
    """espeak-ng is needed to synthesise the spoken digits."""


# ----------------------------------------------------------------------------- planning


def _split_images(
    labels: np.ndarray, fractions: tuple[float, float, float], rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """Stratified, disjoint image-index split (each image in exactly one split)."""
    parts: dict[str, list[np.ndarray]] = {s: [] for s in SPLITS}
    for cls in range(len(CLASS_NAMES)):
        idx = rng.permutation(np.flatnonzero(labels == cls))
        n_train = int(round(fractions[0] * len(idx)))
        n_val = int(round(fractions[1] * len(idx)))
        for split, chunk in zip(SPLITS, (idx[:n_train], idx[n_train : n_train + n_val], idx[n_train + n_val :])):
            parts[split].append(chunk)
    return {s: np.sort(np.concatenate(parts[s])) for s in SPLITS}


def _split_variants(spec: AVDigitsSpec, rng: np.random.Generator) -> dict[str, list[str]]:
    """Disjoint voice variants per split: test and val timbres are never heard in training."""
    order = [spec.variants[i] for i in rng.permutation(len(spec.variants))]
    n_test, n_val = spec.test_variants, spec.val_variants
    if n_test < 1 or n_val < 1 or n_test + n_val >= len(order):
        raise ValueError(f"need >= 1 val/test variant and some left for train, got {len(order)} variants")
    return {"test": order[:n_test], "val": order[n_test : n_test + n_val], "train": order[n_test + n_val :]}


def _plan_split(
    split: str,
    n_pairs: int,
    images: np.ndarray,
    labels: np.ndarray,
    variants: list[str],
    spec: AVDigitsSpec,
    rng: np.random.Generator,
) -> dict[str, np.ndarray]:
    """Class-balanced pairs: an image of the class, a voice of the split, and the see-saw m."""
    label = np.resize(np.arange(len(CLASS_NAMES)), n_pairs)
    rng.shuffle(label)
    image_index = np.empty(n_pairs, dtype=np.int64)
    for cls in range(len(CLASS_NAMES)):
        slots = np.flatnonzero(label == cls)
        pool = images[labels[images] == cls]
        # cycle through a shuffled pool so every image is used about equally often
        image_index[slots] = np.resize(rng.permutation(pool), len(slots))
    return {
        "label": label.astype(np.int64),
        "image_index": image_index,
        "accent": rng.choice(np.array(spec.accents), n_pairs),
        "variant": rng.choice(np.array(variants), n_pairs),
        "speed": rng.integers(SPEED_WPM[0], SPEED_WPM[1] + 1, n_pairs),
        "pitch": rng.integers(PITCH[0], PITCH[1] + 1, n_pairs),
        "mix": rng.uniform(0.0, 1.0, n_pairs),
        "offset": rng.uniform(0.0, 1.0, n_pairs),  # where the word starts in the free space
        "noise_seed": rng.integers(0, 2**63 - 1, n_pairs),
        "split": np.full(n_pairs, SPLITS.index(split), dtype=np.int64),
    }


def _plan(spec: AVDigitsSpec, seed: int, digit_labels: np.ndarray) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    images = _split_images(digit_labels, spec.image_fractions, rng)
    variants = _split_variants(spec, rng)
    plans = [_plan_split(s, spec.pairs(s), images[s], digit_labels, variants[s], spec, rng) for s in SPLITS]
    return {key: np.concatenate([p[key] for p in plans]) for key in plans[0]}


# ----------------------------------------------------------------------------- synthesis


def espeak_binary() -> str:
    """Path of ``espeak-ng``, or a clear error naming the Debian package to install."""
    path = shutil.which("espeak-ng")
    if path is None:
        raise EspeakMissingError(
            f"avdigits synthesises its spoken digits with espeak-ng, which is not on PATH; "
            f"install the Debian package '{ESPEAK_PACKAGE}' (apt-get install -y {ESPEAK_PACKAGE})"
        )
    return path


def synthesise(binary: str, word: str, voice: str, speed: int, pitch: int) -> np.ndarray:
    """One espeak-ng utterance as float32 samples at :data:`SAMPLE_RATE`."""
    cmd = [binary, "-v", voice, "-s", str(speed), "-p", str(pitch), "--stdout", word]
    result = subprocess.run(cmd, capture_output=True, check=True)
    wave, rate = sf.read(io.BytesIO(result.stdout), dtype="float32")
    if rate != SAMPLE_RATE or wave.size == 0:
        raise RuntimeError(f"espeak-ng gave {wave.size} samples at {rate} Hz for {cmd}")
    return wave


def _synthesise_all(plan: dict[str, np.ndarray], progress: bool) -> list[np.ndarray]:
    """All utterances, in plan order; espeak runs as subprocesses, so threads parallelise."""
    from tqdm.auto import tqdm

    binary = espeak_binary()
    jobs = [
        (CLASS_NAMES[label], f"{accent}+{variant}", int(speed), int(pitch))
        for label, accent, variant, speed, pitch in zip(
            plan["label"], plan["accent"], plan["variant"], plan["speed"], plan["pitch"]
        )
    ]
    workers = min(8, 2 * (os.cpu_count() or 1))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        waves = pool.map(lambda job: synthesise(binary, *job), jobs)
        return list(tqdm(waves, total=len(jobs), desc="avdigits: espeak-ng", unit="clip", disable=not progress))


# ----------------------------------------------------------------------------- degradation


def _place_word(wave: np.ndarray, offset: float) -> tuple[np.ndarray, slice]:
    """Trim silence, cut to the window, place the word at a relative ``offset`` of the free space."""
    loud = np.flatnonzero(np.abs(wave) > 0.02 * np.abs(wave).max())
    word = wave[loud[0] : loud[-1] + 1][:WINDOW]
    start = int(offset * (WINDOW - len(word)))
    out = np.zeros(WINDOW, dtype=np.float32)
    out[start : start + len(word)] = word
    return out, slice(start, start + len(word))


def degrade_audio(wave: np.ndarray, offset: float, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    """The placed word plus white noise at ``snr_db`` (SNR over the word's own duration)."""
    placed, span = _place_word(wave, offset)
    speech_rms = float(np.sqrt(np.mean(placed[span] ** 2)))
    noise_rms = speech_rms * 10.0 ** (-snr_db / 20.0)
    return placed + rng.normal(0.0, noise_rms, WINDOW).astype(np.float32)


def degrade_image(digit: np.ndarray, occluder: float, noise_std: float, rng: np.random.Generator) -> np.ndarray:
    """Upsample an 8x8 digit (0..16) to the base size, occlude a grey square, add noise."""
    image = torch.from_numpy(digit.astype(np.float32) / 16.0).reshape(1, 1, 8, 8)
    image = torch.nn.functional.interpolate(image, size=(IMAGE_BASE, IMAGE_BASE), mode="bilinear", align_corners=False)[
        0, 0
    ].numpy()
    side = int(round(occluder * IMAGE_BASE))
    if side > 0:
        top, left = rng.integers(0, IMAGE_BASE - side + 1, 2)
        image[top : top + side, left : left + side] = rng.uniform(0.2, 0.8)
    image = image + rng.normal(0.0, noise_std, image.shape)
    return np.clip(image, 0.0, 1.0)


def _to_uint8(x: np.ndarray | torch.Tensor, low: float, high: float) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return np.round(np.clip((x - low) / (high - low), 0.0, 1.0) * 255.0).astype(np.uint8)


def _render(
    plan: dict[str, np.ndarray], waves: list[np.ndarray], digit_images: np.ndarray, spec: AVDigitsSpec
) -> tuple[np.ndarray, np.ndarray]:
    """Degrade every pair: uint8 log-mel ``[N, 64, 64]`` and uint8 images ``[N, 32, 32]``."""
    deg = spec.degradation
    n = len(plan["label"])
    mixtures = np.empty((n, WINDOW), dtype=np.float32)
    images = np.empty((n, IMAGE_BASE, IMAGE_BASE), dtype=np.uint8)
    for i in range(n):
        m = float(plan["mix"][i])
        rng = np.random.default_rng(int(plan["noise_seed"][i]))
        mixtures[i] = degrade_audio(waves[i], float(plan["offset"][i]), deg.snr_db(m), rng)
        image = degrade_image(digit_images[plan["image_index"][i]], deg.occluder(m), deg.pixel_noise(m), rng)
        images[i] = _to_uint8(image, 0.0, 1.0)
    spectra = [
        log_mel_spectrogram(torch.from_numpy(chunk), SAMPLE_RATE, N_FFT, HOP, N_MELS, f_max=F_MAX, top_db=TOP_DB)
        for chunk in np.array_split(mixtures, max(1, n // 256))
    ]
    return _to_uint8(torch.cat(spectra), -TOP_DB, 0.0), images


# ----------------------------------------------------------------------------- build + cache


def _build_params(spec: AVDigitsSpec, seed: int) -> dict:
    return {
        "name": "avdigits",
        "seed": seed,
        "spec": asdict(spec),
        "audio": [SAMPLE_RATE, N_FFT, HOP, WINDOW, N_MELS, F_MAX, TOP_DB, SPEED_WPM, PITCH],
        "image_base": IMAGE_BASE,
    }


def cache_path(cache_dir: str | os.PathLike | None = None, seed: int = 0, spec: AVDigitsSpec = DEFAULT_SPEC) -> Path:
    """Where the build for these parameters lives (whether or not it exists yet)."""
    return dataset_cache_dir("avdigits", cache_dir) / f"avdigits-{params_hash(_build_params(spec, seed))}.npz"


def build_avdigits(
    cache_dir: str | os.PathLike | None = None, seed: int = 0, progress: bool = True, spec: AVDigitsSpec = DEFAULT_SPEC
) -> Path:
    """Build the dataset into the cache unless it is already there; return the file path."""
    path = cache_path(cache_dir, seed, spec)
    if path.exists():
        return path
    from sklearn.datasets import load_digits

    espeak_binary()  # fail fast, before any work
    digits = load_digits()
    plan = _plan(spec, seed, digits.target)
    waves = _synthesise_all(plan, progress)
    spectra, images = _render(plan, waves, digits.images, spec)
    train = plan["split"] == SPLITS.index("train")
    stats = spectra[train].astype(np.float64) / 255.0
    arrays = {
        **{k: v for k, v in plan.items() if k not in ("accent", "variant", "noise_seed")},
        "voice": np.array([f"{a}+{v}" for a, v in zip(plan["accent"], plan["variant"])]),
        "variant": plan["variant"].astype(str),
        "audio": spectra,
        "video": images,
        "audio_mean": np.float32(stats.mean()),
        "audio_std": np.float32(stats.std()),
    }
    return atomic_save_npz(path, arrays)


# ----------------------------------------------------------------------------- dataset


class AVDigits(Dataset):
    """``(audio [T,1,S,S], video [T,3,S,S], label)`` items of one avdigits split.

    ``audio`` is the log-mel spectrogram standardised with the training split's mean and
    std; ``video`` is the grey image in [0, 1] replicated to 3 channels; both are
    direct-encoded over ``time_steps``. ``modality="audio"`` (``"video"``) zeroes the
    other input, for single-modality evaluation of a fused model; for audio, zero is the
    training mean, i.e. a neutral input.
    """

    class_names = list(CLASS_NAMES)
    num_classes = len(CLASS_NAMES)

    def __init__(
        self,
        split: str,
        image_size: int,
        time_steps: int,
        cache_dir: str | os.PathLike | None = None,
        seed: int = 0,
        modality: str = "both",
        *,
        progress: bool = True,
        spec: AVDigitsSpec = DEFAULT_SPEC,
    ) -> None:
        if split not in SPLITS:
            raise ValueError(f"unknown avdigits split {split!r}; valid splits: {', '.join(SPLITS)}")
        if modality not in MODALITIES:
            raise ValueError(f"unknown modality {modality!r}; valid: {', '.join(MODALITIES)}")
        if image_size < 1 or time_steps < 1:
            raise ValueError(f"image_size and time_steps must be >= 1, got {image_size}, {time_steps}")
        self.split, self.image_size, self.time_steps, self.modality = split, image_size, time_steps, modality
        self.path = build_avdigits(cache_dir, seed, progress, spec)
        data = load_npz(self.path)
        keep = data["split"] == SPLITS.index(split)
        self.labels = torch.from_numpy(data["label"][keep])
        self.image_indices = data["image_index"][keep]
        self.voices = data["voice"][keep]
        self.variants = data["variant"][keep]
        self.mix = data["mix"][keep]
        audio = torch.from_numpy(data["audio"][keep]).float() / 255.0
        audio = (audio - float(data["audio_mean"])) / float(data["audio_std"])
        self.audio = resize_2d(audio, image_size).unsqueeze(1).contiguous()  # [N, 1, S, S]
        video = torch.from_numpy(data["video"][keep]).float() / 255.0
        self.video = resize_2d(video, image_size).clamp(0.0, 1.0).unsqueeze(1).contiguous()  # [N, 1, S, S]

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, int]:
        audio = self.audio[index]
        video = self.video[index].expand(3, -1, -1)
        if self.modality == "video":
            audio = torch.zeros_like(audio)
        elif self.modality == "audio":
            video = torch.zeros_like(video)
        return encode_time(audio, self.time_steps), encode_time(video, self.time_steps), int(self.labels[index])


# ----------------------------------------------------------------------------- probe


def _features(dataset: AVDigits) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Flattened single-step audio and video features plus labels."""
    audio = dataset.audio.flatten(1).numpy()
    video = dataset.video.flatten(1).numpy()
    return audio, video, dataset.labels.numpy()


def probe(
    cache_dir: str | os.PathLike | None = None,
    seed: int = 0,
    size: int = 16,
    spec: AVDigitsSpec = DEFAULT_SPEC,
    progress: bool = True,
) -> dict[str, float]:
    """Test accuracy of a logistic regression per input (audio, video, both concatenated).

    Features are the ``size x size`` inputs, standardised; the inverse regularisation C
    is chosen on the validation split, then the model is refit on train and scored on test.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    splits = {s: _features(AVDigits(s, size, 1, cache_dir, seed, progress=progress, spec=spec)) for s in SPLITS}
    pick = {"audio": lambda a, v: a, "video": lambda a, v: v, "both": lambda a, v: np.concatenate([a, v], axis=1)}
    results: dict[str, float] = {}
    for name, select in pick.items():
        x = {s: select(*splits[s][:2]) for s in SPLITS}
        y = {s: splits[s][2] for s in SPLITS}

        def fit(c: float, x: dict = x, y: dict = y) -> object:
            model = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=2000))
            return model.fit(x["train"], y["train"])

        best_c = max((0.001, 0.01, 0.1, 1.0), key=lambda c: fit(c).score(x["val"], y["val"]))
        results[name] = float(fit(best_c).score(x["test"], y["test"]))
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m snnergy.data.avdigits", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--cache-dir",
        default=None,
        help="directory of the cached build (default $SNNERGY_CACHE/avdigits or ~/.cache/snnergy/avdigits)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--probe", action="store_true", help="print logistic-regression test accuracy for audio, video and both"
    )
    args = parser.parse_args(argv)
    start = time.perf_counter()
    path = build_avdigits(args.cache_dir, args.seed)
    print(f"avdigits: {path} ({path.stat().st_size / 2**20:.1f} MiB, ready in {time.perf_counter() - start:.1f} s)")
    for split in SPLITS:
        print(f"  {split}: {DEFAULT_SPEC.pairs(split)} pairs")
    if args.probe:
        for name, acc in probe(args.cache_dir, args.seed).items():
            print(f"probe {name:5s} test accuracy: {acc:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
