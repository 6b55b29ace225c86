"""ONNX export: checker, onnxruntime parity with PyTorch, dynamic batch, metadata, errors."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch
from spikingjelly.activation_based import neuron
from torch import nn

from export.onnx_target import (
    UnsupportedModuleError,
    check_supported,
    example_inputs,
    export_onnx,
    onnx_logits,
    unrolled_copy,
)
from snnergy.checkpoint import from_model, save_checkpoint
from snnergy.cli import export_main
from snnergy.config import load_preset
from snnergy.model import build_model

MICRO = dict(image_size=16, embed_dim=16, time_steps=3, num_classes=3)


def spiking_model(seed: int = 5):
    """An untrained model barely spikes past the stem in eval mode; positive BN biases make
    every layer fire, so parity is checked on real spiking activity."""
    model = build_model(load_preset("tiny", **MICRO, ssa_scale=1.0), seed=seed)
    for module in model.modules():
        if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
            nn.init.constant_(module.bias, 1.2)
    return model


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    model = spiking_model()
    checkpoint = from_model(model, ["a", "b", "c"])
    path = tmp_path_factory.mktemp("onnx") / "m.onnx"
    return checkpoint, export_onnx(checkpoint, path)


def test_checker_passes_and_export_reports_parity(exported):
    _, summary = exported
    onnx.checker.check_model(onnx.load(summary["path"]))
    assert summary["inputs"] == ["audio", "video"] and summary["outputs"] == ["logits"]
    assert summary["max_abs_logit_diff"] <= 1e-4 and summary["nodes"] > 100


@pytest.mark.parametrize("batch", [1, 3])
def test_onnxruntime_reproduces_pytorch_on_a_dynamic_batch(exported, batch):
    checkpoint, summary = exported
    model = checkpoint.build_model()
    audio, video = example_inputs(model, batch, seed=batch)
    fired = []
    hooks = [
        m.register_forward_hook(lambda _m, _i, out: fired.append(float(out.sum())))
        for m in model.modules()
        if isinstance(m, neuron.LIFNode)
    ]
    with torch.no_grad():
        expected = model(audio, video).numpy()
    for hook in hooks:
        hook.remove()
    assert all(value > 0 for value in fired), fired  # every LIF layer spikes: parity on real activity
    assert np.abs(onnx_logits(summary["path"], audio, video) - expected).max() <= 1e-4


def test_unrolled_lif_matches_spikingjelly_spike_for_spike():
    model = spiking_model(seed=1).eval()
    twin = unrolled_copy(model)
    audio, video = example_inputs(model, 2)
    with torch.no_grad():
        original, unrolled = model.forward_stages(audio, video), twin.forward_stages(audio, video)
    for stage in ("stem", "stage1", "stage2", "stage3"):
        for modality in ("audio", "video"):
            assert torch.equal(original[stage][modality], unrolled[stage][modality]), (stage, modality)


def test_metadata_round_trips(exported):
    checkpoint, summary = exported
    meta = {p.key: p.value for p in onnx.load(summary["path"]).metadata_props}
    assert json.loads(meta["class_names"]) == ["a", "b", "c"]
    assert json.loads(meta["model_config"]) == checkpoint.model_config.to_dict()
    assert meta["time_steps"] == "3" and json.loads(meta["inputs"])["video"] == ["batch", 3, 3, 16, 16]


def test_cli_writes_next_to_the_checkpoint_by_default(tmp_path, capsys):
    path = save_checkpoint(from_model(build_model(load_preset("tiny", **MICRO))), tmp_path / "model.pt")
    assert export_main([str(path), "--target", "onnx"]) == 0
    assert (tmp_path / "model.onnx").exists()
    assert "onnx.checker passed" in capsys.readouterr().out


def test_unsupported_module_is_named():
    model = build_model(load_preset("tiny", **MICRO))
    model.stages[0][0].mlp["audio"].act = nn.GELU()
    with pytest.raises(UnsupportedModuleError, match=r"module 'stages.0.0.mlp.audio.act' \(GELU\)"):
        check_supported(model)


def test_cli_explicit_out_missing_checkpoint_and_unsupported_module(tmp_path, capsys, monkeypatch):
    model = build_model(load_preset("tiny", **MICRO))
    path = save_checkpoint(from_model(model), tmp_path / "m.pt")
    assert export_main([str(path), "--target", "onnx", "--out", str(tmp_path / "sub" / "x.onnx")]) == 0
    assert (tmp_path / "sub" / "x.onnx").exists()
    assert export_main([str(tmp_path / "nope.pt"), "--target", "onnx"]) == 2
    assert "checkpoint not found" in capsys.readouterr().err
    model.stem["audio"].out_lif.v_reset = None
    with pytest.raises(UnsupportedModuleError, match=r"module 'stem.audio.out_lif' \(LIFNode\) uses soft reset"):
        check_supported(model)
