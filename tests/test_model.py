"""Behaviour of the SNNergy model: shapes, binary spikes, gradients, errors, determinism."""

from __future__ import annotations

import pytest
import torch
from spikingjelly.activation_based import neuron

from snnergy.config import ModelConfig, load_preset
from snnergy.layers.block import CrossModalBlock
from snnergy.layers.cmqka import CMQKAttention
from snnergy.model import build_model


def small_config(**overrides) -> ModelConfig:
    base = dict(image_size=16, embed_dim=16, time_steps=2, num_classes=5)
    base.update(overrides)
    return load_preset("tiny", **base)


def inputs(config: ModelConfig, batch: int = 2, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    s, t = config.image_size, config.time_steps
    audio = torch.rand(batch, t, config.audio_channels, s, s, generator=g) * 2
    video = torch.rand(batch, t, config.video_channels, s, s, generator=g) * 2
    return audio, video


def test_stage_shapes_follow_the_hierarchy():
    config = load_preset("tiny")
    model = build_model(config).eval()
    audio, video = inputs(config)
    with torch.no_grad():
        out = model.forward_stages(audio, video)
    t, b = config.time_steps, 2
    d = config.embed_dim
    side = config.image_size // 4
    expected = {"stem": (d, side), "stage1": (d, side), "stage2": (2 * d, side // 2), "stage3": (4 * d, side // 4)}
    for stage, (channels, grid) in expected.items():
        for modality in ("audio", "video"):
            assert tuple(out[stage][modality].shape) == (t, b, channels, grid, grid), (stage, modality)
    assert tuple(out["head"]["logits"].shape) == (b, config.num_classes)
    assert config.stage_tokens == (side * side, side * side // 4, side * side // 16)


def test_spds_outputs_and_attention_spikes_are_binary():
    config = small_config(attention="hybrid")
    model = build_model(config).eval()
    seen: dict[str, torch.Tensor] = {}

    def record(name):
        def hook(_module, _inputs, output):
            seen[name] = output

        return hook

    for name, module in model.named_modules():
        if isinstance(module, neuron.LIFNode) and name.rsplit(".", 1)[-1] in (
            "q_lif",
            "k_lif",
            "v_lif",
            "spatial_attn_lif",
            "temporal_attn_lif",
            "attn_lif",
            "out_lif",
        ):
            module.register_forward_hook(record(name))
    with torch.no_grad():
        out = model.forward_stages(*inputs(config))
    assert any("spatial_attn_lif" in n for n in seen) and any("temporal_attn_lif" in n for n in seen)
    for name, spikes in seen.items():
        assert set(spikes.unique().tolist()) <= {0.0, 1.0}, name
    for modality in ("audio", "video"):
        assert set(out["stem"][modality].unique().tolist()) <= {0.0, 1.0}
    # masks: one per head, timestep and token, broadcast over the head's channels
    n = config.stage_tokens[0]
    for pathway in ("spatial", "temporal"):
        mask = seen[f"stages.0.0.attn.video.{pathway}_attn_lif"]
        assert tuple(mask.shape) == (config.time_steps, 2, config.num_heads, 1, n)


def test_attention_mask_neurons_use_their_own_threshold():
    config = small_config()
    model = build_model(config)
    block = model.stages[0][0]
    assert block.attn["video"].spatial_attn_lif.v_threshold == pytest.approx(0.6)
    assert block.attn["video"].spatial.q_lif.v_threshold == pytest.approx(1.0)
    assert model.stages[2][0].attn["audio"].attn_lif.v_threshold == pytest.approx(0.6)
    assert block.alpha["video"].item() == pytest.approx(1.5) and block.alpha["video"].requires_grad


def test_gradients_reach_every_parameter():
    # A parameter whose downstream neuron never fires gets an exactly-zero gradient (e.g.
    # alpha while its branch is silent). Positive BN biases and a larger SSA scale make
    # every neuron fire, so a zero gradient here can only mean a broken graph.
    config = small_config(ssa_scale=1.0)
    model = build_model(config).train()
    for module in model.modules():
        if isinstance(module, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
            torch.nn.init.constant_(module.bias, 1.0)
    audio, video = inputs(config, batch=4)
    logits = model(audio, video)
    logits.pow(2).sum().backward()
    missing = [name for name, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing
    zero = [name for name, p in model.named_parameters() if p.grad.abs().sum() == 0]
    assert not zero, f"parameters with exactly zero gradient: {zero}"


@pytest.mark.parametrize("attention", ["hybrid", "all-cmqka", "all-ssa"])
@pytest.mark.parametrize("pathways", ["spatiotemporal", "spatial", "temporal"])
def test_every_ablation_runs(attention, pathways):
    config = small_config(attention=attention, cmqka_pathways=pathways)
    model = build_model(config).eval()
    kinds = [blocks[0].kind for blocks in model.stages]
    assert tuple(kinds) == config.stage_attention
    with torch.no_grad():
        assert tuple(model(*inputs(config)).shape) == (2, config.num_classes)


def test_same_seed_same_weights_and_outputs_and_state_is_reset():
    config = small_config()
    a, b = build_model(config, seed=3).eval(), build_model(config, seed=3).eval()
    for (name, p), (_, q) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(p, q), name
    other = build_model(config, seed=4)
    assert not torch.equal(a.head.weight, other.head.weight)
    x = inputs(config)
    with torch.no_grad():
        first, again, twin = a(*x), a(*x), b(*x)
    assert torch.equal(first, again)  # membrane state from the first call did not leak
    assert torch.equal(first, twin)


def test_bad_inputs_name_the_expected_shape():
    config = small_config()
    model = build_model(config)
    audio, video = inputs(config)
    with pytest.raises(ValueError, match=r"audio input must have shape \['B', 2, 1, 16, 16\]"):
        model(audio[:, :, :, :8], video)
    with pytest.raises(ValueError, match=r"video input must have shape \['B', 2, 3, 16, 16\]"):
        model(audio, video[:, :, :1])
    with pytest.raises(ValueError, match="same number of timesteps"):
        model(audio, torch.cat([video, video], dim=1))
    with pytest.raises(ValueError, match="batch sizes differ"):
        model(audio, video[:1])
    with pytest.raises(ValueError, match="must be a multiple of 16"):
        load_preset("tiny", image_size=24)
    with pytest.raises(ValueError, match="unknown preset"):
        load_preset("huge")


def _largest_intermediate(module, *args) -> int:
    """Largest tensor (elements) produced by any op while running ``module(*args)``."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Recorder(TorchDispatchMode):
        largest = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            for t in out if isinstance(out, (tuple, list)) else (out,):
                if isinstance(t, torch.Tensor):
                    Recorder.largest = max(Recorder.largest, t.numel())
            return out

    with Recorder():
        module(*args)
    return Recorder.largest


def test_cmqka_never_builds_an_n_by_n_tensor_but_ssa_does():
    config = small_config(embed_dim=16)
    t, b, c, n = 2, 1, 16, 1024  # N >> C: an N x N tensor would dwarf every legitimate one
    x_q, x_k = torch.rand(t, b, c, n), torch.rand(t, b, c, n)
    block = CrossModalBlock(c, "cmqka", config)
    largest = _largest_intermediate(block, x_q, x_k)
    assert largest <= t * b * c * config.mlp_ratio * n  # the MLP's hidden layer is the biggest
    assert largest < n * n
    ssa = CrossModalBlock(c, "ssa", config)
    assert _largest_intermediate(ssa, x_q, x_k) >= t * b * config.num_heads * n * n


def _saved_tensor_elements(module, x_q, x_k) -> int:
    """Elements autograd keeps for backward: the training-memory footprint of a forward."""
    total = 0

    def pack(tensor):
        nonlocal total
        total += tensor.numel()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        module(x_q, x_k)
    return total


def test_cmqka_memory_grows_linearly_in_tokens():
    config = small_config(embed_dim=16)
    attention = CMQKAttention(16, config).train()
    sizes = (256, 1024, 4096)
    saved = []
    for n in sizes:
        x = torch.rand(2, 1, 16, n, requires_grad=True)
        saved.append(_saved_tensor_elements(attention, x, x))
    for (n0, s0), (n1, s1) in zip(zip(sizes, saved), zip(sizes[1:], saved[1:])):
        assert s1 / s0 == pytest.approx(n1 / n0, rel=0.02), (n0, n1, s0, s1)
