"""Training recipe as data.

The paper's recipe (AdamW, cosine schedule with linear warm-up, batch 128, 100 epochs,
mixed precision on GPU) is the default; presets carry their own learning rate, weight
decay, batch size and epochs in the ``train:`` section of their YAML, because the paper's
text lost those numbers and a 2-core CPU preset needs different ones.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from snnergy.devices import DEVICES


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 100
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup_epochs: int = 5
    label_smoothing: float = 0.0
    grad_clip: float = 1.0
    seed: int = 0
    device: str = "auto"
    amp: bool = True  # mixed precision; only ever used on CUDA
    num_workers: int = 0
    max_minutes: float | None = None  # stop cleanly after this wall time (checkpoints kept)
    limit_train_batches: int | None = None  # debugging / smoke runs: batches per epoch

    def __post_init__(self) -> None:
        if self.device not in DEVICES:
            raise ValueError(f"device must be one of {DEVICES}, got {self.device!r}")
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError(f"epochs and batch_size must be >= 1, got {self.epochs} and {self.batch_size}")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")
        if self.warmup_epochs < 0:
            raise ValueError(f"warmup_epochs must be >= 0, got {self.warmup_epochs}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown training config keys: {unknown}")
        return cls(**data)

    def with_overrides(self, **overrides: Any) -> TrainConfig:
        return replace(self, **{k: v for k, v in overrides.items() if v is not None})


def load_train_preset(name: str, **overrides: Any) -> TrainConfig:
    """The ``train:`` section of ``snnergy/presets/<name>.yaml`` (paper defaults if absent)."""
    from snnergy.config import preset_data

    section = preset_data(name).get("train", {})
    return TrainConfig.from_dict(section).with_overrides(**overrides)
