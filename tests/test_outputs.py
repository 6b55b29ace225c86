"""No command writes over its own inputs; existing checkpoints, packages and runs need
--force; exports replace their previous output only when the new one is complete."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from snnergy.checkpoint import from_model, load_checkpoint, save_checkpoint
from snnergy.cli import export_main
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
    other = save_checkpoint(
        from_model(build_model(load_preset("tiny", **MICRO), seed=1), CLASSES), tmp_path / "other.pt"
    )
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
    args = [
        "train",
        "--preset",
        "tiny",
        "--image-size",
        "16",
        "--embed-dim",
        "16",
        "--time-steps",
        "2",
        "--epochs",
        "1",
        "--limit-train-batches",
        "1",
        "--cache-dir",
        str(avdigits_cache),
        "--out",
        str(run),
    ]
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


def _train_args(cache: Path, run: Path, epochs: int) -> list[str]:
    return [
        "train",
        "--preset",
        "tiny",
        "--image-size",
        "16",
        "--embed-dim",
        "16",
        "--time-steps",
        "2",
        "--epochs",
        str(epochs),
        "--limit-train-batches",
        "1",
        "--cache-dir",
        str(cache),
        "--out",
        str(run),
    ]


@pytest.mark.parametrize("window", ["after_last", "after_best"])
def test_a_kill_between_the_writes_of_an_epoch_resumes_with_each_epoch_once(
    avdigits_cache, tmp_path, monkeypatch, window
):
    import snnergy.train as train_module

    run = tmp_path / "run"
    calls = {"n": 0}

    def kill_in_epoch_two(name: str) -> None:
        if name == window:
            calls["n"] += 1
            if calls["n"] == 2:
                raise KeyboardInterrupt  # as kill -9 would, between two writes of epoch 2's commit

    accuracies = iter([0.3, 0.5, 0.4])  # epoch 2 is the best; epoch 3 (after the resume) is not

    def validation(*args, **kwargs):
        return {"loss": 1.0, "accuracy": next(accuracies)}

    monkeypatch.setattr(train_module, "evaluate", validation)
    monkeypatch.setattr(train_module, "commit_point", kill_in_epoch_two)
    with pytest.raises(KeyboardInterrupt):
        snnergy_main(_train_args(avdigits_cache, run, 3))
    monkeypatch.setattr(train_module, "commit_point", lambda name: None)
    assert snnergy_main([*_train_args(avdigits_cache, run, 3), "--resume"]) == 0
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2, 3]
    assert [r["val_accuracy"] for r in records] == [0.3, 0.5, 0.4]
    best = load_checkpoint(run / "best.pt")
    assert best.meta["epoch"] + 1 == 2 and best.meta["metrics"]["val_accuracy"] == 0.5  # as the summary says
    assert records[-1]["best_val_accuracy"] == 0.5


def test_a_second_trainer_on_the_same_run_is_refused_with_the_holders_pid(avdigits_cache, tmp_path, capsys):
    import fcntl
    import os

    run = tmp_path / "run"
    run.mkdir()
    with open(run / ".lock", "a+") as holder:
        fcntl.flock(holder, fcntl.LOCK_EX)
        holder.write("4242")
        holder.flush()
        # a lock held by an open file description of this process: the trainer cannot take it
        pid = os.fork()
        if pid == 0:
            code = snnergy_main(_train_args(avdigits_cache, run, 1))
            os._exit(code)
        _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 2
    assert not (run / "metrics.jsonl").exists()


@pytest.fixture()
def package(checkpoint: Path, tmp_path: Path) -> Path:
    from export.lava_package import write_lava_package

    return Path(write_lava_package(load_checkpoint(checkpoint), tmp_path / "m.lava", source=checkpoint)["path"])


def _edit_manifest(package: Path, **changes) -> None:
    manifest = json.loads((package / "manifest.json").read_text())
    for key, value in changes.items():
        if key == "graph":
            manifest["files"]["graph"] = value
        else:
            manifest[key] = value
    (package / "manifest.json").write_text(json.dumps(manifest))


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"graph": "/etc/passwd"}, "lies outside the package"),
        ({"graph": "../other.lava/model.nir"}, "lies outside the package"),
        ({"format_version": 99}, "format_version 99 is not one"),
        ({"class_names": ["a", "b"]}, "2 class names for a model with 10 classes"),
        ({"dt": 0.01}, "disagrees with the graph's"),
        ({"time_steps": 5}, "time_steps 5 disagrees"),
        ({"inputs": {"audio": [1, 8, 8], "video": [3, 16, 16]}}, "input shapes"),
    ],
)
def test_simulate_refuses_an_inconsistent_package_before_starting_lava(package, capsys, changes, message):
    _edit_manifest(package, **changes)
    assert snnergy_main(["simulate", str(package), "--samples", "1"]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1  # one line, no traceback


def test_simulate_refuses_files_changed_since_export_and_a_foreign_reference(package, checkpoint, tmp_path, capsys):
    from export.lava_package import write_lava_package

    other_model = from_model(build_model(load_preset("tiny", **{**MICRO, "embed_dim": 32}), seed=0), CLASSES)
    other = Path(write_lava_package(other_model, tmp_path / "other.lava")["path"])
    (package / "energy.json").write_bytes((other / "energy.json").read_bytes())  # files of two models mixed
    assert snnergy_main(["simulate", str(package), "--samples", "1"]) == 2
    assert "energy.json changed since export" in capsys.readouterr().err
    (package / "energy.json").unlink()
    fresh = Path(write_lava_package(load_checkpoint(checkpoint), tmp_path / "fresh.lava", source=checkpoint)["path"])
    foreign = save_checkpoint(
        from_model(build_model(load_preset("tiny", **MICRO), seed=7), CLASSES), tmp_path / "foreign.pt"
    )
    assert snnergy_main(["simulate", str(fresh), "--samples", "1", "--checkpoint", str(foreign)]) == 2
    assert "is not the model this package was exported from" in capsys.readouterr().err
