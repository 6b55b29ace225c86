"""Loaders of CREMA-D, AVE and UrbanSound8K-AV on tiny fixtures in the real layouts, with real media."""

from __future__ import annotations

import json
import shutil
import sys
import warnings
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile as sf
import torch

from snnergy.data import media
from snnergy.data.ave import AVE
from snnergy.data.common import AnnotationError, DataWarning, read_split_file
from snnergy.data.cremad import CLIP_TEST_FRACTION, DEV_ACTORS, EMOTIONS, TEST_ACTORS, CremaD, actor_of
from snnergy.data.media import AudioParams, CorruptClipError
from snnergy.data.us8k import UrbanSound8KAV

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the fixture builders sit next to this file
import fixtures_media as fm  # noqa: E402

T, S = 4, 8
OPTS = {"image_size": S, "time_steps": T, "progress": False}


@pytest.fixture(scope="session")
def cremad_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cremad")
    fm.make_cremad(root)
    return root


@pytest.fixture(scope="session")
def ave_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("ave")
    fm.make_ave(root)
    return root


@pytest.fixture(scope="session")
def smmt_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("smmt")
    fm.make_us8k_smmt(root)
    return root


@pytest.fixture(scope="session")
def meta_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("us8kmeta")
    fm.make_us8k_metadata(root)
    return root


def copy_of(root: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(root, tmp_path / root.name))


def all_splits(cls: type, root: Path, cache: Path, **kwargs) -> dict[str, object]:
    return {s: cls(root, s, cache_dir=cache, **OPTS, **kwargs) for s in ("train", "val", "test")}


def check_item(ds) -> None:
    audio, video, label = ds[0]
    assert audio.shape == (T, 1, S, S) and audio.dtype == torch.float32
    assert video.shape == (T, 3, S, S) and video.dtype == torch.float32
    assert float(video.min()) >= 0.0 and float(video.max()) <= 1.0
    assert float(audio.min()) >= 0.0 and float(audio.max()) <= 1.0 and float(audio.std()) > 0
    assert isinstance(label, int) and 0 <= label < ds.num_classes == len(ds.class_names)


# ----------------------------------------------------------------------------- media


def test_frames_are_sampled_at_segment_centres(tmp_path: Path) -> None:
    clip = fm.write_video(tmp_path / "a.flv", 8, "flv", "flv")
    red = media.read_frames(clip, 4, fm.SIZE)[:, 0].mean(axis=(1, 2))  # frames 1, 3, 5, 7
    np.testing.assert_allclose(red, [fm.frame_level(i) for i in (1, 3, 5, 7)], atol=4)
    mp4 = fm.write_video(tmp_path / "b.mp4", 20, "mp4", "h264", audio_rate=16000)
    red = media.read_frames(mp4, 4, fm.SIZE, window=(1.0, 2.0))[:, 0].mean(axis=(1, 2))  # 1.125 .. 1.875 s
    np.testing.assert_allclose(red, [fm.frame_level(i) for i in (11, 14, 16, 19)], atol=4)
    assert media.read_frames(clip, 12, 4).shape == (12, 3, 4, 4)  # more steps than frames: frames repeat


def test_audio_is_mono_and_resampled(tmp_path: Path) -> None:
    wav = fm.write_wav(tmp_path / "s.wav", 0.5, 44100, 2)
    assert sf.info(str(wav)).samplerate == 44100
    wave = media.read_wav(wav, 16000)
    assert wave.ndim == 1 and wave.dtype == np.float32 and abs(len(wave) - 8000) <= 1
    mp4 = fm.write_video(tmp_path / "b.mp4", 20, "mp4", "h264", audio_rate=22050)
    assert abs(len(media.read_container_audio(mp4, 16000, (0.5, 1.5))) - 16000) <= 1
    chunks = media.audio_image(wave, AudioParams(encoding="chunks"), S, T)
    assert chunks.shape == (T, 1, S, S) and not torch.equal(chunks[0], chunks[1])
    assert media.audio_image(wave, AudioParams(seconds=2.0), S, T).shape == (1, 1, S, S)


