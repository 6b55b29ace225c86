"""Energy accounting: exact SOP counts, cost models, and the PyTorch spike probe."""

from __future__ import annotations

import json

import pytest
import torch
from spikingjelly.activation_based import neuron

from energy.accounting import (
    EnergyConventions,
    LayerInput,
    NetworkDescription,
    Population,
    SpikeCounts,
    SynapticLayer,
    account,
)
from energy.cost_model import CostModelError, builtin_cost_models, load_cost_model
from energy.estimate import network_energy
from energy.torch_probe import collect_spike_counts, describe_model
from snnergy.config import load_preset
from snnergy.model import build_model

# ----------------------------------------------------------------------------- pure accounting


def two_layer_network() -> NetworkDescription:
    """input (real) -> conv -> A (8 neurons) -> linear (fan-out 3) -> B (3 neurons); T = 2."""
    populations = (Population("A", "stage1", 8, "q"), Population("B", "stage2", 3, "k"))
    layers = (
        SynapticLayer("encode", "stage1", "conv", dense_ops=40, real_valued=True, reads="analog input"),
        SynapticLayer("fc", "stage2", "linear", dense_ops=24, inputs=(LayerInput(("A",), 3.0, 8),)),
    )
    return NetworkDescription(2, populations, layers)


def two_layer_counts() -> SpikeCounts:
    # summed over 2 samples: A fires 5 then 3 spikes, B fires 2 then 0
    return SpikeCounts(samples=2, time_steps=2, counts={"A": (5.0, 3.0), "B": (2.0, 0.0)})


def test_hand_built_network_has_exact_sops_and_macs():
    result = account(two_layer_network(), two_layer_counts())
    encode, fc = result.layers
    assert encode.macs == 40 * 2 and encode.sops == 0  # dense ops x T, per inference
    assert fc.sops == (5 + 3) * 3 / 2  # spikes arriving x fan-out, per inference
    assert fc.sops_per_timestep == (7.5, 4.5)
    assert fc.arriving_spikes == 4.0
    assert fc.input_rate == pytest.approx(4.0 / (8 * 2))
    a, b = result.populations
    assert (a.spikes, a.firing_rate) == (4.0, 4.0 / 16) and (b.spikes, b.firing_rate) == (1.0, 1.0 / 6)
    stage1, stage2 = result.stages[1], result.stages[2]
    assert (stage1.macs, stage1.sops, stage1.spikes) == (80, 0, 4.0)
    assert (stage2.sops, stage2.macs, stage2.spikes) == (12.0, 0, 1.0)
    assert result.total.sops == 12.0 and result.total.macs == 80.0 and result.total.dense_ops == 80 + 48


def test_stream_input_sums_its_constituents():
    populations = tuple(
        Population(name, "stage1", 4, role) for name, role in (("X", "spds"), ("P", "attn_out"), ("M", "mlp2"))
    )
    layer = SynapticLayer("fc1", "stage1", "linear", dense_ops=4 * 16, inputs=(LayerInput(("X", "P", "M"), 16.0, 4),))
    counts = SpikeCounts(1, 1, {"X": (2.0,), "P": (1.0,), "M": (3.0,)})
    (fc1,) = account(NetworkDescription(1, populations, (layer,)), counts).layers
    assert fc1.sops == (2 + 1 + 3) * 16
    assert fc1.input_rate == 6 / 4  # a stream delivers more than one event per position


def test_energy_arithmetic_for_both_builtin_models():
    result = account(two_layer_network(), two_layer_counts())
    stages, total = network_energy(result, load_cost_model("45nm"))
    assert total.energy_pj == pytest.approx(12 * 0.9 + 80 * 4.6)
    assert total.ann_energy_pj == pytest.approx(128 * 4.6)
    assert stages[1].energy_pj == pytest.approx(80 * 4.6) and stages[2].energy_pj == pytest.approx(12 * 0.9)
    loihi_stages, loihi = network_energy(result, load_cost_model("loihi"))
    neuron_updates, spikes = 8 * 2 + 3 * 2, 4 + 1
    assert loihi.energy_pj == pytest.approx(12 * 23.6 + 80 * 4.6 + neuron_updates * 52.0 + spikes * 30.7)
    assert loihi_stages[2].energy_pj == pytest.approx(12 * 23.6 + 6 * 52.0 + 1 * 30.7)  # stage2: fc and B


