"""Every command fails in one clear line (exit 2) for what a user gets wrong; --debug
shows the traceback; foreign pickles stay refused."""

from __future__ import annotations

import os
import pickle

import pytest

from snnergy.checkpoint import from_model, save_checkpoint
from snnergy.cli import export_main
from snnergy.cli import main as snnergy_main
from snnergy.config import load_preset
from snnergy.model import build_model

MICRO = dict(image_size=16, embed_dim=16, time_steps=2)


def one_line_error(capsys, code: int, *needles: str) -> str:
    captured = capsys.readouterr()
    assert code == 2
    assert captured.err.count("\n") == 1 and "Traceback" not in captured.err, captured.err
    for needle in needles:
        assert needle in captured.err
    return captured.err


@pytest.mark.parametrize("dataset", ["cremad", "ave", "us8k"])
def test_a_missing_or_empty_data_root(dataset, tmp_path, capsys):
    code = snnergy_main(
        ["train", "--dataset", dataset, "--data-root", str(tmp_path / "missing"), "--out", str(tmp_path / "run")]
    )
    one_line_error(capsys, code, "snnergy train: error:", "missing")
    (tmp_path / "empty").mkdir()
    code = snnergy_main(["eval", str(tmp_path / "m.pt"), "--dataset", dataset, "--data-root", str(tmp_path / "empty")])
    one_line_error(capsys, code, "snnergy eval: error:")


def test_a_text_file_given_as_checkpoint(tmp_path, capsys):
    text = tmp_path / "notes.txt"
    text.write_text("not a model\n")
    for command in ("energy", "eval", "ablate", "firing-rates"):
        one_line_error(capsys, snnergy_main([command, str(text)]), "is not a readable checkpoint")
    one_line_error(
        capsys, export_main([str(text), "--target", "nir", "--out", str(tmp_path / "m.nir")]), "snnergy-export: error:"
    )


def test_a_foreign_pickle_is_refused(tmp_path, capsys):
    class Payload:
        def __reduce__(self):
            return (os.system, ("echo pwned > " + str(tmp_path / "pwned"),))

    evil = tmp_path / "evil.pt"
    evil.write_bytes(pickle.dumps(Payload()))
    one_line_error(capsys, snnergy_main(["eval", str(evil)]), "is not a readable checkpoint")
    assert not (tmp_path / "pwned").exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through any permission")
def test_an_output_folder_without_write_permission(tmp_path, capsys):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        one_line_error(capsys, snnergy_main(["init", "--out", str(locked / "m.pt")]), "Permission denied")
    finally:
        locked.chmod(0o700)


def test_exporting_a_baseline_and_a_bad_timeout(tmp_path, capsys):
    baseline = save_checkpoint(from_model(build_model(load_preset("tiny-late-sum", **MICRO))), tmp_path / "late.pt")
    one_line_error(capsys, export_main([str(baseline), "--target", "lava"]), "is a baseline")
    model = save_checkpoint(from_model(build_model(load_preset("tiny", **MICRO))), tmp_path / "m.pt")
    assert export_main([str(model), "--target", "lava"]) == 0
    capsys.readouterr()
    one_line_error(
        capsys, snnergy_main(["simulate", str(tmp_path / "m.lava"), "--timeout", "0"]), "--timeout must be a positive"
    )


def test_debug_shows_the_traceback(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("x")
    with pytest.raises(ValueError, match="not a readable checkpoint"):
        snnergy_main(["--debug", "eval", str(text)])


def test_the_checkpoint_path_of_an_error_is_named(tmp_path, capsys):
    missing = tmp_path / "nowhere.pt"
    err = one_line_error(capsys, snnergy_main(["energy", str(missing)]), "not found")
    assert str(missing) in err
