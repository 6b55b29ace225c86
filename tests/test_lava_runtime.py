"""The Lava runtime: an exported package simulated as Lava processes matches PyTorch.

The model is a seeded random ``tiny``-layout network at 16x16, T=2, whose BN scales and
biases are drawn so that every stage fires (a plain random init is silent, which would
make spike parity trivial). Inputs are random; three samples in two lanes exercise
streaming samples back to back and a padded lane.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from fixtures_models import make_lively

from energy.accounting import account, description_from_dict, description_to_dict
from export.lava_package import write_lava_package
from lava_runtime.network import load_package, simulate
from lava_runtime.plan import build_plan, group_processes, run_order
from snnergy.checkpoint import from_model, save_checkpoint
from snnergy.cli import main as snnergy_main
from snnergy.config import load_preset
from snnergy.model import build_model
from snnergy.simulate import agreement, pytorch_reference, spike_counts_of

MICRO = dict(image_size=16, embed_dim=16, time_steps=2, num_classes=10)


def lively_model(seed: int = 4):
    """A random model whose BN affine parameters make every population fire."""
    return make_lively(build_model(load_preset("tiny", **MICRO), seed=seed))


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("lava-runtime")
    model = lively_model()
    checkpoint_path = save_checkpoint(from_model(model, [str(i) for i in range(10)]), root / "micro.pt")
    write_lava_package(
        from_model(model, [str(i) for i in range(10)]), root / "micro.lava", fixed_point=True, source=checkpoint_path
    )
    generator = torch.Generator().manual_seed(0)
    audio = torch.rand((3, *model.expected_shape("audio", 1)[1:]), generator=generator).numpy()
    video = torch.rand((3, *model.expected_shape("video", 1)[1:]), generator=generator).numpy()
    logits, trains, _ = pytorch_reference(checkpoint_path, audio, video)
    return {
        "root": root,
        "package": load_package(root / "micro.lava"),
        "audio": audio,
        "video": video,
        "logits": logits,
        "trains": trains,
    }


def test_plan_groups_nodes_and_lines_up_paths_after_time_means(exported):
    package = exported["package"]
    plan = build_plan(package.graph, package.time_steps)
    lif_nodes = [name for name, node in package.graph.nodes.items() if type(node).__name__ == "LIF"]
    assert sorted(p.name for p in plan.processes.values() if p.kind == "lif") == sorted(
        lif_nodes
    )  # one core per population
    assert plan.count("synapses") == 3  # only the readout's chains live outside a neuron core
    assert len(plan.processes) < len(package.graph.nodes) / 1.8
    # hybrid tiny: two CMQKA stages (one time mean each on the longest path) and the readout's time mean
    assert plan.latency == 3 * package.time_steps
    for process in plan.processes.values():  # every input arrives aligned, after its delay
        if process.kind == "lif":
            delays = [d for group in process.params["inputs"] for d in group["delays"]]
            arrivals = {plan.processes[s].latency + d for s, d in zip(process.sources, delays)}
            assert arrivals == {process.latency}, process.name
        elif process.kind != "input":
            assert {plan.processes[s].latency for s in process.sources} == {process.params["input_latency"]}, (
                process.name
            )


def test_float_simulation_matches_pytorch_spike_for_spike(exported):
    package = exported["package"]
    result = simulate(package, exported["audio"], exported["video"], mode="float", lanes=2)
    spike_fraction, per_population = agreement(result.spikes, exported["trains"])
    spikes_by_part = {}
    for name, spikes in result.spikes.items():
        part = ".".join(name.split(".")[:2])  # stem.<modality>, stages.<s>, down.<s>
        spikes_by_part[part] = spikes_by_part.get(part, 0) + int(spikes.sum())
    assert set(spikes_by_part) == {"stem.audio", "stem.video", "stages.0", "down.0", "stages.1", "down.1", "stages.2"}
    assert min(spikes_by_part.values()) > 100  # every part of the network fires
    assert spike_fraction == 1.0, sorted(per_population.items(), key=lambda kv: kv[1])[:3]
    np.testing.assert_array_equal(result.predictions, exported["logits"].argmax(axis=1))
    np.testing.assert_allclose(result.logits, exported["logits"], atol=1e-4)
    assert result.latency == 3 * package.time_steps and result.steps == 2 * package.time_steps + result.latency
    description = description_from_dict(json.loads((package.path / "energy.json").read_text()))
    lava_sops = account(description, spike_counts_of(result.spikes, package.time_steps)).total.sops
    torch_sops = account(description, spike_counts_of(exported["trains"], package.time_steps)).total.sops
    assert lava_sops == torch_sops > 0


def test_fixed_point_simulation_stays_close_to_pytorch(exported):
    result = simulate(exported["package"], exported["audio"], exported["video"], mode="fixed", lanes=3)
    spike_fraction, _ = agreement(result.spikes, exported["trains"])
    assert 0.97 <= spike_fraction < 1.0  # quantisation flips a few spikes, never many
    assert np.abs(result.logits - exported["logits"]).max() < 0.5


def test_energy_description_round_trips_and_names_nir_populations(exported):
    package = exported["package"]
    description = description_from_dict(json.loads((package.path / "energy.json").read_text()))
    spiking = [p for p in description.populations if not p.computed_from]
    assert spiking and all(type(package.graph.nodes[p.name]).__name__ == "LIF" for p in spiking)
    assert description_from_dict(json.loads(json.dumps(description_to_dict(description)))) == description


def test_bad_inputs_fail_clearly(exported, tmp_path):
    package = exported["package"]
    with pytest.raises(ValueError, match="audio input must be"):
        simulate(package, exported["audio"][:, :1], exported["video"])
    with pytest.raises(ValueError, match="mode must be"):
        simulate(package, exported["audio"], exported["video"], mode="double")
    with pytest.raises(ValueError, match="not an SNNergy Lava package"):
        load_package(tmp_path)
    float_only = tmp_path / "float.lava"
    write_lava_package(from_model(lively_model(), [str(i) for i in range(10)]), float_only)
    with pytest.raises(ValueError, match="--fixed-point"):
        simulate(load_package(float_only), exported["audio"], exported["video"], mode="fixed")


def test_cli_simulate_writes_the_json_report(exported, avdigits_cache, tmp_path, capsys):
    out = tmp_path / "sim.json"
    code = snnergy_main(
        [
            "simulate",
            str(exported["root"] / "micro.lava"),
            "--cache-dir",
            str(avdigits_cache),
            "--samples",
            "4",
            "--lanes",
            "4",
            "--json",
            str(out),
        ]
    )
    assert code == 0
    result = json.loads(out.read_text())
    assert result["samples"] == 4 and result["mode"] == "float"
    for key in ("accuracy", "prediction_agreement", "spike_agreement"):
        assert 0.0 <= result[key] <= 1.0
    assert result["prediction_agreement"] == 1.0 and result["spike_agreement"] == 1.0
    assert result["sops"]["lava"] == result["sops"]["pytorch"]
    assert [s["name"] for s in result["energy"]["stages"]] == ["stem", "stage1", "stage2", "stage3", "head"]
    assert "spike agreement" in capsys.readouterr().out


def test_cli_simulate_refuses_a_changed_source_checkpoint(exported, tmp_path, capsys):
    checkpoint = tmp_path / "source.pt"
    model = lively_model()
    save_checkpoint(from_model(model, [str(i) for i in range(10)]), checkpoint)
    write_lava_package(from_model(model, [str(i) for i in range(10)]), tmp_path / "pkg", source=checkpoint)
    save_checkpoint(from_model(lively_model(seed=5), [str(i) for i in range(10)]), checkpoint)
    assert snnergy_main(["simulate", str(tmp_path / "pkg"), "--samples", "1"]) != 0
    assert "changed since the package was exported" in capsys.readouterr().err


def test_block_grouping_runs_each_block_and_modality_in_one_lava_process(exported):
    package = exported["package"]
    plan = build_plan(package.graph, package.time_steps)
    groups = group_processes(plan, "block")
    blocks = ["input", "stem", "stages.0.0", "down.0", "stages.1.0", "down.1", "stages.2.0", "head"]
    expected = {f"{block}.{modality}" for block in blocks for modality in ("audio", "video")} | {"head"}

    def owner(name: str) -> str:  # the block and modality a node belongs to, from its module path
        parts = name.split("@")[0].split(".")
        if parts[0] == "stages":  # stages.<s>.<b>.attn|mlp.<modality>...
            return ".".join([*parts[:3], parts[4]])
        if parts[0] == "down":  # down.<s>.<modality>...
            return ".".join(parts[:3])
        return ".".join(parts[:2]) if len(parts) > 1 and parts[1] in ("audio", "video") else parts[0]

    keys = {owner(group[0]) for group in groups}
    for group in groups:
        assert {owner(name) for name in group} == {owner(group[0])}, group
    assert keys == expected and len(groups) == len(expected)
    assert sorted(name for group in groups for name in group) == sorted(plan.processes)
    assert [[name] for name in run_order(plan)] == group_processes(plan, "population")
    for group in groups:  # a member never reads a later member of its own group
        for index, name in enumerate(group):
            assert not set(plan.processes[name].sources) & set(group[index:]), name


def test_grouping_changes_nothing_but_the_number_of_lava_processes(exported):
    package = exported["package"]
    block = simulate(package, exported["audio"], exported["video"], mode="fixed", lanes=2, grouping="block")
    population = simulate(package, exported["audio"], exported["video"], mode="fixed", lanes=2, grouping="population")
    assert (block.lava_processes, population.lava_processes) == (
        17,
        len(build_plan(package.graph, package.time_steps).processes),
    )
    np.testing.assert_array_equal(block.logits, population.logits)
    assert block.spikes.keys() == population.spikes.keys()
    for name in block.spikes:
        np.testing.assert_array_equal(block.spikes[name], population.spikes[name], err_msg=name)
    with pytest.raises(ValueError, match="grouping must be one of"):
        simulate(package, exported["audio"], exported["video"], grouping="chip")
