"""Training path: schedule, checkpoints, exact resume, evaluation counts, DDP on gloo."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from torch.utils.data import Dataset

from snnergy.checkpoint import load_checkpoint
from snnergy.config import load_preset
from snnergy.evaluate import evaluate, format_report, write_report
from snnergy.recipe import TrainConfig, load_train_preset
from snnergy.train import train, warmup_cosine

MICRO = dict(image_size=16, embed_dim=16, time_steps=2, num_classes=3)


class TinyAV(Dataset):
    """Learnable toy data: the class sets the brightness of one quadrant in each modality."""

    class_names = ["a", "b", "c"]
    num_classes = 3

    def __init__(self, n: int, seed: int):
        g = torch.Generator().manual_seed(seed)
        self.labels = torch.randint(0, 3, (n,), generator=g)
        self.audio = torch.rand(n, 2, 1, 16, 16, generator=g) * 0.2
        self.video = torch.rand(n, 2, 3, 16, 16, generator=g) * 0.2
        for i, label in enumerate(self.labels.tolist()):
            self.audio[i, :, :, :8, label * 5 : label * 5 + 6] += 2.0
            self.video[i, :, :, 8:, label * 5 : label * 5 + 6] += 2.0

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i):
        return self.audio[i], self.video[i], int(self.labels[i])


def test_warmup_then_cosine():
    assert warmup_cosine(0, 100, 10) == pytest.approx(0.1)
    assert warmup_cosine(9, 100, 10) == pytest.approx(1.0)
    assert warmup_cosine(10, 100, 10) == pytest.approx(1.0)
    assert warmup_cosine(55, 100, 10) == pytest.approx(0.5)
    assert warmup_cosine(100, 100, 10) == pytest.approx(0.0)


def test_train_config_from_presets_and_errors():
    tiny = load_train_preset("tiny")
    assert tiny.batch_size == 32 and tiny.warmup_epochs == 1
    assert load_train_preset("b").epochs == 100 and load_train_preset("b").batch_size == 128
    assert load_train_preset("tiny", lr=0.5, epochs=None).lr == 0.5
    with pytest.raises(ValueError, match="device must be one of"):
        TrainConfig(device="tpu")
    with pytest.raises(ValueError, match="unknown training config keys"):
        TrainConfig.from_dict({"learning_rate": 1.0})


def _config(epochs: int) -> TrainConfig:
    return TrainConfig(epochs=epochs, batch_size=8, lr=3e-3, warmup_epochs=1, device="cpu", seed=1)


def test_training_learns_writes_files_and_resumes_exactly(tmp_path):
    model_config = load_preset("tiny", **MICRO)
    data, val = TinyAV(48, 0), TinyAV(24, 1)
    straight = tmp_path / "straight"
    summary = train(model_config, _config(3), data, val, straight, TinyAV.class_names)
    lines = [json.loads(line) for line in (straight / "metrics.jsonl").read_text().splitlines()]
    assert [line["epoch"] for line in lines] == [1, 2, 3]
    assert {"train_loss", "val_accuracy", "lr", "train_samples_per_s"} <= set(lines[0])
    assert lines[-1]["train_loss"] < lines[0]["train_loss"]
    assert summary["best_val_accuracy"] == max(line["val_accuracy"] for line in lines)
    best = load_checkpoint(straight / "best.pt")
    assert best.train_state is None and best.class_names == ["a", "b", "c"] and best.meta["trained"] is True
    last = load_checkpoint(straight / "last.pt")
    assert last.train_state["epoch"] == 2

    # an interrupted run (stopped after epoch 2 of 3) resumed to the end equals the straight run
    split = tmp_path / "split"
    train(model_config, _config(3).with_overrides(max_minutes=1e-9), data, val, split, TinyAV.class_names)
    assert load_checkpoint(split / "last.pt").train_state["epoch"] == 0
    train(model_config, _config(3), data, val, split, TinyAV.class_names, resume=True)
    resumed = load_checkpoint(split / "last.pt")
    for name, tensor in last.state_dict.items():
        assert torch.equal(tensor, resumed.state_dict[name]), name
    assert len((split / "metrics.jsonl").read_text().splitlines()) == 3


def test_resume_without_a_run_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="checkpoint not found"):
        train(
            load_preset("tiny", **MICRO),
            _config(1),
            TinyAV(8, 0),
            TinyAV(8, 1),
            tmp_path,
            TinyAV.class_names,
            resume=True,
        )


class OracleModel(torch.nn.Module):
    """Predicts the class written into the first audio pixel: a known confusion matrix."""

    def forward(self, audio, video):
        return torch.nn.functional.one_hot(audio[:, 0, 0, 0, 0].long(), 3).float()


def test_evaluation_counts_and_reports(tmp_path):
    truth = [0, 0, 1, 1, 2, 2, 2]
    predicted = [0, 1, 1, 1, 2, 0, 2]
    audio = torch.zeros(7, 2, 1, 4, 4)
    audio[:, 0, 0, 0, 0] = torch.tensor(predicted, dtype=torch.float32)
    dataset = torch.utils.data.TensorDataset(audio, torch.zeros(7, 2, 3, 4, 4), torch.tensor(truth))
    result = evaluate(OracleModel(), dataset, "cpu", batch_size=3, class_names=["x", "y", "z"], progress=False)
    assert result["confusion_matrix"] == [[1, 1, 0], [0, 2, 0], [1, 0, 2]]
    assert result["accuracy"] == pytest.approx(5 / 7)
    assert result["per_class_accuracy"] == pytest.approx({"x": 0.5, "y": 1.0, "z": 2 / 3})
    assert "accuracy: 0.7143 (7 samples)" in format_report(result)
    write_report(result, tmp_path / "r.json", tmp_path / "r.png")
    assert json.loads((tmp_path / "r.json").read_text())["confusion_matrix"] == result["confusion_matrix"]
    assert (tmp_path / "r.png").read_bytes()[:4] == b"\x89PNG"


def test_torchrun_two_cpu_processes_on_gloo(tmp_path, avdigits_cache):
    out = tmp_path / "ddp"
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        "29533",
        "-m",
        "snnergy.train",
        "--out",
        str(out),
        "--device",
        "cpu",
        "--epochs",
        "1",
        "--batch-size",
        "8",
        "--limit-train-batches",
        "2",
        "--image-size",
        "16",
        "--embed-dim",
        "16",
        "--time-steps",
        "2",
        "--cache-dir",
        str(avdigits_cache),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 1  # rank 0 alone logs
    record = json.loads(lines[0])
    # both ranks' batches were counted: 2 ranks x 2 batches x 8 samples
    assert record["train_samples_per_s"] * record["train_seconds"] == pytest.approx(32)
    assert load_checkpoint(out / "best.pt").model_config.embed_dim == 16
    assert result.stdout.count("epoch 1/1: train loss") == 1


def test_cli_trains_and_evaluates_on_a_real_dataset_layout(tmp_path, capsys):
    """`snnergy train/eval --dataset cremad --data-root` on a CREMA-D fixture (real flv + wav)."""
    import fixtures_media as fm

    from snnergy.cli import main

    root = tmp_path / "CREMA-D"
    fm.make_cremad(root)
    common = ["--dataset", "cremad", "--data-root", str(root), "--cache-dir", str(tmp_path / "cache")]
    model = ["--image-size", "16", "--embed-dim", "16", "--time-steps", "2"]
    run = tmp_path / "run"
    assert (
        main(["train", *common, *model, "--out", str(run), "--epochs", "1", "--batch-size", "4", "--device", "cpu"])
        == 0
    )
    checkpoint = load_checkpoint(run / "best.pt")
    assert checkpoint.class_names == ["ANG", "DIS", "FEA", "HAP", "NEU", "SAD"]
    assert checkpoint.model_config.num_classes == 6 and checkpoint.meta["data"]["dataset"] == "cremad"
    assert main(["eval", str(run / "best.pt"), *common, "--split", "test", "--json", str(tmp_path / "e.json")]) == 0
    report = json.loads((tmp_path / "e.json").read_text())
    assert report["dataset"] == "cremad" and sum(map(sum, report["confusion_matrix"])) == report["samples"] > 0
    assert (tmp_path / "e.png").exists()
    # the clip-random protocol has no validation split: training selects on test and says so
    clip = tmp_path / "clip"
    assert (
        main(
            [
                "train",
                *common,
                *model,
                "--split-mode",
                "clip-random",
                "--out",
                str(clip),
                "--epochs",
                "1",
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    assert "selecting checkpoints on 'test'" in capsys.readouterr().out
    assert load_checkpoint(clip / "best.pt").meta["data"]["validation_split"] == "test"


def test_parity_writes_its_report_and_missing_cuda_is_a_clear_error(tmp_path, avdigits_cache, capsys):
    from snnergy.cli import main

    checkpoint = tmp_path / "m.pt"
    main(["init", "--out", str(checkpoint), "--image-size", "16", "--embed-dim", "16", "--time-steps", "2"])
    out = tmp_path / "parity.json"
    common = ["--cache-dir", str(avdigits_cache), "--samples", "4"]
    assert main(["parity", str(checkpoint), *common, "--devices", "cpu", "cpu", "--json", str(out)]) == 0
    result = json.loads(out.read_text())  # the report a GPU run writes (its numbers are checked on a GPU machine)
    assert {"max_abs_logit_diff", "spike_agreement", "prediction_agreement"} <= set(result) and result["samples"] == 4
    if not torch.cuda.is_available():
        assert main(["parity", str(checkpoint), *common]) == 2
        assert "torch sees no CUDA device" in capsys.readouterr().err