def encoder_network(time_steps: int = 4) -> NetworkDescription:
    """video frame -> encode (real-valued, 10 ops) -> V (5 neurons) -> fc (20 ops); audio -> ... -> joint (30 ops)."""
    populations = (Population("V", "stem", 5, "spds"), Population("A", "stem", 5, "spds"))
    video = LayerInput(("V",), 4.0, 5)
    layers = (
        SynapticLayer("encode", "stem", "conv", 10, real_valued=True, upstream=("video",), stateless=True),
        SynapticLayer("audio_encode", "stem", "conv", 10, real_valued=True, upstream=("audio",), stateless=True),
        SynapticLayer("fc", "stage1", "linear", 20, (video,), upstream=("video",)),
        SynapticLayer(
            "joint", "stage1", "linear", 30, (video, LayerInput(("A",), 6.0, 5)), upstream=("audio", "video")
        ),
        SynapticLayer("fused", "stage1", "linear", 7, real_valued=True, upstream=("audio", "video")),  # not stateless
    )
    return NetworkDescription(time_steps, populations, layers)


@pytest.mark.parametrize(
    "charge, static, macs, ann",
    [
        # T = 4. Encoding layers 10 + 10 ops, the real-valued "fused" layer 7 ops; ANN adds fc 20 + joint 30.
        ("once", ("audio", "video"), 10 + 10 + 4 * 7, 10 + 10 + 20 + 30 + 7),
        ("per-timestep", ("audio", "video"), 4 * (10 + 10 + 7), 4 * 77),
        ("once", ("video",), 10 + 4 * 10 + 4 * 7, 10 + 4 * 10 + 20 + 4 * 30 + 4 * 7),  # chunked audio
        ("once", (), 4 * 27, 4 * 77),  # nothing known constant: every step charged
    ],
)
def test_static_inputs_are_charged_as_the_conventions_say(charge, static, macs, ann):
    counts = SpikeCounts(1, 4, {"V": (1.0, 0.0, 0.0, 0.0), "A": (0.0,) * 4}, static)
    result = account(encoder_network(), counts, EnergyConventions.named(charge))
    assert result.total.macs == macs
    assert result.total.dense_ops == ann
    assert result.total.sops == 1 * 4.0 * 2  # the V spike reaches fc and joint: SOPs never change


def test_conventions_reject_unknown_choices():
    with pytest.raises(ValueError, match="ann_static_input must be one of"):
        EnergyConventions("twice")
    with pytest.raises(ValueError, match="stateless layer is real-valued"):
        SynapticLayer("l", "stem", "linear", 1, (LayerInput(("A",), 1.0, 1),), stateless=True, upstream=("audio",))


def test_description_rejects_mismatched_sources_and_counts():
    with pytest.raises(ValueError, match="unknown source"):
        NetworkDescription(1, (), (SynapticLayer("l", "stem", "linear", 1, (LayerInput(("nope",), 1.0, 1),)),))
    with pytest.raises(ValueError, match="positions"):
        too_wide = SynapticLayer("l", "stem", "linear", 1, (LayerInput(("A",), 1.0, 4),))
        NetworkDescription(1, (Population("A", "stem", 3, "q"),), (too_wide,))
    with pytest.raises(ValueError, match="missing"):
        account(two_layer_network(), SpikeCounts(2, 2, {"A": (1.0, 1.0)}))


# ----------------------------------------------------------------------------- cost models


def test_builtin_cost_models_carry_their_sources():
    assert {"45nm", "loihi"} <= set(builtin_cost_models())
    nm45, loihi = load_cost_model("45nm"), load_cost_model("loihi")
    assert (nm45.synaptic_op_pj, nm45.mac_pj) == (0.9, 4.6) and "Horowitz" in nm45.source
    assert loihi.synaptic_op_pj == 23.6 and loihi.neuron_update_pj == 52.0 and "Davies" in loihi.source


