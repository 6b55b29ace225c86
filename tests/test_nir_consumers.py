"""Parts of the whole exported graph run in stock NIR consumers (norse, nirtorch) as in our
reference executor: BN folding, the spike-OR max-pool, a branch sum, a spiking MLP layer.

Each part is cut from the graph ``snnergy-export --target nir`` writes (``export.nir_subgraph``)
and fed the reference executor's values of the nodes outside it, so consumer and reference
are compared on the same inputs, node for node. The reference itself is checked against
the PyTorch model in tests/test_export_nir_model.py.
"""

from __future__ import annotations

import json

import nir
import numpy as np
import pytest
import torch
from spikingjelly.activation_based import neuron

from export.nir_graph import fold_conv_bn, lif_node
from export.nir_model import build_nir_graph
from export.nir_reference import run_graph
from export.nir_subgraph import cut, nirtorch_module, norse_module, run_frames
from export.package_format import DT
from snnergy.checkpoint import from_model
from snnergy.config import load_preset
from snnergy.model import build_model


def trained_like_model():
    """A tiny model whose BN layers carry non-trivial statistics (and biases that make every
    layer fire), in eval mode."""
    model = build_model(load_preset("tiny"), seed=0)
    generator = torch.Generator().manual_seed(1)
    for module in model.modules():
        if isinstance(module, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
            module.running_mean.copy_(torch.randn(module.num_features, generator=generator) * 0.1)
            module.running_var.copy_(torch.rand(module.num_features, generator=generator) + 0.5)
            module.bias.data.fill_(0.5)
    return model.eval()


@pytest.fixture(scope="module")
def whole():
    """The exported graph of the model and the reference executor's value of every node."""
    model = trained_like_model()
    mlp = model.stages[0][0].mlp["audio"]
    for projection in (mlp.fc1, mlp.fc2):  # drive both layers of one MLP over threshold so each spikes
        projection.bn.bias.data.fill_(1.2)
    graph = build_nir_graph(from_model(model, [str(i) for i in range(10)]))
    generator = torch.Generator().manual_seed(2)
    inputs = {
        name: torch.rand((6, 2, *(int(d) for d in node.output_type["output"])), generator=generator) * 2
        for name, node in graph.nodes.items()
        if isinstance(node, nir.Input)
    }
    return {"model": model, "graph": graph, "values": run_graph(graph, inputs)}


def run_part(whole: dict, names: list[str], consumer) -> tuple[torch.Tensor, torch.Tensor]:
    """The part's single output as the consumer computes it, and as the reference did."""
    part = cut(whole["graph"], names)
    (port,) = [name for name, node in part.nodes.items() if isinstance(node, nir.Input)]
    (out,) = [name for name, node in part.nodes.items() if isinstance(node, nir.Output)]
    frames = whole["values"][port.split(":", 1)[1]]
    with torch.no_grad():
        got = run_frames(consumer(part), frames)
    return got, whole["values"][out.split(":", 1)[1]]


def agreement(got: torch.Tensor, expected: torch.Tensor) -> float:
    assert got.shape == expected.shape
    assert 0 < expected.mean() < 1  # spikes, some of them: a silent layer would agree trivially
    return (got == expected).float().mean().item()


def test_bn_folding_is_exact_to_float_rounding():
    block = trained_like_model().stem["video"].deep[0]
    weight, bias = fold_conv_bn(block)
    x = torch.rand(1, 2, 3, 32, 32)
    with torch.no_grad():
        expected = block(x)[0]
        folded = torch.nn.functional.conv2d(x[0], torch.from_numpy(weight), torch.from_numpy(bias), padding=1)
    assert torch.allclose(folded, expected, atol=1e-5)


def test_cut_makes_a_part_a_stock_nir_graph(whole, tmp_path):
    graph = whole["graph"]
    stem = [name for name in graph.nodes if name.startswith("stem.video.")]
    part = cut(graph, stem)
    nir.write(tmp_path / "stem.nir", part)
    loaded = nir.read(tmp_path / "stem.nir")
    assert set(loaded.nodes) == set(stem) | {"input:input.video", "output:stem.video.out_lif"}
    assert sorted(map(tuple, loaded.edges)) == sorted(part.edges)
    # the input feeds both branches; the branch sum is two edges into the output neuron
    assert {("input:input.video", "stem.video.deep.0"), ("input:input.video", "stem.video.shortcut")} <= set(part.edges)
    assert {("stem.video.deep.6", "stem.video.out_lif"), ("stem.video.shortcut", "stem.video.out_lif")} <= set(
        part.edges
    )
    np.testing.assert_array_equal(loaded.nodes["output:stem.video.out_lif"].output_type["output"], [32, 8, 8])
    with pytest.raises(ValueError, match="no node"):
        cut(graph, ["nothing"])


def test_norse_runs_conv_lif_and_the_spike_or_pool_like_the_reference(whole):
    chain = ["stem.video.deep.0", "stem.video.deep.1", "stem.video.deep.2.sum", "stem.video.deep.2"]
    got, expected = run_part(whole, chain, norse_module)
    assert agreement(got, expected) >= 0.9999  # NIR's LIF fires on v > vth, ours on >=: ties may differ


def test_nirtorch_runs_a_whole_spds_block_with_its_branch_sum(whole):
    stem = [name for name in whole["graph"].nodes if name.startswith("stem.video.")]
    got, expected = run_part(whole, stem, nirtorch_module)
    assert agreement(got, expected) >= 0.9999


@pytest.mark.parametrize("consumer", [norse_module, nirtorch_module], ids=["norse", "nirtorch"])
def test_consumers_run_a_spiking_mlp_layer_like_the_reference(whole, consumer):
    got, expected = run_part(whole, ["stages.0.0.mlp.audio.fc2", "stages.0.0.mlp.audio.lif2"], consumer)
    assert agreement(got, expected) >= 0.9999


def test_thresholds_make_nir_greater_than_fire_where_spikingjelly_greater_or_equal_does():
    """Input 2.0 puts a tau=2 membrane exactly on its threshold 1.0 after one step: SpikingJelly
    fires (v >= vth). NIR consumers compare v > vth; the exported threshold (the float32 just
    below 1.0) makes them fire too, and with the model's own threshold they would not."""
    lif = neuron.LIFNode(tau=2.0, v_threshold=1.0, v_reset=0.0, decay_input=True, step_mode="m")
    frames = torch.tensor([2.0, 1.98, 2.02, 1.0, 2.0 - 1e-6, 1.5]).repeat(4, 1, 1)  # [T, B, N]
    with torch.no_grad():
        expected = lif(frames)
    assert expected[0, 0, 0] == 1.0  # the tie fires in the model

    def graph_with(node: nir.LIF) -> nir.NIRGraph:
        nodes = {
            "input": nir.Input(input_type=np.array([6])),
            "lif": node,
            "output": nir.Output(output_type=np.array([6])),
        }
        return nir.NIRGraph(nodes=nodes, edges=[("input", "lif"), ("lif", "output")], metadata={"dt": DT})

    graph = graph_with(lif_node(lif, (6,)))
    with torch.no_grad():
        runs = {"reference": run_graph(graph, {"input": frames})["lif"]}
        runs |= {
            name: run_frames(make(graph), frames)
            for name, make in (("norse", norse_module), ("nirtorch", nirtorch_module))
        }
    for name, got in runs.items():
        assert torch.equal(got, expected), name
    unshifted = lif_node(lif, (6,))
    unshifted.v_threshold[:] = 1.0
    with torch.no_grad():
        assert run_frames(norse_module(graph_with(unshifted)), frames)[0, 0, 0] == 0.0  # the tie lost


@pytest.mark.parametrize("consumer", [norse_module, nirtorch_module], ids=["norse", "nirtorch"])
def test_the_head_runs_batched_in_stock_consumers(whole, consumer):
    """The head is 1x1 convolutions on ``[C, 1, 1]`` (no ``Flatten``, which consumers turn into
    ``torch.nn.Flatten(0)`` and which then flattens the batch): two samples at once work."""
    assert not any(isinstance(node, nir.Flatten) for node in whole["graph"].nodes.values())
    got, expected = run_part(whole, ["head.audio.linear@scale0"], consumer)
    assert got.shape == expected.shape and got.shape[1] == 2  # [T, batch, K, 1, 1]
    assert torch.allclose(got, expected, atol=1e-5)


@pytest.fixture(scope="module")
def small_graph():
    model = build_model(load_preset("tiny", image_size=16, embed_dim=16, time_steps=2), seed=0)
    for module in model.modules():  # biases that make every layer fire
        if isinstance(module, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
            module.bias.data.fill_(0.5)
    return build_nir_graph(from_model(model.eval(), [str(i) for i in range(10)]))


def random_inputs(graph: nir.NIRGraph, samples: int = 2) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(3)
    return {
        name: torch.rand((2, samples, *(int(d) for d in node.output_type["output"])), generator=generator) * 2
        for name, node in graph.nodes.items()
        if isinstance(node, nir.Input)
    }


def test_nir_check_runs_every_part_nirtorch_can_take_and_it_agrees(small_graph):
    from export.nir_check import check_consumer, format_matrix

    report = check_consumer(small_graph, "nirtorch", random_inputs(small_graph))
    assert {"Conv2d", "LIF", "SumPool2d", "AvgPool2d"} <= set(report.supported_types)
    assert "Delay" in report.unsupported_types  # nirtorch 2.6 maps no Delay node
    assert all(part.ran for part in report.parts)
    parts_nodes = [name for part in report.parts for name in part.nodes]
    assert len(parts_nodes) == len(set(parts_nodes))  # every node in one part at most
    assert not any(isinstance(small_graph.nodes[name], nir.NIRGraph) for name in parts_nodes)  # no extension
    spikes = [a for part in report.parts for a in part.spike_agreement.values()]
    assert len(spikes) > 20 and min(spikes) == 1.0
    assert max(d for part in report.parts for d in part.max_abs_difference.values()) < 1e-5
    assert "| Delay |" in format_matrix([report], small_graph)


def test_nir_check_shows_norse_returning_the_shortcut_for_a_branch_merge(small_graph):
    """norse 1.1 runs a stem (deep branch + shortcut into one neuron) but hands back the
    shortcut convolution's values as the part's output: the check must show that, not hide it."""
    from export.nir_check import check_consumer

    report = check_consumer(small_graph, "norse", random_inputs(small_graph))
    stem = next(part for part in report.parts if part.nodes[0] == "stem.audio.deep.0")
    assert stem.ran and stem.spike_agreement["stem.audio.out_lif"] < 0.5
    single = [a for part in report.parts if "stem" not in part.nodes[0] for a in part.spike_agreement.values()]
    assert single and min(single) == 1.0  # single-path parts agree exactly


def test_nir_check_command_reports_and_refuses_a_missing_file(tmp_path, small_graph, capsys):
    from snnergy.cli import main

    nir.write(tmp_path / "m.nir", small_graph)
    assert (
        main(["nir-check", str(tmp_path / "m.nir"), "--consumer", "nirtorch", "--json", str(tmp_path / "c.json")]) == 0
    )
    out = capsys.readouterr().out
    assert "| Conv2d |" in out and "**nirtorch**" in out
    document = json.loads((tmp_path / "c.json").read_text())
    assert document["consumers"][0]["consumer"] == "nirtorch" and document["consumers"][0]["nodes_run"] > 50
    assert main(["nir-check", str(tmp_path / "none.nir")]) == 2
    assert "does not exist" in capsys.readouterr().err


@pytest.mark.parametrize("consumer", [norse_module, nirtorch_module], ids=["norse", "nirtorch"])
def test_stock_consumers_refuse_our_extensions_instead_of_running_them_as_identity(small_graph, consumer):
    """(CMQKA's mean_N is no extension: a standard AvgPool2d, which nirtorch runs exactly and
    norse, lacking AvgPool2d, refuses; test_nir_check_runs_every_part_nirtorch_can_take.)"""
    for op in ("time_mean", "product", "ssa_attention"):
        name = next(n for n, node in small_graph.nodes.items() if getattr(node, "metadata", {}).get("snnergy_op") == op)
        part = cut(small_graph, [name])
        frames = torch.rand((2, 1, *(int(d) for d in small_graph.nodes[name].nodes["input"].output_type["output"])))
        with pytest.raises(ValueError, match="Threshold|empty graph"):
            run_frames(consumer(part), frames)