# ----------------------------------------------------------------------------- CREMA-D


def test_cremad_items_labels_and_split_file(cremad_root: Path, tmp_path: Path) -> None:
    splits = all_splits(CremaD, cremad_root, tmp_path)
    train = splits["train"]
    assert train.class_names == list(EMOTIONS) and train.num_classes == 6
    check_item(train)
    for record, label in zip(train.records, train.labels):
        assert EMOTIONS[label] == record.key.split("_")[2]
    actors = {s: {actor_of(r.key) for r in ds.records} for s, ds in splits.items()}
    assert actors["test"] == set(TEST_ACTORS) & set(fm.CREMAD_ACTORS)
    assert actors["val"] == set(DEV_ACTORS) & set(fm.CREMAD_ACTORS)
    assert not (actors["train"] & actors["val"] or actors["train"] & actors["test"] or actors["val"] & actors["test"])
    doc = read_split_file(train.split_path, "cremad")
    assert doc["mode"] == "speaker-independent" and doc["subject_disjoint"] is True and doc["seed"] is None
    assert doc["splits"]["test"] == [r.key for r in splits["test"].records]
    again = CremaD(cremad_root, "test", split_file=train.split_path, cache_dir=tmp_path, **OPTS)
    assert [r.key for r in again.records] == doc["splits"]["test"]


def test_cremad_actor_random_is_disjoint_and_seeded(cremad_root: Path, tmp_path: Path) -> None:
    def actors(seed: int) -> dict[str, set[int]]:
        doc = read_split_file(
            CremaD(cremad_root, "train", cache_dir=tmp_path, seed=seed, split_mode="actor-random", **OPTS).split_path
        )
        assert doc["seed"] == seed and doc["mode"] == "actor-random"
        return {s: {actor_of(k) for k in keys} for s, keys in doc["splits"].items()}

    first = actors(0)
    assert [len(first[s]) for s in ("train", "val", "test")] == [5, 1, 2]  # round(8 * 17/91) = 1, round(8 * 18/91) = 2
    assert set().union(*first.values()) == set(fm.CREMAD_ACTORS)
    assert sum(len(a) for a in first.values()) == len(fm.CREMAD_ACTORS)  # no actor in two splits
    assert actors(0) == first
    assert any(actors(seed) != first for seed in (1, 2, 3))


def test_cremad_clip_random_ratio_and_seed(cremad_root: Path, tmp_path: Path) -> None:
    def split(seed: int) -> dict[str, list[str]]:
        ds = CremaD(cremad_root, "test", cache_dir=tmp_path, seed=seed, split_mode="clip-random", **OPTS)
        return read_split_file(ds.split_path)

    doc = split(0)
    n = len(fm.CREMAD_ACTORS) * 6
    assert set(doc["splits"]) == {"train", "test"} and doc["subject_disjoint"] is False
    assert len(doc["splits"]["test"]) == int(np.floor(n * CLIP_TEST_FRACTION + 0.5)) == 5
    assert sorted(doc["splits"]["train"] + doc["splits"]["test"]) == sorted(
        p.stem for p in (cremad_root / "AudioWAV").glob("*.wav")
    )
    assert int(np.floor(7442 * CLIP_TEST_FRACTION + 0.5)) == 744  # 6698 / 744 on the full set
    assert split(0)["splits"] == doc["splits"] and split(1)["splits"] != doc["splits"]
    with pytest.raises(ValueError, match="'val' does not exist.*available: train, test"):
        CremaD(cremad_root, "val", cache_dir=tmp_path, split_mode="clip-random", **OPTS)


