"""Quantisation-aware fine-tuning for Loihi: train the integers the stock network runs.

``snnergy finetune CKPT --quantize loihi`` starts from the fixed-point parameters the
export writes (``export.lava_package.quantise``) and trains every synapse's 8-bit weight
mantissa through ``lava_runtime.fixed_emulation``, the stock fixed-point network's
arithmetic in PyTorch: Lava's weight clipping and dropped lowest bit, floor shifts,
truncated decays, 24-bit registers and ``v > vth << 6``, with gradients passed straight
through the integer operations and a surrogate for the spike. The result is a ``--target
loihi`` fixed-point package whose integers are the trained model, so a Lava fixed-point
run of it agrees with the model it reports, spike for spike.

What stays as exported: thresholds, decays, biases, the per-population scales, and the
host's readout (float). A workflow module: it reads a checkpoint, calls the exporter and
the emulation, and writes a package.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Subset
from tqdm import tqdm

from snnergy.atomic import atomic_write

WEIGHT_FIELD = "/weight_mant"


@dataclass
class FinetuneSettings:
    epochs: int = 2
    batch_size: int = 16
    lr: float = 0.05  # Adam, in weight mantissa units (one LSB = 1; mixed-sign weights step by 2)
    seed: int = 0
    train_samples: int | None = None  # the first N training items (all when None)
    eval_samples: int | None = None  # the first N test items (all when None)


class IntegerModel(nn.Module):
    """The package's fixed-point network as a model: ``forward(audio, video) -> logits``.
    Its parameters are the synapses' weight mantissas (float, rounded in the forward)."""

    def __init__(self, emulation: Any, arrays: dict[str, np.ndarray]):
        super().__init__()
        self.emulation, self.fixed = emulation, dict(arrays)
        self.keys = sorted(k for k in arrays if k.endswith(WEIGHT_FIELD))
        self.weights = nn.ParameterList(
            [nn.Parameter(torch.as_tensor(arrays[k], dtype=torch.float64)) for k in self.keys]
        )

    def arrays(self) -> dict[str, torch.Tensor | np.ndarray]:
        return {**self.fixed, **dict(zip(self.keys, self.weights))}

    def forward(self, audio: torch.Tensor, video: torch.Tensor) -> torch.Tensor:
        return self.emulation.run(audio, video, self.arrays(), ste=self.training).logits

    def integers(self) -> dict[str, np.ndarray]:
        """The fixed-point arrays as Lava will hold them: each weight as Lava's synapse keeps it."""
        from lava_runtime.fixed_emulation import lava_weights

        with torch.no_grad():
            trained = {k: lava_weights(w).numpy().astype(np.int32) for k, w in zip(self.keys, self.weights)}
        return {**self.fixed, **trained}


