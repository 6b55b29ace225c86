"""Whole-network NIR export: stock nir.read round trip, every neuron present, residual scales, extensions, CLI."""

from __future__ import annotations

import nir
import numpy as np
import pytest
import torch
from spikingjelly.activation_based import neuron

from export.nir_model import build_nir_graph, export_nir
from snnergy.checkpoint import from_model, save_checkpoint
from snnergy.cli import export_main
from snnergy.config import load_preset
from snnergy.model import build_model

MICRO = dict(image_size=16, embed_dim=16, time_steps=2, num_classes=3)


def checkpoint_for(**overrides):
    return from_model(build_model(load_preset("tiny", **MICRO, **overrides), seed=2))


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"attention": "all-ssa"},
        {"attention": "all-cmqka", "cmqka_pathways": "spatial"},
        {"cmqka_pathways": "temporal"},
    ],
)
def test_round_trip_through_stock_nir_read(tmp_path, overrides):
    checkpoint = checkpoint_for(**overrides)
    summary = export_nir(checkpoint, tmp_path / "m.nir")
    graph, loaded = build_nir_graph(checkpoint), nir.read(tmp_path / "m.nir")
    assert set(loaded.nodes) == set(graph.nodes) and summary["nodes"] == len(graph.nodes)
    assert sorted(map(tuple, loaded.edges)) == sorted(graph.edges)
    assert set(loaded.input_type) == {"input.audio", "input.video"}
    assert list(loaded.input_type["input.video"]) == [3, 16, 16]
    assert list(loaded.output_type["output"]) == [3, 1, 1]  # logits per sample, no Flatten
    assert loaded.metadata["time_steps"] == 2


def test_every_spiking_neuron_of_the_model_is_a_nir_lif():
    checkpoint = checkpoint_for()
    model = checkpoint.build_model()
    graph = build_nir_graph(checkpoint)
    model_lifs = [m for m in model.modules() if isinstance(m, neuron.LIFNode)]
    nir_lifs = [n for n in graph.nodes.values() if isinstance(n, nir.LIF) and "snnergy_op" not in n.metadata]
    assert len(nir_lifs) == len(model_lifs)
    thresholds = sorted({float(np.asarray(n.v_threshold).flat[0]) for n in nir_lifs})
    assert thresholds == pytest.approx([0.6, 1.0])  # attention masks keep their own threshold
    # written just below, so NIR's v > vth fires where SpikingJelly's v >= vth does
    assert thresholds[1] < 1.0 and np.nextafter(np.float32(thresholds[1]), np.float32(2)) == np.float32(1.0)
    lif = graph.nodes["stem.audio.out_lif"]
    assert (
        np.allclose(lif.tau, 2.0 * graph.metadata["dt"]) and np.allclose(lif.r, 1.0) and np.allclose(lif.v_reset, 0.0)
    )


def test_residual_alpha_scales_a_copy_of_the_reading_layer():
    checkpoint = checkpoint_for()
    alpha = float(checkpoint.state_dict["stages.0.0.alpha.video"])
    graph = build_nir_graph(checkpoint)
    plain, scaled = graph.nodes["stages.0.0.mlp.video.fc1"], graph.nodes["stages.0.0.mlp.video.fc1@scale1"]
    assert np.allclose(scaled.weight, plain.weight * alpha) and not scaled.bias.any()
    edges = set(graph.edges)
    assert ("stages.0.0.attn.video.out_lif", "stages.0.0.mlp.video.fc1@scale1") in edges
    assert ("stem.video.out_lif", "stages.0.0.mlp.video.fc1") in edges
    assert {
        ("stages.0.0.mlp.video.fc1", "stages.0.0.mlp.video.lif1"),
        ("stages.0.0.mlp.video.fc1@scale1", "stages.0.0.mlp.video.lif1"),
    } <= edges


