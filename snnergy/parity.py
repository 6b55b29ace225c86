"""Device parity: the same checkpoint and batch on two devices (default CPU vs CUDA).

Reports the largest absolute logit difference, prediction agreement, and spike agreement:
the fraction of all LIF outputs (every layer, timestep and neuron) that are identical on
both devices. Spikes are thresholded, so a tiny numeric difference can flip one; the
agreement says how often that happens, the logit difference how much it matters.
"""

from __future__ import annotations

from typing import Any

import torch
from spikingjelly.activation_based import neuron
from torch.utils.data import DataLoader, Dataset, Subset

from snnergy.checkpoint import Checkpoint
from snnergy.devices import resolve_device


@torch.no_grad()
def _run(
    checkpoint: Checkpoint, batch: tuple[torch.Tensor, torch.Tensor], device: torch.device
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    model = checkpoint.build_model().to(device)
    spikes: dict[str, torch.Tensor] = {}
    handles = [
        module.register_forward_hook(lambda _m, _i, out, name=name: spikes.__setitem__(name, out.detach().cpu()))
        for name, module in model.named_modules()
        if isinstance(module, neuron.LIFNode)
    ]
    try:
        logits = model(batch[0].to(device), batch[1].to(device)).float().cpu()
    finally:
        for handle in handles:
            handle.remove()
    return logits, spikes


def device_parity(
    checkpoint: Checkpoint, dataset: Dataset, samples: int = 32, devices: tuple[str, str] = ("cpu", "cuda")
) -> dict[str, Any]:
    """Compare the first ``samples`` items of ``dataset`` on ``devices[0]`` and ``devices[1]``."""
    first, second = (resolve_device(d) for d in devices)
    count = min(samples, len(dataset))
    audio, video, _ = next(iter(DataLoader(Subset(dataset, range(count)), batch_size=count)))
    logits_a, spikes_a = _run(checkpoint, (audio, video), first)
    logits_b, spikes_b = _run(checkpoint, (audio, video), second)
    equal = sum(int((spikes_a[name] == spikes_b[name]).sum()) for name in spikes_a)
    total = sum(spikes_a[name].numel() for name in spikes_a)
    worst_layer = min(spikes_a, key=lambda name: float((spikes_a[name] == spikes_b[name]).float().mean()))
    return {
        "devices": [str(first), str(second)],
        "samples": count,
        "max_abs_logit_diff": float((logits_a - logits_b).abs().max()),
        "prediction_agreement": float((logits_a.argmax(1) == logits_b.argmax(1)).float().mean()),
        "spike_agreement": equal / total,
        "spikes_compared": total,
        "lif_layers": len(spikes_a),
        "least_agreeing_layer": worst_layer,
        "least_agreeing_layer_agreement": float((spikes_a[worst_layer] == spikes_b[worst_layer]).float().mean()),
    }
