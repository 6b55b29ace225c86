"""Parts of the whole exported graph run in stock NIR consumers (norse, nirtorch) as in our
reference executor: BN folding, the spike-OR max-pool, a branch sum, a spiking MLP layer.

Each part is cut from the graph ``snnergy-export --target nir`` writes (``export.nir_subgraph``)
and fed the reference executor's values of the nodes outside it, so consumer and reference
are compared on the same inputs, node for node. The reference itself is checked against
the PyTorch model in tests/test_export_nir_model.py.
"""

from __future__ import annotations

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
