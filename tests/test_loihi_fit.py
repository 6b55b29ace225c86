"""``snnergy loihi-fit``: counts checked by hand on a two-layer net; placement of a real model."""

from __future__ import annotations

import json
from dataclasses import replace

import nir
import numpy as np
import pytest

from export.loihi_fit import fit_graph, load_limits
from export.loihi_map import HOST, NEUROCORE, place
from snnergy.checkpoint import from_model, save_checkpoint
from snnergy.cli import main
from snnergy.config import load_preset
from snnergy.model import build_model


def lif(shape: tuple[int, ...]) -> nir.LIF:
    full = lambda v: np.full(shape, v, dtype=np.float32)  # noqa: E731
    return nir.LIF(tau=full(2e-3), r=full(1.0), v_leak=full(0.0), v_threshold=full(1.0), v_reset=full(0.0))


@pytest.fixture()
def two_layer() -> nir.NIRGraph:
    """frame [1, 6, 6] -> 3x3 conv (2 channels, padding 1) -> LIF [2, 6, 6] -> 2x2 sum pool
    -> LIF [2, 3, 3] -> linear readout (10 classes)."""
    conv = nir.Conv2d(
        input_shape=(6, 6),
        weight=np.ones((2, 1, 3, 3), np.float32),
        stride=1,
        padding=1,
        dilation=1,
        groups=1,
        bias=np.zeros(2, np.float32),
    )
    pool = nir.SumPool2d(kernel_size=np.array((2, 2)), stride=np.array((2, 2)), padding=np.array((0, 0)))
    nodes = {
        "input": nir.Input(input_type=np.array((1, 6, 6))),
        "conv": conv,
        "lif1": lif((2, 6, 6)),
        "pool": pool,
        "lif2": lif((2, 3, 3)),
        "flat": nir.Flatten(input_type={"input": np.array((2, 3, 3))}, start_dim=0),
        "linear": nir.Affine(weight=np.ones((10, 18), np.float32), bias=np.zeros(10, np.float32)),
        "output": nir.Output(output_type=np.array((10,))),
    }
    chain = list(nodes)
    return nir.NIRGraph(nodes=nodes, edges=list(zip(chain, chain[1:])), metadata={"dt": 1e-3})


def test_counts_of_a_two_layer_net_by_hand(two_layer):
    report = fit_graph(two_layer, load_limits())
    first, second = report.populations
    # 3x3 window, padding 1, on 6 positions: 2 + 3 + 3 + 3 + 3 + 2 = 16 inputs per axis
    assert (first.neurons, first.connections, first.stored_weights) == (72, 2 * 16 * 16, 2 * 9)
    # 2x2 sum pool, stride 2: every input read once; one ones-kernel per channel
    assert (second.neurons, second.connections, second.stored_weights) == (18, 72, 2 * 4)
    assert first.graded and not second.graded  # real-valued frames in; spikes in
    assert [h["node"] for h in report.host] == ["input", "flat", "linear"]
    assert report.totals["cores"] == 2 and report.totals["chips"] == 1


def test_cores_split_populations_by_the_limits(two_layer):
    limits = replace(load_limits(), neurons_per_core=40, memory_per_core_bytes=300)
    first = fit_graph(two_layer, limits).populations[0]
    # shared kernels: one channel (36 neurons x 6 bytes of state + its 9 weights) per core
    assert first.cores_shared == 2
    # one weight per connection: n neurons x (6 + 512 / 72 bytes) <= 300 -> n <= 22 -> 4 cores of 18
    assert first.cores_expanded == 4 and first.cores == 2
    tiny = replace(limits, memory_per_core_bytes=200)  # 36 x 6 + 9 > 200: a channel spans two cores
    assert fit_graph(two_layer, tiny).populations[0].cores_shared == 4


