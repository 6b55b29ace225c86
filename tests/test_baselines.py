"""Baselines and ablations: what each configuration computes, its accounting, the benchmark."""

from __future__ import annotations

import json
import os

import pytest
import torch
from fixtures_models import make_lively
from spikingjelly.activation_based import neuron

from energy.torch_probe import collect_spike_counts, describe_model
from export.lava_package import write_lava_package
from snnergy.benchmark import BenchmarkPlan, format_markdown, load_entries, run_benchmark, summarise
from snnergy.checkpoint import from_model
from snnergy.config import load_preset
from snnergy.model import build_model

SMALL = dict(image_size=16, embed_dim=16, time_steps=2)
BASELINES = [
    "tiny-late-sum",
    "tiny-late-concat",
    "tiny-late-film",
    "tiny-late-gated",
    "tiny-scmrl",
    "tiny-ann",
    "tiny-audio",
    "tiny-video",
]


def inputs(seed: int = 0, batch: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(batch, 2, 1, 16, 16, generator=generator) * 3, torch.rand(
        batch, 2, 3, 16, 16, generator=generator
    ) * 3


def stage_outputs(model, audio, video):
    with torch.no_grad():
        return model.forward_stages(audio, video)


@pytest.mark.parametrize("preset", BASELINES)
def test_every_baseline_preset_builds_runs_and_is_accounted(preset):
    model = build_model(load_preset(preset, **SMALL)).eval()
    audio, video = inputs()
    assert model(audio, video).shape == (2, 10)
    description = describe_model(model)  # raises if a layer or neuron is left out
    counts = collect_spike_counts(model, description, [(audio, video)])
    assert counts.samples == 2
    modalities = {p.modality for p in description.populations}
    assert modalities <= set(model.config.active_modalities)


def test_late_fusion_keeps_modalities_apart_until_the_head():
    audio, video = inputs()
    _, other_video = inputs(seed=1)
    late = make_lively(build_model(load_preset("tiny-late-sum", **SMALL)))
    cross = make_lively(build_model(load_preset("tiny", **SMALL)))
    late_a, late_b = stage_outputs(late, audio, video), stage_outputs(late, audio, other_video)
    assert torch.equal(late_a["stage3"]["audio"], late_b["stage3"]["audio"])  # audio stream never reads video
    assert not torch.equal(late_a["head"]["logits"], late_b["head"]["logits"])  # the head fuses
    cross_a, cross_b = stage_outputs(cross, audio, video), stage_outputs(cross, audio, other_video)
    assert not torch.equal(cross_a["stage3"]["audio"], cross_b["stage3"]["audio"])  # CMQKA exchanges modalities


def test_single_modality_models_ignore_the_other_input():
    audio, video = inputs()
    _, other_video = inputs(seed=1)
    model = make_lively(build_model(load_preset("tiny-audio", **SMALL)))
    with torch.no_grad():
        assert torch.equal(model(audio, video), model(audio, other_video))
    assert not any(name.startswith("stem.video") for name, _ in model.named_modules())


def test_ann_counterpart_has_the_same_layers_and_no_spiking_neuron():
    ann, snn = build_model(load_preset("tiny-ann", **SMALL)), build_model(load_preset("tiny", **SMALL))
    assert sum(p.numel() for p in ann.parameters()) == sum(p.numel() for p in snn.parameters())
    assert not any(isinstance(m, neuron.BaseNode) for m in ann.modules())
    description = describe_model(ann)
    assert not description.populations and all(layer.real_valued for layer in description.layers)
    assert sum(layer.dense_ops for layer in description.layers) == sum(
        layer.dense_ops for layer in describe_model(snn).layers
    )


def test_scmrl_baseline_attends_over_tokens_and_over_time_and_fuses_as_s_cmrl():
    model = build_model(load_preset("tiny-scmrl", **SMALL))
    assert model.config.stage_attention == ("scmrl", "scmrl", "scmrl")
    block = model.stages[0][0]
    assert block.residual_weight("audio") == 1.5 and block.alpha is None  # fixed, not learned
    attn = block.attn["audio"].train()  # batch statistics: BN puts its neurons in their working range
    assert (attn.spatial.scale, attn.temporal.scale, attn.spatial.attn_lif.v_threshold) == (0.25, 0.25, 1.0)
    seen = {}

    def keep(name):
        return lambda module, args, out: seen.__setitem__(name, (args, out))

    for name in ("q_lif", "k_lif", "v_lif", "attn_lif", "out_lif"):
        for part in ("spatial", "temporal"):
            getattr(getattr(attn, part), name).register_forward_hook(keep(f"{part}.{name}"))
    attn.fusion.register_forward_hook(keep("fusion"))
    generator = torch.Generator().manual_seed(3)
    query, key = (torch.rand(4, 3, 16, 9, generator=generator) < 0.5 for _ in range(2))  # spikes [T, B, C, N]
    with torch.no_grad():
        attn(query.float(), key.float())
    heads = model.config.num_heads

    def split(x):  # [T, B, C, N] -> [T, B, H, C/H, N]
        return x.unflatten(2, (heads, x.shape[2] // heads))

    for part, product in (
        # spatial: token n of step t attends to every token m of the same step
        ("spatial", "tbhcn,tbhcm,tbhdm->tbhdn"),
        # temporal: step t of token n attends to every step s of the same token
        ("temporal", "tbhcn,sbhcn,sbhdn->tbhdn"),
    ):
        q, k, v = (split(seen[f"{part}.{name}"][1]) for name in ("q_lif", "k_lif", "v_lif"))
        assert q.sum() > 0 and k.sum() > 0 and v.sum() > 0
        expected = 0.25 * torch.einsum(product, q, k, v).flatten(2, 3)
        assert torch.allclose(seen[f"{part}.attn_lif"][0][0], expected), part
    # fusion: mean over tokens of the spatial output times mean over time of the temporal output
    (spatial, temporal), fused = seen["fusion"]
    assert torch.equal(spatial, seen["spatial.out_lif"][1].mean(dim=3, keepdim=True))
    assert torch.equal(temporal, seen["temporal.out_lif"][1].mean(dim=0, keepdim=True))
    assert torch.equal(fused, spatial * temporal)


def test_presets_extend_and_merge_nested_sections():
    config = load_preset("tiny-ann")
    assert config.neuron.spiking is False and config.neuron.tau == load_preset("tiny").neuron.tau
    assert config.embed_dim == load_preset("tiny").embed_dim


@pytest.mark.parametrize("preset", ["tiny-late-film", "tiny-scmrl"])
def test_export_refuses_a_baseline_clearly(tmp_path, preset):
    checkpoint = from_model(build_model(load_preset(preset, **SMALL)))
    with pytest.raises(ValueError, match="baseline"):
        write_lava_package(checkpoint, tmp_path / "pkg")


def test_benchmark_trains_measures_tabulates_and_resumes(tmp_path, avdigits_cache):
    entries = ["snnergy-cmqka-hybrid", "ann-counterpart-relu"]
    plan = BenchmarkPlan(
        epochs=1, seeds=2, energy_samples=4, device="cpu", cache_dir=str(avdigits_cache), limit_train_batches=1, jobs=2
    )
    kwargs = dict(plan=plan, out_dir=tmp_path, entries=entries)
    document = run_benchmark(**kwargs)
    rows = {row["name"]: row for row in document["rows"]}
    snn, ann = rows["SNNergy (CMQKA hybrid)"], rows["ANN counterpart (ReLU)"]
    assert snn["type"] == "SNN" and ann["type"] == "ANN" and ann["sops"] == 0 and ann["macs"] > snn["macs"]
    assert 0.0 <= snn["accuracy_mean"] <= 1.0 and snn["parameters"] == ann["parameters"]
    runs = {(r["name"], r["seed"]): r for r in document["runs"]}
    assert len(runs) == 4 and all(
        (tmp_path / slug / f"seed{k}" / "log.txt").is_file() for slug in entries for k in (0, 1)
    )
    difference = [
        runs[("ANN counterpart (ReLU)", k)]["accuracy"] - runs[("SNNergy (CMQKA hybrid)", k)]["accuracy"]
        for k in (0, 1)
    ]
    assert ann["delta_vs_reference"] == pytest.approx(sum(difference) / 2) and snn["delta_vs_reference"] is None
    assert all(r["peak_train_memory_mib"] > 100 and r["threads"] == max(1, os.cpu_count() // 2) for r in runs.values())
    assert {p.name for p in tmp_path.iterdir()} >= {"benchmark.md", "benchmark.json", "benchmark.png"}
    markdown = (tmp_path / "benchmark.md").read_text()
    assert "| SNNergy (CMQKA hybrid) | SNN | 4 |" in markdown and "ANN counterpart" in markdown
    first = (tmp_path / "snnergy-cmqka-hybrid" / "seed0" / "result.json").stat().st_mtime_ns
    again = run_benchmark(**kwargs)  # finished runs are read back, not retrained
    assert (tmp_path / "snnergy-cmqka-hybrid" / "seed0" / "result.json").stat().st_mtime_ns == first
    assert (
        again["runs"] == document["runs"]
        and json.loads((tmp_path / "benchmark.json").read_text())["rows"] == again["rows"]
    )


def test_benchmark_table_reports_the_spread_over_seeds():
    runs = [
        {
            "name": "m",
            "group": "model",
            "type": "SNN",
            "fusion": "cross",
            "modalities": "both",
            "time_steps": 4,
            "parameters": 10,
            "accuracy": accuracy,
            "sops": 1.0,
            "macs": 2.0,
            "energy_uj": 3.0,
            "train_seconds": 4.0,
            "seed": seed,
        }
        for seed, accuracy in enumerate((0.8, 0.9))
    ]
    (row,) = summarise(runs)
    assert (
        row["seeds"] == 2 and row["accuracy_mean"] == pytest.approx(0.85) and row["accuracy_std"] == pytest.approx(0.05)
    )
    meta = {
        "command": "snnergy benchmark",
        "dataset": "avdigits",
        "split": "test",
        "epochs": 1,
        "seeds": [0, 1],
        "energy_samples": 4,
    }
    assert "85.00 ± 5.00" in format_markdown([row], meta)


def test_benchmark_pairs_each_seed_with_the_reference_seed():
    def run(name, seed, accuracy):
        return {
            "name": name,
            "group": "model",
            "type": "SNN",
            "fusion": "cross",
            "modalities": "both",
            "time_steps": 4,
            "parameters": 1,
            "accuracy": accuracy,
            "sops": 0.0,
            "macs": 0.0,
            "energy_uj": 1.0,
            "train_seconds": 1.0,
            "seed": seed,
        }

    runs = [run("ref", k, a) for k, a in enumerate((0.8, 0.9, 0.7))]
    runs += [run("other", k, a) for k, a in ((2, 0.75), (0, 0.85), (1, 0.88))]
    ref, other = summarise(runs)
    # per seed: +0.05, -0.02, +0.05 (the unpaired means differ by 0.0267 too, but the spread is the paired one)
    assert other["delta_vs_reference"] == pytest.approx(0.08 / 3) and other["paired_seeds"] == 3
    assert other["delta_std"] == pytest.approx(((2 * (0.05 - 0.08 / 3) ** 2 + (0.02 + 0.08 / 3) ** 2) / 3) ** 0.5)
    assert ref["delta_vs_reference"] is None and other["accuracy_per_seed"] == {"2": 0.75, "0": 0.85, "1": 0.88}


def test_unknown_benchmark_entry_names_the_available_ones():
    with pytest.raises(ValueError, match="available: snnergy-cmqka-hybrid"):
        load_entries(["nope"])
