"""No command writes over its own inputs; existing checkpoints, packages and runs need
--force; exports replace their previous output only when the new one is complete."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from export.cli import main as export_main
from snnergy.checkpoint import from_model, load_checkpoint, save_checkpoint
from snnergy.cli import main as snnergy_main
from snnergy.config import load_preset
from snnergy.model import build_model
from snnergy.outputs import OutputError, check_output

MICRO = dict(image_size=16, embed_dim=16, time_steps=2, num_classes=10)
CLASSES = [str(i) for i in range(10)]


def digest(path: Path) -> str:
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    return hashlib.sha256(b"".join(p.read_bytes() for p in files)).hexdigest()


@pytest.fixture()
def checkpoint(tmp_path: Path) -> Path:
    return save_checkpoint(from_model(build_model(load_preset("tiny", **MICRO), seed=0), CLASSES), tmp_path / "m.pt")


@pytest.mark.parametrize(
    "argv",
    [
        ["export", "{ckpt}", "--target", "onnx", "--out", "{ckpt}"],
        ["export", "{ckpt}", "--target", "nir", "--out", "{ckpt}"],
        ["eval", "{ckpt}", "--json", "{ckpt}"],
        ["energy", "{ckpt}", "--json", "{ckpt}"],
        ["energy", "{ckpt}", "--markdown", "{ckpt}"],
        ["firing-rates", "{ckpt}", "--json", "{ckpt}"],
        ["ablate", "{ckpt}", "--json", "{ckpt}"],
    ],
)
def test_a_report_or_export_never_replaces_the_checkpoint_it_reads(checkpoint, capsys, argv):
    before = digest(checkpoint)
    assert snnergy_main([a.format(ckpt=checkpoint) for a in argv]) == 2
    assert "is an input of this command" in capsys.readouterr().err
    assert digest(checkpoint) == before


def test_simulate_refuses_a_json_report_inside_its_package(checkpoint, tmp_path, capsys):
    from export.lava_package import write_lava_package

    package = tmp_path / "m.lava"
    write_lava_package(load_checkpoint(checkpoint), package, source=checkpoint)
    before = digest(package)
    assert snnergy_main(["simulate", str(package), "--json", str(package / "manifest.json")]) == 2
    assert "is an input of this command" in capsys.readouterr().err
    assert digest(package) == before


def test_init_needs_force_to_replace_a_checkpoint(checkpoint, capsys):
    before = digest(checkpoint)
    assert snnergy_main(["init", "--preset", "tiny", "--out", str(checkpoint)]) == 2
    assert "already holds a checkpoint; pass --force" in capsys.readouterr().err
    assert digest(checkpoint) == before
    assert snnergy_main(["init", "--preset", "tiny", "--out", str(checkpoint), "--seed", "3", "--force"]) == 0
    assert load_checkpoint(checkpoint).meta["seed"] == 3


def test_export_needs_force_to_replace_something_else_and_may_replace_its_own_kind(checkpoint, tmp_path, capsys):
    other = save_checkpoint(from_model(build_model(load_preset("tiny", **MICRO), seed=1), CLASSES), tmp_path / "other.pt")
    assert export_main([str(checkpoint), "--target", "nir", "--out", str(other)]) == 2
    assert "already holds a checkpoint" in capsys.readouterr().err
    out = tmp_path / "m.nir"
    assert export_main([str(checkpoint), "--target", "nir", "--out", str(out)]) == 0
    assert export_main([str(checkpoint), "--target", "nir", "--out", str(out)]) == 0  # re-export over its own kind
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.jsonl").write_text("{}\n")
    assert export_main([str(checkpoint), "--target", "lava", "--out", str(run)]) == 2
    assert "already holds a training run" in capsys.readouterr().err


def test_an_interrupted_export_leaves_the_previous_output_intact(checkpoint, tmp_path, monkeypatch):
    import export.lava_package as lava_package
    import export.nir_model as nir_model

    package, graph = tmp_path / "m.lava", tmp_path / "m.nir"
    assert export_main([str(checkpoint), "--target", "lava", "--out", str(package)]) == 0
    assert export_main([str(checkpoint), "--target", "nir", "--out", str(graph)]) == 0
    before = digest(package), digest(graph)

    def killed(*args, **kwargs):
        raise KeyboardInterrupt  # an interruption in the middle of writing

    monkeypatch.setattr(lava_package, "quantise", killed)
    with pytest.raises(KeyboardInterrupt):
        export_main([str(checkpoint), "--target", "lava", "--fixed-point", "--out", str(package)])
    monkeypatch.setattr(nir_model.nir, "read", killed)
    with pytest.raises(KeyboardInterrupt):
        export_main([str(checkpoint), "--target", "nir", "--out", str(graph)])
    assert (digest(package), digest(graph)) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.lava", "m.nir", "m.pt"]  # no temporary left behind


def test_train_refuses_an_existing_run_without_resume_or_force(avdigits_cache, tmp_path, capsys):
    run = tmp_path / "run"
    args = ["train", "--preset", "tiny", "--image-size", "16", "--embed-dim", "16", "--time-steps", "2", "--epochs", "1",
            "--limit-train-batches", "1", "--cache-dir", str(avdigits_cache), "--out", str(run)]  # fmt: skip
    assert snnergy_main(args) == 0
    best = digest(run / "best.pt")
    assert snnergy_main(args) == 2
    assert "already holds a training run; pass --force" in capsys.readouterr().err
    assert digest(run / "best.pt") == best
    assert snnergy_main([*args, "--force"]) == 0
    epochs = [json.loads(line)["epoch"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert epochs == [1]  # the earlier run's metrics were replaced, not continued


def test_an_output_directory_holding_an_input_is_refused(tmp_path):
    source = tmp_path / "runs" / "m.pt"
    source.parent.mkdir()
    source.write_bytes(b"x")
    with pytest.raises(OutputError, match="is an input"):
        check_output(tmp_path / "runs", "lava package", [source])
    check_output(tmp_path / "new.lava", "lava package", [source])  # a fresh destination is fine