def test_a_population_that_fits_no_core_is_reported(two_layer):
    limits = replace(load_limits(), memory_per_core_bytes=9)  # one neuron (6 B) and its weights (>= 4 B) exceed it
    report = fit_graph(two_layer, limits)
    assert report.totals["cores"] is None and report.totals["populations_that_do_not_fit"] == ["lif1", "lif2"]


def test_snnergy_places_attention_products_and_time_means(tmp_path):
    config = load_preset("tiny", image_size=16, embed_dim=16, time_steps=2, num_classes=3)
    checkpoint = from_model(build_model(config, seed=0), ["a", "b", "c"])
    path = tmp_path / "model.pt"
    save_checkpoint(checkpoint, path)
    assert main(["loihi-fit", str(path), "--json", str(tmp_path / "fit.json")]) == 0
    report = json.loads((tmp_path / "fit.json").read_text())
    roles = {h["node"]: h["role"] for h in report["host"]}
    assert roles["stages.2.0.attn.audio.attention"] == "ssa_attention"
    assert roles["stages.0.0.attn.video.fusion.temporal_mean"] == "time_mean"
    assert roles["head.readout"] == "time_mean" and roles["head.audio.linear@scale0"] == "readout"
    processes = {p["name"]: p["process"] for p in report["populations"]}
    assert processes["stages.0.0.attn.audio.fusion.product"] == "ProdNeuron"
    assert processes["stem.audio.out_lif"] == "LIFReset"


def test_placement_of_delays_and_token_means(tmp_path):
    from export.nir_model import build_nir_graph

    config = load_preset("tiny", image_size=16, embed_dim=16, time_steps=2, num_classes=3)
    graph = build_nir_graph(from_model(build_model(config, seed=0), ["a", "b", "c"]))
    placements = place(graph)
    assert placements["stages.0.0.attn.audio.fusion.spatial_mean"].process == "Conv"
    assert placements["stages.0.0.attn.audio.temporal.q_proj@tap1.delay0"].process == "DelaySparse"
    assert {p.where for p in placements.values()} == {NEUROCORE, HOST}


def test_unknown_chip_and_missing_path_are_one_line_errors(tmp_path, capsys):
    assert main(["loihi-fit", str(tmp_path / "none.pt")]) != 0
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "x.pt").write_bytes(b"x")
    assert main(["loihi-fit", str(tmp_path / "x.pt"), "--chip", "loihi9"]) != 0
    assert "built-in: ['loihi2']" in capsys.readouterr().err


def test_relays_and_clocks_of_the_stock_form_are_counted_by_hand(two_layer):
    """lif1 feeds lif2 twice: through a pool (one synapse, one step) and through lifm (two
    steps), so the pool's spikes wait one step in a delay line of 72 relays; lifm reads lif1
    also through a causal tap of one step: 72 relays gated by one clock."""
    nodes = dict(two_layer.nodes)
    pool = nodes["pool"]
    nodes.update({"pool_m": pool, "pool_tap": pool, "lifm": lif((2, 3, 3))})
    nodes["tap"] = nir.Delay(delay=np.full((2, 6, 6), 1e-3))
    edges = list(two_layer.edges) + [
        ("lif1", "pool_m"),
        ("pool_m", "lifm"),
        ("lif1", "tap"),
        ("tap", "pool_tap"),
        ("pool_tap", "lifm"),
        ("lifm", "lif2"),
    ]
    graph = nir.NIRGraph(nodes=nodes, edges=edges, metadata={"dt": 1e-3, "time_steps": 4})
    report = fit_graph(graph, load_limits())
    support = {p.name: p for p in report.populations if p.role != "model"}
    assert {(p.role, p.process, p.neurons, p.connections) for p in support.values()} == {
        ("relay", "LIF", 72, 72 + 72),  # the tap: an identity synapse and the clock's inhibition per neuron
        ("relay", "LIF", 72, 72),  # the delay line: an identity synapse
        ("clock", "LIFReset", 1, 0),
    }
    assert report.totals["relay_and_clock_neurons"] == 145
    assert report.totals["neurons"] == 72 + 18 + 18 + 145
