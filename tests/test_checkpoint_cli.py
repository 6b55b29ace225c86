"""Checkpoints (format, errors, round trip) and the command-line entry points."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from snnergy.checkpoint import CheckpointError, load_checkpoint
from snnergy.cli import export_main
from snnergy.cli import main as snnergy_main


def test_init_writes_a_seeded_checkpoint_that_rebuilds_the_model(tmp_path, capsys):
    path = tmp_path / "model.pt"
    assert snnergy_main(["init", "--preset", "tiny", "--out", str(path), "--seed", "7", "--num-classes", "4"]) == 0
    checkpoint = load_checkpoint(path)
    assert checkpoint.model_config.preset == "tiny" and checkpoint.model_config.num_classes == 4
    assert checkpoint.meta == {"seed": 7, "trained": False}
    assert checkpoint.class_names == ["0", "1", "2", "3"]
    assert {"torch", "spikingjelly"} <= set(checkpoint.versions)
    model = checkpoint.build_model()
    again = tmp_path / "again.pt"
    snnergy_main(["init", "--preset", "tiny", "--out", str(again), "--seed", "7", "--num-classes", "4"])
    for name, tensor in load_checkpoint(again).state_dict.items():
        assert torch.equal(tensor, model.state_dict()[name]), name
    assert not list(tmp_path.glob(".*.tmp"))  # atomic write leaves no temporary file


def test_bad_checkpoints_give_clear_errors(tmp_path):
    with pytest.raises(CheckpointError, match="checkpoint not found: .*missing.pt"):
        load_checkpoint(tmp_path / "missing.pt")
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="corrupt.pt is not a readable checkpoint"):
        load_checkpoint(corrupt)
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {}}, foreign)
    with pytest.raises(CheckpointError, match="foreign.pt is not an SNNergy checkpoint"):
        load_checkpoint(foreign)
    truncated = tmp_path / "truncated.pt"
    snnergy_main(["init", "--out", str(tmp_path / "full.pt")])
    truncated.write_bytes((tmp_path / "full.pt").read_bytes()[:5000])
    with pytest.raises(CheckpointError, match="truncated.pt is not a readable checkpoint"):
        load_checkpoint(truncated)


def test_info_prints_parameters_tokens_and_table5(capsys):
    assert snnergy_main(["info", "--preset", "b"]) == 0
    out = capsys.readouterr().out
    assert "parameters:" in out
    assert "| stage1 | cmqka | 1 | 192 | 32x32 | 1024 |" in out
    assert "| stage3 | ssa | 2 | 768 | 8x8 | 64 |" in out
    for total in ("| hybrid | 78.5M |", "| all-cmqka | 113.1M |", "| all-ssa | 229.6M |"):
        assert total in out


def test_cli_reports_bad_model_options(capsys):
    assert snnergy_main(["info", "--preset", "tiny", "--image-size", "40"]) == 2
    assert "must be a multiple of 16" in capsys.readouterr().err


def test_export_rejects_missing_and_corrupt_checkpoints(tmp_path, capsys):
    assert export_main([str(tmp_path / "nope.pt"), "--target", "lava"]) == 2
    assert "checkpoint not found" in capsys.readouterr().err
    bad = tmp_path / "bad.pt"
    bad.write_text("garbage")
    assert export_main([str(bad), "--target", "onnx"]) == 2
    assert "not a readable checkpoint" in capsys.readouterr().err


def test_console_scripts_are_installed():
    bin_dir = Path(sys.executable).parent
    for script in ("snnergy", "snnergy-export"):
        result = subprocess.run([str(bin_dir / script), "--help"], capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
        assert "usage:" in result.stdout
