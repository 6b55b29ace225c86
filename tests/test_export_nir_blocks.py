"""NIR building blocks (export in progress): BN folding, file round trip, norse parity on a chain."""

from __future__ import annotations

import nir
import norse.torch as norse
import pytest
import torch
from spikingjelly.activation_based import functional

from export.nir_graph import (
    DT,
    Subgraph,
    conv_node,
    fold_conv_bn,
    lif_node,
    spds_subgraph,
    spike_or_nodes,
    standalone_graph,
)
from snnergy.config import load_preset
from snnergy.model import build_model


def trained_like_model():
    """A tiny model whose BN layers carry non-trivial statistics, in eval mode (per-timestep
    projections: the block API predates causal taps, which the whole-graph tests cover)."""
    model = build_model(load_preset("tiny", cmqka_temporal_taps=1), seed=0)
    generator = torch.Generator().manual_seed(1)
    for module in model.modules():
        if isinstance(module, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
            module.running_mean.copy_(torch.randn(module.num_features, generator=generator) * 0.1)
            module.running_var.copy_(torch.rand(module.num_features, generator=generator) + 0.5)
            module.bias.data.fill_(0.5)
    return model.eval()


def test_bn_folding_is_exact_to_float_rounding():
    block = trained_like_model().stem["video"].deep[0]
    weight, bias = fold_conv_bn(block)
    x = torch.rand(1, 2, 3, 32, 32)
    with torch.no_grad():
        expected = block(x)[0]
        folded = torch.nn.functional.conv2d(x[0], torch.from_numpy(weight), torch.from_numpy(bias), padding=1)
    assert torch.allclose(folded, expected, atol=1e-5)


def test_spds_subgraph_round_trips_through_stock_nir(tmp_path):
    spds = trained_like_model().stem["audio"]
    sub = spds_subgraph(spds, (1, 32, 32), "stem.audio")
    graph = standalone_graph(sub, (1, 32, 32))
    nir.write(tmp_path / "stem.nir", graph)
    loaded = nir.read(tmp_path / "stem.nir")
    assert set(loaded.nodes) == set(graph.nodes)
    assert sorted(map(tuple, loaded.edges)) == sorted(graph.edges)
    assert ("stem.audio.shortcut", "stem.audio.out_lif") in graph.edges  # the branch sum: two edges in
    assert sub.output_shape == (32, 8, 8)
    assert loaded.nodes["stem.audio.deep.2"].metadata["snnergy_op"] == "spike_or"


def test_norse_runs_conv_lif_or_spike_for_spike_like_pytorch():
    spds = trained_like_model().stem["video"]
    conv, lif, pool = spds.deep[0], spds.deep[1], spds.deep[2]
    conv_nir, shape = conv_node(conv, (3, 32, 32))
    sum_pool, gate, out_shape = spike_or_nodes(pool, shape)
    chain = Subgraph(
        nodes={"conv": conv_nir, "lif": lif_node(lif, shape), "pool": sum_pool, "or": gate},
        edges=[("conv", "lif"), ("lif", "pool"), ("pool", "or")],
        entries={"in": ["conv"]},
        exit="or",
        output_shape=out_shape,
    )
    net = norse.from_nir(standalone_graph(chain, (3, 32, 32)), dt=DT)
    x = torch.rand(6, 2, 3, 32, 32, generator=torch.Generator().manual_seed(2)) * 2
    functional.reset_net(spds)
    with torch.no_grad():
        expected = pool(lif(conv(x)))
        state, steps = None, []
        for frame in x:
            out, state = net(frame, state)
            steps.append(out)
    got = torch.stack(steps)
    assert expected.sum() > 0 and set(expected.unique().tolist()) == {0.0, 1.0}
    agreement = (got == expected).float().mean().item()
    assert agreement >= 0.9999, agreement  # folded BN may flip a spike sitting exactly on the threshold


def test_nirtorch_runs_a_whole_spds_block_with_its_branch_sum():
    from export.nir_graph import run_steps, to_nirtorch

    spds = trained_like_model().stem["video"]
    graph = standalone_graph(spds_subgraph(spds, (3, 32, 32), "stem.video"), (3, 32, 32))
    x = torch.rand(6, 2, 3, 32, 32, generator=torch.Generator().manual_seed(2)) * 2
    functional.reset_net(spds)
    with torch.no_grad():
        expected = spds(x)
        got = run_steps(to_nirtorch(graph), x)
    assert expected.sum() > 100
    assert (got == expected).float().mean().item() >= 0.9999


def test_norse_and_nirtorch_run_the_spiking_mlp_like_pytorch():
    from export.nir_graph import mlp_subgraph, run_steps, to_nirtorch

    mlp = trained_like_model().stages[0][0].mlp["audio"]
    for projection in (mlp.fc1, mlp.fc2):  # drive both layers over threshold so each spikes
        projection.bn.bias.data.fill_(1.2)
    grid = (32, 8, 8)
    graph = standalone_graph(mlp_subgraph(mlp, grid, "mlp"), grid)
    tokens = (torch.rand(5, 2, 32, 64, generator=torch.Generator().manual_seed(3)) < 0.3).float()
    functional.reset_net(mlp)
    with torch.no_grad():
        expected = mlp(tokens).unflatten(3, (8, 8))
        frames = tokens.unflatten(3, (8, 8))
        via_norse = run_steps(norse.from_nir(graph, dt=DT), frames)
        via_nirtorch = run_steps(to_nirtorch(graph), frames)
    assert expected.sum() > 0
    for got in (via_norse, via_nirtorch):
        assert (got == expected).float().mean().item() >= 0.9999


@pytest.mark.parametrize("pathway", ["spatial", "temporal"])
def test_cmqka_pathway_up_to_the_and_is_pure_nir_and_exact(pathway):
    from export.nir_graph import cmqka_pathway_subgraph, run_steps, to_nirtorch

    attn = trained_like_model().stages[0][0].attn["video"]
    qk = getattr(attn, pathway)
    for projection in (qk.q_proj, qk.k_proj):  # drive Q and K well over threshold: masks and ANDs fire
        projection.bn.bias.data.fill_(1.5)
    grid = (32, 8, 8)
    graph = standalone_graph(cmqka_pathway_subgraph(attn, pathway, grid, "cm"), grid)
    stream = (torch.rand(5, 2, 32, 64, generator=torch.Generator().manual_seed(4)) < 0.3).float()
    functional.reset_net(attn)
    features = attn.spatial_features if pathway == "spatial" else attn.temporal_features
    with torch.no_grad():
        expected = features(stream, stream).unflatten(3, (8, 8))
        got = run_steps(to_nirtorch(graph), stream.unflatten(3, (8, 8)))
    assert 0 < expected.mean() < 1
    assert (got == expected).float().mean().item() >= 0.9999
