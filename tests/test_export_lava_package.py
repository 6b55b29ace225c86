"""The Lava package: files, manifest, fixed-point parameters within Loihi's bit widths."""

from __future__ import annotations

import json

import nir
import numpy as np
import pytest

from export.lava_package import write_lava_package
from export.package_format import read_manifest
from snnergy.checkpoint import from_model, save_checkpoint
from snnergy.cli import export_main
from snnergy.config import load_preset
from snnergy.model import build_model

MICRO = dict(image_size=16, embed_dim=16, time_steps=2, num_classes=3)


@pytest.fixture(scope="module")
def package(tmp_path_factory):
    checkpoint = from_model(build_model(load_preset("tiny", **MICRO), seed=4), ["x", "y", "z"])
    out = tmp_path_factory.mktemp("pkg") / "model.lava"
    write_lava_package(checkpoint, out, fixed_point=True)
    return checkpoint, out


def test_manifest_names_everything_the_runtime_needs(package):
    checkpoint, out = package
    manifest = read_manifest(out)
    assert manifest["model_config"] == checkpoint.model_config.to_dict()
    assert manifest["class_names"] == ["x", "y", "z"] and manifest["time_steps"] == 2
    assert manifest["inputs"] == {"audio": [1, 16, 16], "video": [3, 16, 16]}
    assert set(manifest["extensions"]) == {"time_mean", "product", "ssa_attention"}
    assert manifest["quantisation"]["fixed_point"] is True and "lava-nc" in manifest["versions"]
    graph = nir.read(out / manifest["files"]["graph"])
    assert "output" in graph.nodes


def test_fixed_point_parameters_fit_loihi_bit_widths(package):
    _, out = package
    arrays = np.load(out / "fixed_point.npz")
    weights = [arrays[k] for k in arrays if k.endswith("/weight_mant")]
    assert weights and all(((w % 2) == 0).all() and w.min() >= -256 and w.max() <= 254 for w in weights)
    assert all(0 <= int(arrays[k]) <= 4095 for k in arrays if k.endswith("/dv") or k.endswith("/du"))
    assert all(0 < int(arrays[k]) < 2**17 for k in arrays if k.endswith("/vth_mant"))
    assert all(np.abs(arrays[k]).max(initial=0) <= 4095 for k in arrays if k.endswith("/bias_mant"))
    assert all(0 <= int(arrays[k]) <= 7 for k in arrays if k.endswith("/bias_exp"))
    assert int(arrays["stem.video.out_lif/dv"]) == 2048  # tau = 2: half the membrane leaks each step


def test_quantised_weights_are_the_float_weights_over_tau(package):
    _, out = package
    graph = nir.read(out / "model.nir")
    arrays = np.load(out / "fixed_point.npz")
    target, source = "stages.0.0.mlp.audio.lif1", "stages.0.0.mlp.audio.fc1"
    scale = int(arrays[f"{target}/scale"])
    dequantised = arrays[f"{target}/in/{source}/weight_mant"] / scale
    expected = np.asarray(graph.nodes[source].weight) / 2.0  # tau = 2 steps
    assert np.abs(dequantised - expected).max() <= 1.0 / scale + 1e-9
    assert int(arrays[f"{target}/vth_mant"]) == scale  # threshold 1.0


def test_cli_and_bad_package_errors(tmp_path, capsys):
    path = save_checkpoint(from_model(build_model(load_preset("tiny", **MICRO))), tmp_path / "m.pt")
    assert export_main([str(path), "--target", "lava"]) == 0
    assert (tmp_path / "m.lava" / "manifest.json").exists() and not (tmp_path / "m.lava" / "fixed_point.npz").exists()
    with pytest.raises(ValueError, match="manifest.json is missing"):
        read_manifest(tmp_path)
    manifest = json.loads((tmp_path / "m.lava" / "manifest.json").read_text())
    manifest["files"]["fixed_point"] = "fixed_point.npz"
    (tmp_path / "m.lava" / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match="file fixed_point.npz named in the manifest is missing"):
        read_manifest(tmp_path / "m.lava")
