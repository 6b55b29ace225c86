"""CMQKA's equations against hand computations, its temporal pathway's causality, the
learnable SSA scale, and `snnergy ablate` (test-time ablations of the fusion).

The Q and K spike tensors are injected (no BN biases forced anywhere): every expected
value below is computed independently, element by element, from the paper's equations.
"""

from __future__ import annotations

import json

import pytest
import torch
from torch import Tensor, nn

from snnergy.ablation import ablations_for, run_ablations
from snnergy.checkpoint import from_model, save_checkpoint
from snnergy.cli import main as snnergy_main
from snnergy.config import load_preset
from snnergy.layers.cmqka import CMQKAttention
from snnergy.layers.projection import TokenProjection
from snnergy.model import build_model

T, B, C, N, H = 3, 1, 4, 5, 2  # two heads of two channels


class Injected(nn.Module):
    """Stands in for a pathway's projections: returns the given Q and K spikes."""

    def __init__(self, q: Tensor, k: Tensor):
        super().__init__()
        self.q, self.k = q, k

    def forward(self, x_query: Tensor, x_key: Tensor) -> tuple[Tensor, Tensor]:
        return self.q, self.k


def random_spikes(seed: int, p: float = 0.5) -> Tensor:
    return (torch.rand(T, B, C, N, generator=torch.Generator().manual_seed(seed)) < p).float()


