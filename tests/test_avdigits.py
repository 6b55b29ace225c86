"""The embedded avdigits benchmark: format, held-out voices and images, cache, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from snnergy.data import avdigits
from snnergy.data.avdigits import AVDigits, AVDigitsSpec, EspeakMissingError, build_avdigits, cache_path
from snnergy.data.cache import load_npz

SMALL = AVDigitsSpec(
    train_pairs=40,
    val_pairs=20,
    test_pairs=20,
    accents=("en", "en-us"),
    variants=("m1", "m2", "m3", "f1", "f2", "f3", "klatt"),
    val_variants=2,
    test_variants=2,
)


@pytest.fixture(scope="module")
def small_cache(tmp_path_factory):
    cache = tmp_path_factory.mktemp("avdigits-small")
    build_avdigits(cache, seed=0, progress=False, spec=SMALL)
    return cache


def dataset(cache, split="train", **kwargs):
    options = dict(image_size=16, time_steps=3, cache_dir=cache, progress=False, spec=SMALL)
    options.update(kwargs)
    return AVDigits(split, **options)


def test_items_follow_the_model_contract(small_cache):
    data = dataset(small_cache)
    assert len(data) == 40 and data.num_classes == 10 and data.class_names[3] == "three"
    audio, video, label = data[0]
    assert audio.shape == (3, 1, 16, 16) and video.shape == (3, 3, 16, 16)
    assert audio.dtype == video.dtype == torch.float32 and isinstance(label, int)
    assert torch.equal(audio[0], audio[2]) and torch.equal(video[0], video[1])  # direct encoding over T
    assert video.min() >= 0.0 and video.max() <= 1.0
    assert {int(data[i][2]) for i in range(len(data))} <= set(range(10))
    # classes are balanced: 40 training pairs -> 4 of each digit
    assert np.bincount(data.labels.numpy(), minlength=10).tolist() == [4] * 10


def test_test_voices_and_images_are_never_seen_in_training(small_cache):
    splits = {s: dataset(small_cache, s) for s in ("train", "val", "test")}
    variants = {s: set(d.variants.tolist()) for s, d in splits.items()}
    images = {s: set(d.image_indices.tolist()) for s, d in splits.items()}
    for held_out in ("val", "test"):
        assert not variants[held_out] & variants["train"]
        assert not images[held_out] & images["train"]
    assert not variants["val"] & variants["test"] and not images["val"] & images["test"]


def test_single_modality_views_zero_the_other_input(small_cache):
    both, audio_only, video_only = (dataset(small_cache, "test", modality=m) for m in ("both", "audio", "video"))
    a, v, _ = both[5]
    assert torch.equal(audio_only[5][0], a) and not audio_only[5][1].any()
    assert torch.equal(video_only[5][1], v) and not video_only[5][0].any()


def test_build_is_deterministic_and_cached(small_cache, tmp_path, monkeypatch):
    path = cache_path(small_cache, 0, SMALL)
    again = build_avdigits(tmp_path, seed=0, progress=False, spec=SMALL)
    first, second = load_npz(path), load_npz(again)
    for key in ("label", "image_index", "audio", "video", "voice"):
        assert np.array_equal(first[key], second[key]), key
    other_seed = load_npz(build_avdigits(tmp_path, seed=1, progress=False, spec=SMALL))
    assert not np.array_equal(first["image_index"], other_seed["image_index"])

    def no_synthesis(*args, **kwargs):
        raise AssertionError("the cached build must not be synthesised again")

    monkeypatch.setattr(avdigits, "_synthesise_all", no_synthesis)
    mtime = path.stat().st_mtime_ns
    assert build_avdigits(small_cache, seed=0, progress=False, spec=SMALL) == path
    assert len(dataset(small_cache, image_size=8, time_steps=2)) == 40  # other S and T reuse the same file
    assert path.stat().st_mtime_ns == mtime


def test_an_interrupted_build_leaves_no_file(tmp_path, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(avdigits, "_render", interrupted)
    with pytest.raises(KeyboardInterrupt):
        build_avdigits(tmp_path, seed=0, progress=False, spec=SMALL)
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]


def test_clear_errors(small_cache, tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="valid splits: train, val, test"):
        dataset(small_cache, "dev")
    with pytest.raises(ValueError, match="unknown modality"):
        dataset(small_cache, modality="smell")
    monkeypatch.setattr(avdigits.shutil, "which", lambda name: None)
    with pytest.raises(EspeakMissingError, match="apt-get install -y espeak-ng"):
        build_avdigits(tmp_path, seed=0, progress=False, spec=SMALL)
