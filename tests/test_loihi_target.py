"""``--target loihi``: the network as stock Lava processes, spike for spike equal to PyTorch.

The model is the seeded, lively ``tiny``-layout network of ``test_lava_runtime`` (16x16,
T=2, every stage firing); its causal taps, CMQKA products and fan-in of different depths
exercise the relays, clocks, delay lines and delayed synapses of ``export.stock_plan``.
"""

from __future__ import annotations

import json

import nir
import numpy as np
import pytest
from fixtures_models import make_lively

from export.loihi_map import HOST
from export.nir_reference import node_shapes
from export.package_format import read_manifest
from export.stock_plan import INHIBITION, build_stock_plan
from lava_runtime.network import load_package
from snnergy.checkpoint import from_model, save_checkpoint
from snnergy.cli import export_main
from snnergy.cli import main as snnergy_main
from snnergy.config import load_preset
from snnergy.model import build_model

MICRO = dict(image_size=16, embed_dim=16, time_steps=2, num_classes=10)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("loihi-target")
    model = make_lively(build_model(load_preset("tiny", **MICRO), seed=4))
    checkpoint = save_checkpoint(from_model(model, [str(i) for i in range(10)]), root / "micro.pt")
    assert export_main([str(checkpoint), "--target", "loihi", "--out", str(root / "micro.loihi")]) == 0
    return root


def test_manifest_places_every_node_with_a_reason(exported):
    manifest = read_manifest(exported / "micro.loihi")
    assert manifest["target"] == "loihi"
    placement = {p["node"]: p for p in manifest["placement"]}
    host = {name for name, p in placement.items() if p["where"] == HOST}
    assert {placement[n]["process"] for n in host} == {"RingBuffer", "time_mean", "ssa_attention", "readout"}
    assert all(placement[n]["why"] for n in host)
    graph = nir.read(exported / "micro.loihi" / "model.nir")
    lifs = [name for name, node in graph.nodes.items() if isinstance(node, nir.LIF)]
    assert {placement[n]["process"] for n in lifs} == {"LIFReset"}


def test_every_neuron_receives_its_inputs_aligned(exported):
    package = load_package(exported / "micro.loihi")
    plan = build_stock_plan(package.graph, package.time_steps, package.manifest["placement"])
    processes = plan.processes
    for process in processes.values():  # a synapse delivers one step after its input, plus its delay
        if process.kind in ("lif", "prod"):
            synapses = [processes[s] for s, _ in process.inputs if processes[s].kind == "sparse"]
            arrivals = {processes[p.inputs[0][0]].latency + 1 + p.params["delay"] for p in synapses}
            assert arrivals == {process.latency}, process.name
    # each causal tap: a relay copying its source one step later, inhibited by a clock at window starts
    relays = [p for p in processes.values() if p.kind == "relay" and ".relay" in p.name]
    assert relays
    for relay in relays:
        gates = [processes[s] for s, _ in relay.inputs if processes[s].kind == "clock_synapse"]
        assert len(gates) == 1 and gates[0].params["weight"] == INHIBITION
        (clock,) = gates[0].inputs
        assert processes[clock[0]].kind == "clock"
    roles = {entry["lava"] for entry in plan.manifest()}
    assert {"LIFReset", "LIF", "Sparse", "DelaySparse", "ProdNeuron", "RingBuffer", "Dense"} <= roles


def test_stock_simulation_matches_pytorch_spike_for_spike(exported, avdigits_cache, tmp_path, capsys):
    out = tmp_path / "sim.json"
    package = str(exported / "micro.loihi")
    code = snnergy_main(["simulate", package, "--cache-dir", str(avdigits_cache), "--samples", "3", "--json", str(out)])
    assert code == 0
    result = json.loads(out.read_text())
    assert result["prediction_agreement"] == 1.0
    assert result["spike_agreement"] == 1.0, result["least_agreeing_population"]
    assert result["sops"]["lava"] == result["sops"]["pytorch"] > 0
    # the relays and clocks the stock form adds are charged: every one of their neurons is updated every step
    support, package_manifest = result["stock_support"], read_manifest(exported / "micro.loihi")
    graph = nir.read(exported / "micro.loihi" / "model.nir")
    shapes = node_shapes(graph)
    tapped = sum(int(np.prod(shapes[name])) for name, node in graph.nodes.items() if isinstance(node, nir.Delay))
    assert support["relay_neurons"] >= tapped > 0  # each causal tap is a population of relays (plus delay lines)
    update_pj = 52.0 * package_manifest["time_steps"] * (support["relay_neurons"] + support["clock_neurons"])
    assert support["energy_uj"] >= update_pj / 1e6 and support["sops"] > 0
    assert result["energy"]["cost_model"]["name"] == "loihi"  # deployment energy under the chip's costs
    assert result["lava"]["grouping"] == "stock" and result["lava"]["lanes"] == 1
    # the stems' straight chains through stock lava-dl netx, in fixed point
    netx = result["netx"]["population_agreement"]
    assert set(netx) == {f"stem.{m}.deep.{i}" for m in ("audio", "video") for i in (1, 2, 4, 5)}
    assert min(netx.values()) > 0.95, netx
    assert "lava-dl netx chains" in capsys.readouterr().out