def test_cache_is_reused_without_decoding(cremad_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = CremaD(cremad_root, "val", cache_dir=tmp_path, **OPTS)
    items = [first[i] for i in range(len(first))]
    entries = sorted(first.cache_path.glob("*.npz"))
    assert len(entries) == len(first) and json.loads((first.cache_path / "params.json").read_text())["image_size"] == S

    def no_decoding(*args, **kwargs):
        raise AssertionError("media decoded although the cache holds every clip")

    monkeypatch.setattr(av, "open", no_decoding)
    monkeypatch.setattr(sf, "read", no_decoding)
    second = CremaD(cremad_root, "val", cache_dir=tmp_path, **OPTS)
    for i, (audio, video, label) in enumerate(second[i] for i in range(len(second))):
        assert torch.equal(audio, items[i][0]) and torch.equal(video, items[i][1]) and label == items[i][2]
    with pytest.raises(AssertionError, match="media decoded"):  # other parameters -> other cache entries
        CremaD(cremad_root, "val", cache_dir=tmp_path, **{**OPTS, "image_size": S + 2})


def test_cremad_missing_paths_are_named(cremad_root: Path, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="cremad data root") as err:
        CremaD(tmp_path / "nowhere", cache_dir=tmp_path, **OPTS)
    assert str(tmp_path / "nowhere") in str(err.value)
    root = copy_of(cremad_root, tmp_path)
    (root / "VideoFlash" / "1002_DFA_SAD_XX.flv").unlink()
    with pytest.raises(FileNotFoundError, match="1 CREMA-D videos .* missing: .*VideoFlash/1002_DFA_SAD_XX.flv"):
        CremaD(root, cache_dir=tmp_path, **OPTS)
    shutil.rmtree(root / "VideoFlash")
    with pytest.raises(FileNotFoundError, match="CREMA-D video folder") as err:
        CremaD(root, cache_dir=tmp_path, **OPTS)
    assert str(root / "VideoFlash") in str(err.value)


def test_corrupt_clip_is_skipped_counted_or_raised(cremad_root: Path, tmp_path: Path) -> None:
    root = copy_of(cremad_root, tmp_path)
    fm.corrupt(root / "VideoFlash" / "1001_DFA_HAP_XX.flv")
    fm.corrupt(root / "AudioWAV" / "1002_DFA_ANG_XX.wav")
    with pytest.warns(DataWarning, match=r"skipped 2 corrupt clips: .*1001_DFA_HAP_XX\.flv"):
        ds = CremaD(root, "train", cache_dir=tmp_path / "c1", **OPTS)
    assert [key for key, _ in ds.skipped] == ["1001_DFA_HAP_XX", "1002_DFA_ANG_XX"]
    assert len(ds) == 4 * 6 - 2 and "1001_DFA_HAP_XX" not in {r.key for r in ds.records}
    with pytest.warns(DataWarning, match="skipped 2 corrupt clips"):  # never silently, also on later runs
        CremaD(root, "train", cache_dir=tmp_path / "c1", **OPTS)
    with pytest.raises(CorruptClipError, match=r"1001_DFA_HAP_XX\.flv|1002_DFA_ANG_XX\.wav"):
        CremaD(root, "train", cache_dir=tmp_path / "c2", strict=True, **OPTS)


def test_parallel_decoding_matches_serial(cremad_root: Path, tmp_path: Path) -> None:
    serial = CremaD(cremad_root, "test", cache_dir=tmp_path / "a", **OPTS)
    threaded = CremaD(cremad_root, "test", cache_dir=tmp_path / "b", workers=2, **OPTS)
    for i in range(len(serial)):
        assert all(torch.equal(x, y) for x, y in zip(serial[i][:2], threaded[i][:2]))


# ----------------------------------------------------------------------------- AVE


def test_ave_official_split_reports_duplicates_and_overlaps(ave_root: Path, tmp_path: Path) -> None:
    with pytest.warns(DataWarning) as caught:
        splits = all_splits(AVE, ave_root, tmp_path)
    messages = " | ".join(str(w.message) for w in caught)
    assert "trainSet.txt lists 1 video IDs more than once (1 extra lines" in messages
    assert "1 video IDs are in both trainSet.txt and testSet.txt" in messages
    train = splits["train"]
    assert train.class_names == sorted(fm.AVE_CLASSES) and train.num_classes == 3  # header line skipped
    assert [len(splits[s]) for s in ("train", "val", "test")] == [4, 2, 2]  # kept as the files say
    assert train.id_report["duplicates"]["train"] == {"vid00": 2}
    assert train.id_report["overlaps"]["train&test"] == ["vid01"]
    doc = read_split_file(train.split_path, "ave")
    assert doc["id_report"]["overlaps"]["train&test"] == ["vid01"] and doc["counts"]["train"] == 4
    check_item(train)
    assert {train.class_names[label] for label in train.labels} == {"Church bell", "Dog", "Male speech, man speaking"}


@pytest.mark.filterwarnings("ignore::snnergy.data.common.DataWarning")
def test_ave_event_window_selects_frames(ave_root: Path, tmp_path: Path) -> None:
    event = AVE(ave_root, "val", cache_dir=tmp_path, **{**OPTS, "image_size": fm.SIZE})
    clip = AVE(ave_root, "val", cache_dir=tmp_path, window="clip", **{**OPTS, "image_size": fm.SIZE})
    red_event = event[0][1][:, 0].mean(dim=(1, 2)) * 255
    red_clip = clip[0][1][:, 0].mean(dim=(1, 2)) * 255
    np.testing.assert_allclose(red_event.numpy(), [fm.frame_level(i) for i in (11, 14, 16, 19)], atol=4)
    np.testing.assert_allclose(red_clip.numpy(), [fm.frame_level(i) for i in (2, 7, 12, 17)], atol=4)


def test_ave_without_header_and_malformed_lines(ave_root: Path, tmp_path: Path) -> None:
    bare = tmp_path / "bare"
    fm.make_ave(bare, header=False)
    with pytest.warns(DataWarning):
        assert AVE(bare, "train", cache_dir=tmp_path, **OPTS).class_names == sorted(fm.AVE_CLASSES)
    root = copy_of(ave_root, tmp_path)
    lines = (root / "trainSet.txt").read_text().splitlines()
    lines[2] = "Dog&vid01&good&ten"
    (root / "trainSet.txt").write_text("\n".join(lines) + "\n")
    with pytest.raises(AnnotationError, match=r"trainSet\.txt:3: expected Category&VideoID"):
        AVE(root, cache_dir=tmp_path, **OPTS)
    lines[2] = "Dog&vid01&good&4&2"
    (root / "trainSet.txt").write_text("\n".join(lines) + "\n")
    with pytest.raises(AnnotationError, match=r"trainSet\.txt:3: need 0 <= StartTime < EndTime"):
        AVE(root, cache_dir=tmp_path, **OPTS)
    (root / "testSet.txt").unlink()
    with pytest.raises(FileNotFoundError, match="AVE annotation file") as err:
        AVE(root, cache_dir=tmp_path, **OPTS)
    assert str(root / "testSet.txt") in str(err.value)


def test_ave_missing_video_is_named(ave_root: Path, tmp_path: Path) -> None:
    root = copy_of(ave_root, tmp_path)
    (root / "AVE" / "vid04.mp4").unlink()
    with pytest.raises(FileNotFoundError, match=r"1 AVE videos .*missing: .*AVE/vid04\.mp4"):
        AVE(root, cache_dir=tmp_path, **OPTS)


# ----------------------------------------------------------------------------- UrbanSound8K-AV


def test_us8k_smmt_stratified_and_deterministic(smmt_root: Path, tmp_path: Path) -> None:
    splits = all_splits(UrbanSound8KAV, smmt_root, tmp_path / "a")
    train = splits["train"]
    assert train.class_names == list(fm.US8K_CLASSES) and train.layout == "smmt"
    for name, ds in splits.items():
        counts = np.bincount(ds.labels, minlength=3).tolist()
        assert counts == ([8, 8, 8] if name == "train" else [1, 1, 1])
    keys = {s: [r.key for r in ds.records] for s, ds in splits.items()}
    on_disk = sorted(f"{p.parent.name}/{p.stem}" for p in (smmt_root / "Dataset_v3_vision").glob("*/*.jpg"))
    assert sorted(keys["train"] + keys["val"] + keys["test"]) == on_disk and len(on_disk) == 30
    again = {s: [r.key for r in ds.records] for s, ds in all_splits(UrbanSound8KAV, smmt_root, tmp_path / "b").items()}
    assert again == keys
    other = read_split_file(UrbanSound8KAV(smmt_root, "test", cache_dir=tmp_path / "a", seed=7, **OPTS).split_path)
    assert other["seed"] == 7 and other["splits"] != read_split_file(train.split_path)["splits"]
    audio, video, label = train[0]
    check_item(train)
    assert torch.equal(video[0], video[-1])  # one still image over all steps
    colour = torch.tensor(fm.US8K_COLORS[label], dtype=torch.float32) / 255
    torch.testing.assert_close(video[0].mean(dim=(1, 2)), colour, atol=0.03, rtol=0)


def test_us8k_metadata_layout(meta_root: Path, tmp_path: Path) -> None:
    ds = UrbanSound8KAV(meta_root, "train", cache_dir=tmp_path, **OPTS)
    assert ds.layout == "metadata" and ds.class_names == ["air_conditioner", "car_horn", "dog_bark"]
    assert {r.key.split("-")[1] for r, label in zip(ds.records, ds.labels) if label == 2} == {
        "3"
    }  # classID 3 is rank 2
    assert all(r.audio.parent.name == f"fold{int(r.key.split('-')[-1]) % 10 + 1}" for r in ds.records)
    check_item(ds)
    root = copy_of(meta_root, tmp_path)
    (root / "images" / "100-1-0-0.jpg").unlink()
    with pytest.raises(FileNotFoundError, match=r"images/100-1-0-0\.jpg"):
        UrbanSound8KAV(root, cache_dir=tmp_path, **OPTS)
    table = root / "metadata" / "UrbanSound8K.csv"
    lines = table.read_text().splitlines()
    lines[4] = "103-0-0-3.wav,103,0.0,0.25,1,four,0,air_conditioner"
    table.write_text("\n".join(lines) + "\n")
    with pytest.raises(AnnotationError, match=r"UrbanSound8K\.csv:5: fold and classID must be integers"):
        UrbanSound8KAV(root, cache_dir=tmp_path, **OPTS)
    lines[4] = "103-0-0-3.wav,103,0.0"
    table.write_text("\n".join(lines) + "\n")
    with pytest.raises(AnnotationError, match=r"UrbanSound8K\.csv:5: expected 8 fields, got 3"):
        UrbanSound8KAV(root, cache_dir=tmp_path, **OPTS)


def test_us8k_corrupt_image_and_missing_layout(smmt_root: Path, tmp_path: Path) -> None:
    root = copy_of(smmt_root, tmp_path)
    corrupt_clip = sorted((root / "Dataset_v3_vision" / "car_horn").glob("*.jpg"))[0]
    fm.corrupt(corrupt_clip)
    skipped = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for split in ("train", "val", "test"):
            skipped += UrbanSound8KAV(root, split, cache_dir=tmp_path, **OPTS).skipped
    assert [key for key, _ in skipped] == [f"car_horn/{corrupt_clip.stem}"]
    assert [str(w.message) for w in caught if "corrupt" in str(w.message)][0].count("skipped 1 corrupt clips") == 1
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="Dataset_v3_vision.*UrbanSound8K.csv"):
        UrbanSound8KAV(empty, cache_dir=tmp_path, **OPTS)
