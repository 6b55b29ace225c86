"""Checkpoint files: weights plus everything needed to rebuild the model.

One format for ``snnergy init`` and for training, so export, simulation and energy paths
load any checkpoint with no other flag. A checkpoint is a ``torch.save``d dict of plain
types (``weights_only`` loading: a checkpoint cannot run code when opened):

``format`` ("snnergy-checkpoint"), ``format_version``, ``model_config`` (ModelConfig as a
dict), ``state_dict``, ``class_names``, ``versions`` (package versions that wrote it),
``meta`` (free-form: seed, epoch, metrics, data config ...), and optionally
``train_state`` (optimizer, schedule, epoch, RNG) in the checkpoint ``--resume`` reads.

Writes are atomic (temporary file + rename), so an interrupted save never leaves a
truncated checkpoint behind.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

from snnergy.atomic import atomic_write
from snnergy.config import ModelConfig
from snnergy.model import SNNergy

FORMAT = "snnergy-checkpoint"
FORMAT_VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint file is missing, corrupt, or not an SNNergy checkpoint."""


def package_versions() -> dict[str, str]:
    versions = {}
    for name in ("snnergy", "torch", "spikingjelly", "numpy"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "unknown"
    return versions


@dataclass
class Checkpoint:
    model_config: ModelConfig
    state_dict: dict[str, torch.Tensor]
    class_names: list[str]
    meta: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=package_versions)
    train_state: dict[str, Any] | None = None

    def build_model(self) -> SNNergy:
        """The model with these weights, in eval mode."""
        model = SNNergy(self.model_config)
        model.load_state_dict(self.state_dict)
        return model.eval()

    def fingerprint(self) -> str:
        """SHA-256 of what defines the model (config, class names, every weight), not of the
        file: two saves of the same model agree, any changed weight does not."""
        import hashlib
        import json

        digest = hashlib.sha256(
            json.dumps([self.model_config.to_dict(), list(self.class_names)], sort_keys=True).encode()
        )
        for name in sorted(self.state_dict):
            tensor = self.state_dict[name].detach().cpu().contiguous()
            digest.update(name.encode())
            digest.update(str(tensor.dtype).encode())
            digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
        return digest.hexdigest()

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "model_config": self.model_config.to_dict(),
            "state_dict": self.state_dict,
            "class_names": list(self.class_names),
            "versions": dict(self.versions),
            "meta": dict(self.meta),
            "train_state": self.train_state,
        }


def from_model(model: SNNergy, class_names: list[str] | None = None, **meta: Any) -> Checkpoint:
    names = class_names or [str(i) for i in range(model.config.num_classes)]
    if len(names) != model.config.num_classes:
        raise ValueError(f"{len(names)} class names for a model with {model.config.num_classes} classes")
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    return Checkpoint(model.config, state, names, meta)


def save_checkpoint(checkpoint: Checkpoint, path: str | Path) -> Path:
    """Write atomically: a crash mid-write leaves any previous file intact."""
    return atomic_write(path, lambda handle: torch.save(checkpoint.to_dict(), handle))


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Read and validate a checkpoint; every failure is a CheckpointError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except (
        Exception
    ) as error:  # torch.load fails in many ways on a file that is no checkpoint (KeyError, IndexError, ...)
        raise CheckpointError(
            f"{path} is not a readable checkpoint: corrupt, truncated, or not written by torch.save "
            f"({type(error).__name__})"
        ) from error
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not an SNNergy checkpoint (no '{FORMAT}' format marker)")
    if data.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has checkpoint format version {data.get('format_version')}, this SNNergy reads {FORMAT_VERSION}"
        )
    try:
        config = ModelConfig.from_dict(data["model_config"])
        checkpoint = Checkpoint(
            config,
            data["state_dict"],
            list(data["class_names"]),
            data.get("meta", {}),
            data.get("versions", {}),
            data.get("train_state"),
        )
    except (KeyError, TypeError, ValueError) as error:
        raise CheckpointError(f"{path} has an invalid SNNergy checkpoint body: {error}") from error
    return checkpoint