def test_cost_model_file_with_missing_field_names_field_and_file(tmp_path):
    path = tmp_path / "chip.yaml"
    path.write_text("name: chip\nsource: a datasheet\nenergy_pj: {synaptic_op: 1.0, neuron_update: 0, spike: 0}\n")
    with pytest.raises(CostModelError, match=r"chip\.yaml.*missing field 'energy_pj\.mac'"):
        load_cost_model(path)
    path.write_text("name: chip\nenergy_pj: {synaptic_op: 1.0, mac: 2, neuron_update: 0, spike: 0}\n")
    with pytest.raises(CostModelError, match="missing field 'source'"):
        load_cost_model(path)
    with pytest.raises(CostModelError, match="unknown cost model"):
        load_cost_model("no-such-model")


def test_custom_cost_model_from_yaml_and_json_paths(tmp_path):
    yaml_path = tmp_path / "mine.yaml"
    yaml_path.write_text(
        "name: mine\nsource: measured\nenergy_pj: {synaptic_op: 2, mac: 10, neuron_update: 1, spike: 0.5}\n"
    )
    json_path = tmp_path / "mine.json"
    energies = {"synaptic_op": 2, "mac": 10, "neuron_update": 1, "spike": 0.5}
    json_path.write_text(json.dumps({"name": "mine-json", "source": "x", "energy_pj": energies}))
    for path in (yaml_path, str(json_path)):
        cost = load_cost_model(path)
        _, total = network_energy(account(two_layer_network(), two_layer_counts()), cost)
        assert total.energy_pj == pytest.approx(12 * 2 + 80 * 10 + 22 * 1 + 5 * 0.5)
    with pytest.raises(CostModelError, match="number"):
        yaml_path.write_text("name: m\nsource: s\nenergy_pj: {synaptic_op: fast, mac: 1, neuron_update: 0, spike: 0}\n")
        load_cost_model(yaml_path)


# ----------------------------------------------------------------------------- torch probe


def tiny_model(**overrides):
    config = load_preset("tiny", image_size=16, embed_dim=16, time_steps=2, num_classes=3, **overrides)
    model = build_model(config).eval()
    with torch.no_grad():  # an untrained model barely fires; raise BN gains so every layer spikes
        for name, param in model.named_parameters():
            if name.endswith("bn.weight"):
                param.fill_(3.0)
            elif name.endswith("bn.bias"):  # CMQKA's fused input is small: bias its output layer harder
                param.fill_(1.35 if "attn" in name and "out_proj" in name else 0.8)
    return model