def finetune_for_loihi(
    checkpoint_path: str | Path,
    out_dir: str | Path,
    dataset: str = "avdigits",
    settings: FinetuneSettings | None = None,
    data_root: str | Path | None = None,
    cache_dir: str | Path | None = None,
    dataset_options: dict[str, Any] | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Fine-tune, write the package to ``out_dir``, return the before/after record."""
    from export.lava_package import FineTuned, quantise, write_lava_package
    from export.loihi_map import place
    from export.nir_model import build_nir_graph
    from lava_runtime.fixed_emulation import FixedPointEmulation
    from snnergy.checkpoint import load_checkpoint
    from snnergy.data.registry import dataset_for_model
    from snnergy.evaluate import evaluate

    settings = settings or FinetuneSettings()
    if settings.epochs < 0 or settings.batch_size < 1 or not settings.lr > 0:
        raise ValueError(f"epochs >= 0, batch size >= 1 and lr > 0 expected, got {settings}")
    checkpoint = load_checkpoint(checkpoint_path)
    config = checkpoint.model_config
    graph = build_nir_graph(checkpoint)
    placement = [{"node": p.node, "where": p.where, "process": p.process} for p in place(graph).values()]
    emulation = FixedPointEmulation(graph, config.time_steps, placement)
    model = IntegerModel(emulation, quantise(graph))

    def split(name: str, limit: int | None):
        data = dataset_for_model(dataset, name, config, data_root, cache_dir, **(dataset_options or {}))
        return data if limit is None else Subset(data, range(min(limit, len(data))))

    train_data, test_data = split("train", settings.train_samples), split("test", settings.eval_samples)
    if len(train_data) == 0 or len(test_data) == 0:
        raise ValueError(f"dataset {dataset}: the train and test splits must not be empty")

    def accuracy_of(net: nn.Module) -> float:
        with torch.no_grad():
            return float(evaluate(net, test_data, batch_size=32, progress=progress)["accuracy"])

    float_accuracy = accuracy_of(checkpoint.build_model())
    before = accuracy_of(model)
    state_path = Path(f"{out_dir}.finetune-state.pt")  # resumes an interrupted fine-tuning
    losses = _train(model, train_data, settings, state_path, progress)
    after = accuracy_of(model)
    record = {
        "method": "quantisation-aware fine-tuning through lava_runtime.fixed_emulation",
        "trained": "synapse weight mantissas (8-bit as Lava keeps them); thresholds, decays, biases as exported",
        "settings": asdict(settings),
        "dataset": dataset,
        "test_samples": len(test_data),
        "train_samples": len(train_data),
        "accuracy": {"float_model": float_accuracy, "integers_before": before, "integers_after": after},
        "epoch_losses": losses,
        "changed_weights": _changed(quantise(graph), model.integers()),
    }
    summary = write_lava_package(
        checkpoint,
        out_dir,
        fixed_point=True,
        source=checkpoint_path,
        target="loihi",
        fine_tuned=FineTuned(model.integers(), record),
    )
    state_path.unlink(missing_ok=True)
    return {**record, "package": summary["path"]}


def _train(model: IntegerModel, data: Any, settings: FinetuneSettings, state_path: Path, progress: bool) -> list[float]:
    optimizer = torch.optim.Adam(model.parameters(), lr=settings.lr)
    losses: list[float] = []
    if state_path.is_file():
        state = torch.load(state_path, weights_only=False)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        losses = state["losses"]
    for epoch in range(len(losses), settings.epochs):
        generator = torch.Generator().manual_seed(settings.seed + epoch)
        loader = DataLoader(data, batch_size=settings.batch_size, shuffle=True, generator=generator)
        model.train()
        total, seen = 0.0, 0
        for audio, video, labels in tqdm(loader, desc=f"finetune {epoch + 1}/{settings.epochs}", disable=not progress):
            loss = nn.functional.cross_entropy(model(audio, video).float(), labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            with torch.no_grad():
                for weight in model.weights:
                    weight.clamp_(-256, 255)
            total, seen = total + loss.item() * len(labels), seen + len(labels)
        model.eval()
        losses.append(total / seen)
        state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "losses": losses}
        atomic_write(state_path, lambda f, s=state: torch.save(s, f))
    return losses


def _changed(before: dict[str, np.ndarray], after: dict[str, np.ndarray]) -> dict[str, float]:
    """How many weight mantissas fine-tuning moved, and by how much on average."""
    keys = [k for k in before if k.endswith(WEIGHT_FIELD)]
    moved = sum(int((before[k] != after[k]).sum()) for k in keys)
    total = sum(before[k].size for k in keys)
    shift = sum(float(np.abs(before[k].astype(np.int64) - after[k]).sum()) for k in keys)
    return {"weights": total, "moved": moved, "mean_abs_change": shift / max(total, 1)}


def format_record(record: dict[str, Any]) -> str:
    accuracy = record["accuracy"]
    return "\n".join(
        [
            f"wrote {record['package']}/ (fixed point, fine-tuned integers)",
            f"test accuracy on {record['test_samples']} samples: float model {accuracy['float_model']:.4f}, "
            f"integers before {accuracy['integers_before']:.4f}, after {accuracy['integers_after']:.4f}",
            f"weights moved: {record['changed_weights']['moved']:,} of {record['changed_weights']['weights']:,}",
            json.dumps({"epoch_losses": record["epoch_losses"]}),
        ]
    )