def test_netx_files_round_trip_through_lava_dl(exported):
    from lava.lib.dl import netx

    from export.lava_package import quantise

    package = load_package(exported / "micro.loihi")
    arrays = quantise(package.graph)
    (chain,) = [c for c in package.manifest["netx"] if c["input"] == "input.video"]
    network = netx.hdf5.Network(net_config=str(package.path / chain["file"]), input_message_bits=24)
    assert len(network.layers) == len(chain["populations"]) == 4
    # layer 3: the second conv of the stem, weights as the package quantised them (Lava: [out, x, y, in], flipped)
    population = chain["populations"][2]
    weight = arrays[f"{population}/in/stem.video.deep.3/weight_mant"]
    lava_weight = network.layers[2].synapse.weight.init
    assert np.array_equal(lava_weight, weight.transpose(0, 3, 2, 1)[:, ::-1, ::-1, :])
    assert int(network.layers[2].neuron.vth.init) == int(arrays[f"{population}/vth_mant"])
    assert int(network.layers[2].neuron.dv.init) == int(arrays[f"{population}/dv"])
    # the OR-pool: a conv with one ones kernel per channel, stride 2, into a memoryless threshold neuron
    pool = network.layers[1].synapse
    assert pool.weight.init.shape[-1] == 1 and len(np.unique(pool.weight.init)) == 1


def test_fixed_point_runs_loihi_arithmetic_in_the_stock_processes(exported, avdigits_cache, tmp_path, capsys):
    code = snnergy_main(["simulate", str(exported / "micro.loihi"), "--mode", "fixed", "--samples", "1"])
    assert code != 0 and "--fixed-point" in capsys.readouterr().err  # a float-only package says what to do
    plain = tmp_path / "plain.loihi"
    assert export_main([str(exported / "micro.pt"), "--target", "loihi", "--fixed-point", "--out", str(plain)]) == 0
    cache = ["--cache-dir", str(avdigits_cache)]
    package, record = tmp_path / "tuned.loihi", tmp_path / "tuned.json"
    code = snnergy_main(
        ["finetune", str(exported / "micro.pt"), "--quantize", "loihi", "--out", str(package), "--json", str(record)]
        + ["--train-samples", "8", "--eval-samples", "4", "--epochs", "1", "--batch-size", "4", "--lr", "0.5", *cache]
    )
    assert code == 0
    tuned, exported_integers = np.load(package / "fixed_point.npz"), np.load(plain / "fixed_point.npz")
    weights = [k for k in exported_integers.files if k.endswith("/weight_mant")]
    moved = sum(int((tuned[k] != exported_integers[k]).sum()) for k in weights)
    assert moved == json.loads(record.read_text())["changed_weights"]["moved"] > 0
    assert read_manifest(package)["quantisation"]["fine_tuned"]["settings"]["epochs"] == 1

    out = tmp_path / "fixed.json"
    code = snnergy_main(["simulate", str(package), "--mode", "fixed", "--samples", "2", "--json", str(out), *cache])
    assert code == 0
    result = json.loads(out.read_text())
    assert result["mode"] == "fixed" and result["lava"]["grouping"] == "stock"
    # Lava's bit-accurate processes compute exactly the integers the fine-tuned model computes ...
    emulated = result["fixed_point_emulation"]
    assert emulated["prediction_agreement"] == 1.0
    assert emulated["spike_agreement"] == 1.0, emulated["least_agreeing_population"]
    # ... which are 8-bit weights, 12-bit decays and integer membranes: close to the float model, not equal
    assert 0.9 < result["spike_agreement"] < 1.0


def test_a_network_too_large_to_simulate_is_refused_before_lava_starts(exported, monkeypatch):
    from lava_runtime import stock

    monkeypatch.setattr(stock, "MAX_NEURONS", 1000)
    package = load_package(exported / "micro.loihi")
    audio, video = np.zeros((1, 2, 1, 16, 16)), np.zeros((1, 2, 3, 16, 16))
    with pytest.raises(ValueError, match="neurons; the stock simulation"):
        stock.simulate_stock(package, audio, video)