def batch(config, size: int = 3, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    shape = (size, config.time_steps, 1, config.image_size, config.image_size)
    return torch.rand(shape, generator=g) * 2, torch.rand((size, *shape[1:2], 3, *shape[3:]), generator=g) * 2


@pytest.fixture(scope="module")
def probed():
    """A tiny hybrid model, its description, one probed batch and independently hooked tensors."""
    model = tiny_model(depths=(2, 1, 1))
    description = describe_model(model)
    audio, video = batch(model.config)
    seen: dict[str, torch.Tensor] = {}
    handles = []
    for name, module in model.named_modules():
        if isinstance(module, (neuron.BaseNode, torch.nn.MaxPool2d)):
            handles.append(
                module.register_forward_hook(lambda m, a, out, name=name: seen.__setitem__(name, out.detach()))
            )
        if name.endswith(".conv"):
            handles.append(
                module.register_forward_hook(lambda m, a, out, name=name: seen.__setitem__(name + ":in", a[0].detach()))
            )
    features: dict[str, torch.Tensor] = {}
    attn = model.stages[0][0].attn["audio"]
    original = attn.spatial_features

    def spatial_features(*args):
        out = original(*args)
        features["F_s"] = out.detach()
        return out

    attn.spatial_features = spatial_features
    counts = collect_spike_counts(model, description, [(audio, video, None)])
    del attn.spatial_features
    for handle in handles:
        handle.remove()
    return model, description, counts, account(description, counts), seen, features


def layer(result, name):
    return next(item for item in result.layers if item.name == name)


def test_probe_counts_equal_independent_hooks(probed):
    model, description, counts, result, seen, features = probed
    assert counts.samples == 3
    for population in description.populations:
        if not population.computed_from:
            spikes = seen[population.name]
            assert set(spikes.unique().tolist()) <= {0.0, 1.0}
            assert counts.counts[population.name] == tuple(spikes.reshape(spikes.shape[0], -1).sum(1).double().tolist())
    # the AND features, checked against what CMQKA itself computed
    assert sum(counts.counts["stages.0.0.attn.audio.spatial_features"]) == features["F_s"].sum().item() > 0
    # a token projection by hand: spikes arriving x fan-out (= C_out for a 1x1 conv)
    fc2 = model.stages[0][0].mlp["audio"].fc2.conv
    expected = seen["stages.0.0.mlp.audio.fc2.conv:in"].sum().item() * fc2.out_channels
    assert layer(result, "stages.0.0.mlp.audio.fc2").sops * counts.samples == pytest.approx(expected) and expected > 0
    # a 3x3 conv by hand: mean fan-out C_out * 9 for stride 1, padding 1
    conv = model.stem["video"].deep[3].conv
    expected = seen["stem.video.deep.3.conv:in"].sum().item() * conv.out_channels * 9
    assert layer(result, "stem.video.deep.3").sops * counts.samples == pytest.approx(expected) and expected > 0


def test_stream_constituents_follow_the_block_structure(probed):
    model, description, counts, result, seen, _ = probed
    by_name = {item.name: item for item in description.layers}
    stem, p0, m0 = "stem.audio.out_lif", "stages.0.0.attn.audio.out_lif", "stages.0.0.mlp.audio.lif2"
    p1, m1 = "stages.0.1.attn.audio.out_lif", "stages.0.1.mlp.audio.lif2"
    assert by_name["stages.0.0.attn.audio.spatial.q_proj"].inputs[0].sources == (stem,)
    assert by_name["stages.0.0.attn.audio.spatial.k_proj"].inputs[0].sources == (
        "stem.video.out_lif",
    )  # the other modality
    assert by_name["stages.0.0.mlp.audio.fc1"].inputs[0].sources == (stem, p0)
    assert by_name["stages.0.1.attn.audio.temporal.q_proj"].inputs[0].sources == (stem, p0, m0)
    assert by_name["down.0.audio.deep.0"].inputs[0].sources == (stem, p0, m0, p1, m1)
    assert by_name["down.0.audio.shortcut"].inputs[0].sources == (stem, p0, m0, p1, m1)
    # the structure matches the tensors: fc1 reads X + alpha * P, the next SPDS reads X + alpha P + M + ...
    alpha0 = model.stages[0][0].alpha["audio"].item()
    alpha1 = model.stages[0][1].alpha["audio"].item()
    assert seen[p0].sum() > 0 and seen[m0].sum() > 0 and seen[p1].sum() > 0
    x = seen[stem].flatten(3)  # [T, B, C, H, W] -> tokens [T, B, C, N]
    assert torch.allclose(seen["stages.0.0.mlp.audio.fc1.conv:in"], x + alpha0 * seen[p0])
    stream = x + alpha0 * seen[p0] + seen[m0] + alpha1 * seen[p1] + seen[m1]
    assert torch.allclose(
        seen["down.0.audio.deep.0.conv:in"], stream.reshape(seen["down.0.audio.deep.0.conv:in"].shape)
    )
    # SOPs of a stream reader = (sum of its constituents' spikes) x fan-out
    fc1 = layer(result, "stages.0.1.mlp.audio.fc1")
    arriving = sum(sum(counts.counts[s]) for s in (stem, p0, m0, "stages.0.1.attn.audio.out_lif"))
    assert fc1.sops * counts.samples == pytest.approx(arriving * model.stages[0][1].mlp["audio"].fc1.conv.out_channels)


def test_nothing_is_counted_twice(probed):
    model, description, counts, result, seen, _ = probed
    hooked = sum(seen[p.name].sum().item() for p in description.populations if not p.computed_from)
    counted = sum(p.spikes for p in result.populations if p.role != "and") * counts.samples
    assert counted == pytest.approx(hooked)
    modules = dict(model.named_modules())
    for item in result.layers:  # each source once per tap of the layer (a causal tap reads it again, delayed)
        taps = getattr(modules.get(item.name), "taps", 1)
        assert len(set(item.sources)) * taps == len(item.sources), item.name
    assert any(getattr(modules.get(item.name), "taps", 1) == 2 for item in result.layers)
    # every weight layer appears once; real-valued layers are exactly the documented ones
    real = {item.name for item in result.layers if item.input_rate is None}
    assert real == {
        "stem.audio.deep.0",
        "stem.audio.shortcut",
        "stem.video.deep.0",
        "stem.video.shortcut",
        "head",
        *(
            f"stages.{s}.{b}.attn.{m}.{part}"
            for s, b in ((0, 0), (0, 1), (1, 0))
            for m in ("audio", "video")
            for part in ("fusion_product", "out_proj")
        ),
    }
    for stage in result.stages:
        assert stage.name in ("stem", "stage1", "stage2", "stage3", "head")


def test_probe_sees_which_inputs_repeat_one_frame_and_charges_those_once():
    model = tiny_model()
    steps = model.config.time_steps
    audio, video = batch(model.config, size=2)
    video = video[:, :1].expand_as(video).contiguous()  # one frame repeated over T; audio changes
    description = describe_model(model)
    counts = collect_spike_counts(model, description, [(audio, video)])
    assert counts.static_inputs == ("video",)
    charged = {item.name: item for item in account(description, counts).layers}
    dense = {item.name: item.dense_ops for item in description.layers}
    for name in ("stem.video.deep.0", "stem.video.shortcut"):
        assert charged[name].macs == dense[name]  # the SNN's encoding layers on the repeated frame: once
    assert charged["stem.audio.deep.0"].macs == steps * dense["stem.audio.deep.0"]
    # the ANN equivalent of the video branch's queries sees only video (once); its keys read audio (every step)
    query, key = "stages.0.0.attn.video.spatial.q_proj", "stages.0.0.attn.video.spatial.k_proj"
    assert (charged[query].dense_ops, charged[key].dense_ops) == (dense[query], steps * dense[key])
    assert charged["head"].dense_ops == steps * dense["head"]


def test_an_ann_on_a_repeated_frame_charges_exactly_its_distinct_steps():
    """Nothing in an ANN carries state between steps: on a repeated frame a layer's activations differ only in
    the first steps that a causal tap over time fills with zeros. The accounting charges that many steps."""
    model = build_model(load_preset("tiny-ann", image_size=16, embed_dim=16, time_steps=4, num_classes=3)).eval()
    description = describe_model(model)
    audio, video = batch(model.config, size=2)
    audio, video = (x[:, :1].expand_as(x).contiguous() for x in (audio, video))
    seen = {}
    for name, module in model.named_modules():
        if isinstance(module, (torch.nn.Conv1d, torch.nn.Conv2d)):
            module.register_forward_hook(lambda m, a, out, name=name: seen.__setitem__(name, a[0].detach()))
    with torch.no_grad():
        model(audio, video)
    counts = SpikeCounts(2, 4, {}, static_inputs=("audio", "video"))
    charged = {item.name: item.ann_charged_steps for item in account(description, counts).layers}
    checked = set()
    for name, inputs in seen.items():  # [T, B, ...]: count the steps whose input differs from every earlier one
        layer_name = name.removesuffix(".conv")
        distinct = sum(1 for t in range(4) if all(not torch.equal(inputs[t], inputs[s]) for s in range(t)))
        assert charged[layer_name] == distinct, layer_name
        checked.add(distinct)
    assert checked == {1, 2}  # most layers once; the causal temporal projections twice (mean_T ends the effect)


@pytest.mark.parametrize(
    "overrides", [dict(attention="all-ssa"), dict(attention="all-cmqka", cmqka_pathways="spatial")]
)
def test_every_layout_is_described_and_counted(overrides):
    model = tiny_model(**overrides)
    description = describe_model(model)
    result = account(description, collect_spike_counts(model, description, [batch(model.config, size=2)]))
    kinds = {item.kind for item in result.layers}
    if overrides["attention"] == "all-ssa":
        assert {"qk_product", "av_product"} <= kinds and "mask_and" not in kinds
        qk = layer(result, "stages.2.0.attn.audio.qk_product")
        q = next(p for p in result.populations if p.name == "stages.2.0.attn.audio.q_lif")
        assert qk.sops == pytest.approx(q.spikes * model.config.stage_tokens[2])
    else:
        assert "fusion_product" not in kinds  # spatial-only: one factor, no product
        pooled = layer(result, "stages.0.0.attn.audio.fusion_sum")  # mean_N accumulates the AND spikes
        assert pooled.sources == ("stages.0.0.attn.audio.spatial_features",)
        assert layer(result, "stages.0.0.attn.audio.out_proj").macs > 0  # W_o reads the real-valued mean