def test_extension_operations_are_named_with_their_operands():
    graph = build_nir_graph(checkpoint_for())
    product = graph.nodes["stages.0.0.attn.audio.fusion.product"]
    assert product.metadata["snnergy_op"] == "product"
    assert list(product.metadata["operands"]) == [
        "stages.0.0.attn.audio.fusion.spatial_mean",
        "stages.0.0.attn.audio.fusion.temporal_mean",
    ]
    ssa = graph.nodes["stages.2.0.attn.video.attention"]
    assert ssa.metadata["snnergy_op"] == "ssa_attention" and ssa.metadata["heads"] == 8
    assert graph.nodes["head.readout"].metadata["snnergy_op"] == "time_mean"
    ops = {n.metadata.get("snnergy_op") for n in graph.nodes.values() if isinstance(n, nir.NIRGraph)}
    assert ops == {"time_mean", "product", "ssa_attention"}  # mean_N is standard NIR (next test)


def test_token_mean_is_a_standard_avgpool_whose_gain_folds_into_the_product():
    """mean_N(F_s) as NIR's own AvgPool2d (window 2H-1 over zero padding H-1: the grid's sum
    at every token, divided by the window), run here by torch's avg_pool2d as any consumer
    would; times the product's scale it gives the model's mean_N x 100 exactly."""
    graph = build_nir_graph(from_model(build_model(load_preset("tiny"), seed=2)))
    pool = graph.nodes["stages.0.0.attn.audio.fusion.spatial_mean"]  # an 8x8 token grid at tiny
    assert isinstance(pool, nir.AvgPool2d) and tuple(pool.kernel_size) == (15, 15) and tuple(pool.padding) == (7, 7)
    x = (torch.rand(3, 32, 8, 8) < 0.3).float()
    pooled = torch.nn.functional.avg_pool2d(x, 15, 1, 7, count_include_pad=True)
    scale = graph.nodes["stages.0.0.attn.audio.fusion.product"].metadata["scale"]
    assert scale == pytest.approx(100.0 * 225 / 64)
    expected = 100.0 * x.mean(dim=(-2, -1), keepdim=True).expand_as(x)
    assert torch.allclose(pooled * scale, expected, atol=1e-4)


def test_cli_summary(tmp_path, capsys):
    path = save_checkpoint(checkpoint_for(), tmp_path / "model.pt")
    assert export_main([str(path), "--target", "nir"]) == 0
    out = capsys.readouterr().out
    assert (tmp_path / "model.nir").exists() and "stock nir.read loads it back" in out
    for stage in ("stem", "stage1", "stage2", "stage3", "head"):
        assert f"\n{stage} " in out


def test_the_whole_written_graph_reproduces_the_pytorch_model(tmp_path):
    """Read back from the file alone and executed with the reference semantics (extensions
    included): same predictions, logits equal to 1e-4 on all but rare samples where BN
    folding moves a membrane sitting on the threshold by a rounding error."""
    import torch

    from export.nir_reference import logits

    model = build_model(load_preset("tiny", **MICRO, ssa_scale=1.0), seed=3)
    for module in model.modules():  # a spiking regime in every layer, as after training
        if isinstance(module, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
            torch.nn.init.constant_(module.bias, 1.2)
    checkpoint = from_model(model)
    export_nir(checkpoint, tmp_path / "m.nir")
    generator = torch.Generator().manual_seed(0)
    audio, video = (
        torch.rand(16, 2, 1, 16, 16, generator=generator) * 3,
        torch.rand(16, 2, 3, 16, 16, generator=generator) * 3,
    )
    with torch.no_grad():
        expected = checkpoint.build_model()(audio, video)
    got = logits(nir.read(tmp_path / "m.nir"), audio, video)
    per_sample = (got - expected).abs().max(dim=1).values
    assert (got.argmax(1) == expected.argmax(1)).all()
    assert (per_sample <= 1e-4).float().mean() >= 0.9