def hand_lif_mask(q: Tensor, threshold: float = 0.6, tau: float = 2.0) -> list[list[list[float]]]:
    """Eq. 7 by hand: per head and token, a LIF (decay input, hard reset to 0) integrating
    the head's channel sum of Q over time. Returns mask[t][head][token]."""
    mask = [[[0.0] * N for _ in range(H)] for _ in range(T)]
    for h in range(H):
        for n in range(N):
            v = 0.0
            for t in range(T):
                x = sum(float(q[t, 0, c, n]) for c in range(h * C // H, (h + 1) * C // H))
                v = v + (x - v) / tau
                if v >= threshold:
                    mask[t][h][n], v = 1.0, 0.0
    return mask


def cmqka(**overrides) -> CMQKAttention:
    config = load_preset("tiny", embed_dim=C, num_heads=H, **overrides)
    return CMQKAttention(C, config).eval()


def test_spatial_mask_and_features_follow_eq_7_and_8():
    q, k = random_spikes(1), random_spikes(2)
    attn = cmqka()
    attn.spatial = Injected(q, k)
    features = attn.spatial_features(torch.zeros(T, B, C, N), torch.zeros(T, B, C, N))
    mask = hand_lif_mask(q)
    for t in range(T):
        for c in range(C):
            for n in range(N):
                expected = mask[t][c // (C // H)][n] * float(k[t, 0, c, n])  # A_s AND K
                assert float(features[t, 0, c, n]) == expected, (t, c, n)
    assert 0 < features.sum() < k.sum()  # the mask passes some keys, not all


def test_fusion_is_eq_12_token_mean_of_spatial_times_time_mean_of_temporal():
    qs, ks, qt, kt = (random_spikes(seed) for seed in (3, 4, 5, 6))
    attn = cmqka(cmqka_fusion_scale=7.0)
    attn.spatial, attn.temporal = Injected(qs, ks), Injected(qt, kt)
    seen = {}
    attn.fusion.register_forward_hook(lambda module, args, out: seen.setdefault("fused", out))
    zeros = torch.zeros(T, B, C, N)
    attn(zeros, zeros)
    mask_s, mask_t = hand_lif_mask(qs), hand_lif_mask(qt)
    f_s = [[[mask_s[t][c // 2][n] * float(ks[t, 0, c, n]) for n in range(N)] for c in range(C)] for t in range(T)]
    f_t = [[[mask_t[t][c // 2][n] * float(kt[t, 0, c, n]) for n in range(N)] for c in range(C)] for t in range(T)]
    fused = seen["fused"]
    swapped_differs = False
    for t in range(T):
        for c in range(C):
            for n in range(N):
                spatial = sum(f_s[t][c]) / N  # mean over tokens: a temporal profile [T, C]
                temporal = sum(f_t[s][c][n] for s in range(T)) / T  # mean over time: a spatial map [C, N]
                assert float(fused[t, 0, c, n]) == pytest.approx(7.0 * spatial * temporal, abs=1e-6), (t, c, n)
                wrong = 7.0 * (sum(f_s[s][c][n] for s in range(T)) / T) * (sum(f_t[t][c]) / N)  # axes swapped
                swapped_differs |= abs(float(fused[t, 0, c, n]) - wrong) > 1e-6
    assert swapped_differs  # this check would catch a fusion with the mean axes swapped


def test_temporal_projection_is_causal_and_reads_the_previous_step():
    torch.manual_seed(0)
    projection = TokenProjection(C, C, taps=2).eval()
    x = torch.rand(T, B, C, N)
    changed_first = x.clone()
    changed_first[0] += 1.0
    changed_last = x.clone()
    changed_last[-1] += 1.0
    y, y_first, y_last = projection(x), projection(changed_first), projection(changed_last)
    assert not torch.allclose(y[1], y_first[1])  # step 1 reads step 0 through the second tap
    assert torch.allclose(y[2], y_first[2])  # but nothing two steps back
    assert torch.allclose(y[:-1], y_last[:-1])  # and nothing from the future
    # tap weights: y[t] = BN(W_0 x[t] + W_1 x[t-1]) with the eval BN an affine map per channel
    bn = projection.bn
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    by_hand = torch.einsum("oi,bin->bon", projection.tap_weight(0), x[1]) + torch.einsum(
        "oi,bin->bon", projection.tap_weight(1), x[0]
    )
    expected = (by_hand - bn.running_mean[:, None]) * scale[:, None] + bn.bias[:, None]
    assert torch.allclose(y[1], expected, atol=1e-5)


def test_temporal_keys_depend_on_the_key_streams_past_and_spatial_ones_do_not():
    torch.manual_seed(1)
    config = load_preset("tiny", embed_dim=C, num_heads=H, cmqka_temporal_taps=2)
    attn = CMQKAttention(C, config).eval()
    x_key = torch.rand(T, B, C, N)
    x_key_past = x_key.clone()
    x_key_past[0] = torch.rand(B, C, N, generator=torch.Generator().manual_seed(9)) * 3
    with torch.no_grad():
        # the projections at step 1: per-timestep in the spatial pathway, causal over time in the temporal one
        k_spatial = attn.spatial.k_proj(x_key)[1], attn.spatial.k_proj(x_key_past)[1]
        k_temporal = attn.temporal.k_proj(x_key)[1], attn.temporal.k_proj(x_key_past)[1]
    assert torch.equal(*k_spatial) and not torch.allclose(*k_temporal)


def test_ssa_scale_is_a_learnable_parameter_that_exports_as_its_value(tmp_path):
    from export.nir_model import build_nir_graph

    model = build_model(load_preset("tiny", image_size=16, embed_dim=16, time_steps=2))
    scales = [m.scale for m in model.modules() if type(m).__name__ == "CrossModalSSA"]
    assert scales and all(isinstance(s, nn.Parameter) and s.requires_grad for s in scales)
    with torch.no_grad():
        model.stages[2][0].attn["video"].scale.fill_(0.3)
    graph = build_nir_graph(from_model(model))
    assert graph.nodes["stages.2.0.attn.video.attention"].metadata["scale"] == pytest.approx(0.3)


def test_each_ablation_does_what_it_names_and_is_undone():
    from snnergy.layers.ssa import CrossModalSSA

    model = build_model(load_preset("tiny", image_size=16, embed_dim=16, time_steps=2, num_classes=3), seed=1).eval()
    names = [a.name for a in ablations_for(model)]
    assert names == [
        "cmqka_zero",
        "cmqka_zero_stage1",
        "cmqka_zero_stage2",
        "cmqka_cross_cut",
        "spatial_factor_only",
        "temporal_factor_only",
        "ssa_zero",
        "attention_cross_cut",
        "attention_zero",
    ]
    attention = {n: m for n, m in model.named_modules() if isinstance(m, (CMQKAttention, CrossModalSSA))}
    seen: dict[str, dict] = {}

    def recorder(name):
        def pre(module, args):
            seen.setdefault(name, {})["inputs"] = [a.clone() for a in args]

        def post(module, args, out):
            seen[name]["output_zero"] = not out.any()
            seen[name]["output_shape"] = out.shape

        return pre, post

    def fusion_recorder(name):
        return lambda module, args: seen.setdefault(name, {}).__setitem__("factors", [a.clone() for a in args])

    means = {}
    for name, module in attention.items():
        if isinstance(module, CMQKAttention):
            tokens = 16 if name.startswith("stages.0") else 4
            means[name] = (
                torch.full((2, 1, module.out_proj.conv.in_channels, 1), 0.25),
                torch.full((1, 1, module.out_proj.conv.in_channels, tokens), 0.5),
            )
    generator = torch.Generator().manual_seed(0)
    # strong analog inputs make the untrained stems fire, so the two modalities' streams differ
    audio, video = (
        20 * torch.rand(2, 2, 1, 16, 16, generator=generator),
        20 * torch.rand(2, 2, 3, 16, 16, generator=generator),
    )
    for ablation in ablations_for(model):
        seen.clear()
        with ablation.install(model, means):
            handles = []
            for name, module in attention.items():
                pre, post = recorder(name)
                handles += [module.register_forward_pre_hook(pre), module.register_forward_hook(post)]
                if isinstance(module, CMQKAttention):
                    handles.append(module.fusion.register_forward_pre_hook(fusion_recorder(name)))
            with torch.no_grad():
                model(audio, video)
            for handle in handles:
                handle.remove()
        for name, module in attention.items():
            is_cmqka, stage = isinstance(module, CMQKAttention), int(name.split(".")[1]) + 1
            zeroed = {
                "cmqka_zero": is_cmqka,
                "cmqka_zero_stage1": is_cmqka and stage == 1,
                "cmqka_zero_stage2": is_cmqka and stage == 2,
                "ssa_zero": not is_cmqka,
                "attention_zero": True,
            }.get(ablation.name, False)
            if zeroed:
                assert seen[name]["output_zero"], (ablation.name, name)
            query, key = seen[name]["inputs"]
            own_keys = ablation.name == "attention_cross_cut" or (ablation.name == "cmqka_cross_cut" and is_cmqka)
            if own_keys or stage == 1:  # (deeper stages of an untrained model are silent: both streams zero)
                assert torch.equal(query, key) == own_keys, (ablation.name, name)
            if is_cmqka and ablation.name.endswith("factor_only"):
                spatial, temporal = seen[name]["factors"]
                replaced = temporal if ablation.name == "spatial_factor_only" else spatial
                assert torch.equal(replaced, torch.full_like(replaced, 0.5 if replaced is temporal else 0.25)), name
    for module in attention.values():  # every hook removed, every link restored
        assert not module._forward_hooks and not module._forward_pre_hooks
    assert all(block.cross for stage in model.stages for block in stage)


def test_cli_ablate_prints_rows_and_writes_json(avdigits_cache, tmp_path, capsys):
    config = load_preset("tiny", image_size=16, embed_dim=16, time_steps=2)
    checkpoint = save_checkpoint(
        from_model(build_model(config, seed=0), [str(i) for i in range(10)]), tmp_path / "m.pt"
    )
    out = tmp_path / "ablate.json"
    code = snnergy_main(
        [
            "ablate",
            str(checkpoint),
            "--cache-dir",
            str(avdigits_cache),
            "--samples",
            "24",
            "--mean-samples",
            "16",
            "--json",
            str(out),
        ]
    )
    assert code == 0
    result = json.loads(out.read_text())
    rows = {row["name"]: row for row in result["ablations"]}
    assert rows["none"]["change"] == 0.0 and "cmqka_zero" in rows and "attention_zero" in rows
    assert result["samples"] == 24 and set(result["branches"]) >= {"stages.0.0.attn.audio", "stages.2.0.attn.video"}
    assert all(0.0 <= b["out_rate"] <= 1.0 for b in result["branches"].values())
    assert "cmqka_cross_cut" in capsys.readouterr().out


def test_cli_ablate_refuses_a_baseline(tmp_path, capsys):
    config = load_preset("tiny-late-sum", image_size=16, embed_dim=16, time_steps=2)
    checkpoint = save_checkpoint(from_model(build_model(config)), tmp_path / "late.pt")
    assert snnergy_main(["ablate", str(checkpoint)]) == 2
    assert "baseline" in capsys.readouterr().err


def test_run_ablations_reports_rates_of_every_branch(avdigits_cache):
    from snnergy.data.registry import make_dataset

    model = build_model(load_preset("tiny", image_size=16, embed_dim=16, time_steps=2))
    test_set = make_dataset("avdigits", "test", 16, 2, cache_dir=avdigits_cache)
    subset = torch.utils.data.Subset(test_set, range(16))
    result = run_ablations(model, subset, subset, mean_samples=8)
    assert result["samples"] == 16 and result["factor_mean_samples"] == 8
    assert len(result["branches"]) == 6  # 2 CMQKA stages + 1 SSA stage, two directions each
