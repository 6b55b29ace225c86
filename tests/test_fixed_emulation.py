"""``lava_runtime.fixed_emulation`` without Lava: its weight rules against lava-nc's own, and
the fine-tuning forward (straight-through) computing the same integers as the exact one."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from fixtures_models import make_lively
from lava.utils.weightutils import clip_weights, determine_sign_mode, truncate_weights

from export.lava_package import quantise
from export.loihi_map import place
from export.nir_model import build_nir_graph
from lava_runtime.fixed_emulation import FixedPointEmulation, lava_weights
from snnergy.checkpoint import from_model
from snnergy.config import load_preset
from snnergy.loihi_finetune import IntegerModel
from snnergy.model import build_model


@pytest.mark.parametrize(
    "weights",
    [[-300, -7, 0, 3, 9, 260], [0, 1, 7, 200, 300], [-301, -9, -1, 0], [-256, 254, 255, -255]],
)
def test_weights_are_kept_as_lavas_bit_accurate_synapses_keep_them(weights):
    raw = np.array(weights, dtype=np.int32)
    mode = determine_sign_mode(raw)
    lava = truncate_weights(clip_weights(raw, mode, num_bits=8), mode, num_weight_bits=8)
    ours = lava_weights(torch.tensor(raw, dtype=torch.float64)).numpy()
    np.testing.assert_array_equal(ours, lava)


@pytest.fixture(scope="module")
def micro():
    config = load_preset("tiny", image_size=16, embed_dim=16, time_steps=2, num_classes=10)
    checkpoint = from_model(make_lively(build_model(config, seed=4)), [str(i) for i in range(10)])
    graph = build_nir_graph(checkpoint)
    placement = [{"node": p.node, "where": p.where, "process": p.process} for p in place(graph).values()]
    return FixedPointEmulation(graph, 2, placement), quantise(graph)


def test_the_training_forward_computes_the_exact_integers_and_has_gradients(micro):
    emulation, arrays = micro
    generator = torch.Generator().manual_seed(0)
    audio, video = (
        torch.rand((2, 2, 1, 16, 16), generator=generator),
        torch.rand((2, 2, 3, 16, 16), generator=generator),
    )
    model = IntegerModel(emulation, arrays)
    with torch.no_grad():
        exact = emulation.run(audio, video, arrays)
    model.train()
    trained = emulation.run(audio, video, model.arrays(), ste=True)
    torch.testing.assert_close(trained.logits, exact.logits, rtol=0, atol=0)
    for name, spikes in exact.spikes.items():
        assert torch.equal(trained.spikes[name], spikes), name
    assert sum(float(s.sum()) for s in exact.spikes.values()) > 0
    trained.logits.sum().backward()
    reached = [w for w in model.weights if w.grad is not None and w.grad.abs().sum() > 0]
    assert len(reached) > len(model.weights) // 2  # the surrogate carries gradients back through the stages


def test_an_interrupted_finetuning_resumes_from_its_last_epoch(tmp_path, avdigits_cache, monkeypatch):
    from export import lava_package
    from snnergy import loihi_finetune
    from snnergy.checkpoint import save_checkpoint

    config = load_preset("tiny", image_size=16, embed_dim=16, time_steps=2, num_classes=10)
    model = make_lively(build_model(config, seed=4))
    checkpoint = save_checkpoint(from_model(model, [str(i) for i in range(10)]), tmp_path / "micro.pt")
    settings = loihi_finetune.FinetuneSettings(epochs=1, batch_size=4, train_samples=4, eval_samples=2)
    out = tmp_path / "tuned.loihi"

    def crash(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(lava_package, "write_lava_package", crash)
    with pytest.raises(KeyboardInterrupt):
        loihi_finetune.finetune_for_loihi(checkpoint, out, cache_dir=avdigits_cache, settings=settings, progress=False)
    state = tmp_path / "tuned.loihi.finetune-state.pt"
    assert state.is_file() and not out.exists()
    saved = torch.load(state, weights_only=False)

    monkeypatch.undo()
    steps = []
    monkeypatch.setattr(torch.optim.Adam, "step", lambda self, *a, **k: steps.append(1))
    record = loihi_finetune.finetune_for_loihi(
        checkpoint, out, cache_dir=avdigits_cache, settings=settings, progress=False
    )
    assert steps == [] and record["epoch_losses"] == saved["losses"]  # the finished epoch is not trained again
    assert (out / "fixed_point.npz").is_file() and not state.exists()
