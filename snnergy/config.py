"""Model configuration as data.

Every architectural choice of SNNergy lives in these dataclasses, and presets are YAML
files (``snnergy/presets/*.yaml``) that fill them in. Code reads a config; it never
hard-codes a width, a depth or a neuron constant. A config round-trips through a plain
dict (``to_dict`` / ``from_dict``), which is what checkpoints and exports store.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from importlib import resources
from typing import Any

import yaml

ATTENTION_LAYOUTS = {
    # name -> attention kind of stages 1, 2, 3 (paper Table 5 and its ablations)
    "hybrid": ("cmqka", "cmqka", "ssa"),
    "all-cmqka": ("cmqka", "cmqka", "cmqka"),
    "all-ssa": ("ssa", "ssa", "ssa"),
    "all-scmrl": ("scmrl", "scmrl", "scmrl"),  # the S-CMRL baseline (snnergy.layers.scmrl)
}
CMQKA_PATHWAYS = ("spatiotemporal", "spatial", "temporal")
# cross: the fusion blocks exchange modalities (SNNergy; S-CMRL with all-scmrl);
# the others are late fusions: each modality's blocks attend within it, the head fuses.
FUSIONS = ("cross", "sum", "concat", "film", "gated")
MODALITY_SETS = {"both": ("audio", "video"), "audio": ("audio",), "video": ("video",)}
SURROGATES = ("sigmoid",)


@dataclass(frozen=True)
class NeuronConfig:
    """Multi-step LIF (SpikingJelly ``LIFNode``) constants.

    Defaults are QKFormer's (tau 2.0, threshold 1.0, hard reset to 0, detached reset,
    sigmoid surrogate), which the SNNergy paper adopts; the paper is silent on tau.
    """

    tau: float = 2.0
    v_threshold: float = 1.0
    v_reset: float = 0.0
    decay_input: bool = True
    detach_reset: bool = True
    surrogate: str = "sigmoid"
    surrogate_alpha: float = 4.0
    spiking: bool = True  # False: ReLU units in place of every LIF (the ANN counterpart)


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of one SNNergy model (or one of its ablations)."""

    preset: str = "custom"
    num_classes: int = 10
    image_size: int = 128
    time_steps: int = 6
    audio_channels: int = 1
    video_channels: int = 3
    embed_dim: int = 96
    depths: tuple[int, int, int] = (1, 1, 1)
    num_heads: int = 8
    mlp_ratio: int = 4
    stem_reduction: int = 4
    attention: str = "hybrid"
    cmqka_pathways: str = "spatiotemporal"
    cmqka_temporal_taps: int = 1  # causal taps over time of the temporal Q/K projections (snnergy.layers.cmqka)
    cmqka_fusion_scale: float = 1.0  # fixed gain of the fused product before W_o (snnergy.layers.cmqka)
    alpha_init: float = 1.5
    ssa_scale: float = 0.125
    ssa_scale_learnable: bool = False  # Eq. 5: "s is a learnable scaling factor"
    ssa_residual: float = 1.0  # fixed weight of an SSA / S-CMRL attention branch (S-CMRL: 1.5)
    fusion: str = "cross"
    modalities: str = "both"
    neuron: NeuronConfig = field(default_factory=NeuronConfig)
    attn_threshold: float = 0.6

    def __post_init__(self) -> None:
        object.__setattr__(self, "depths", tuple(int(d) for d in self.depths))
        if isinstance(self.neuron, dict):
            object.__setattr__(self, "neuron", NeuronConfig(**self.neuron))
        if self.attention not in ATTENTION_LAYOUTS:
            raise ValueError(f"attention must be one of {sorted(ATTENTION_LAYOUTS)}, got {self.attention!r}")
        if self.cmqka_pathways not in CMQKA_PATHWAYS:
            raise ValueError(f"cmqka_pathways must be one of {CMQKA_PATHWAYS}, got {self.cmqka_pathways!r}")
        if self.fusion not in FUSIONS:
            raise ValueError(f"fusion must be one of {FUSIONS}, got {self.fusion!r}")
        if self.modalities not in MODALITY_SETS:
            raise ValueError(f"modalities must be one of {sorted(MODALITY_SETS)}, got {self.modalities!r}")
        if self.modalities != "both" and self.fusion not in ("concat", "sum"):
            raise ValueError(
                f"a single-modality model ({self.modalities}) has nothing to fuse: use fusion concat, not "
                f"{self.fusion!r}"
            )
        if self.neuron.surrogate not in SURROGATES:
            raise ValueError(f"neuron.surrogate must be one of {SURROGATES}, got {self.neuron.surrogate!r}")
        if len(self.depths) != 3 or min(self.depths) < 1:
            raise ValueError(f"depths must be three positive integers, got {self.depths}")
        for dim in self.stage_dims:
            if dim % self.num_heads:
                raise ValueError(f"stage width {dim} is not divisible by num_heads={self.num_heads}")
        if self.stem_reduction not in (2, 4, 8):
            raise ValueError(f"stem_reduction must be 2, 4 or 8, got {self.stem_reduction}")
        if self.embed_dim % 2:
            raise ValueError(
                f"embed_dim must be even (the stem's first conv has embed_dim/2 channels), got {self.embed_dim}"
            )
        total_reduction = self.stem_reduction * 4
        if self.image_size % total_reduction:
            raise ValueError(
                f"image_size {self.image_size} cannot be downsampled by the stem (x{self.stem_reduction}) and two "
                f"stages (x2 each): it must be a multiple of {total_reduction}"
            )
        if self.cmqka_temporal_taps < 1:
            raise ValueError(f"cmqka_temporal_taps must be >= 1, got {self.cmqka_temporal_taps}")
        if self.cmqka_fusion_scale <= 0:
            raise ValueError(f"cmqka_fusion_scale must be positive, got {self.cmqka_fusion_scale}")
        if self.time_steps < 1:
            raise ValueError(f"time_steps must be >= 1, got {self.time_steps}")

    @property
    def stage_dims(self) -> tuple[int, int, int]:
        """Channels of stages 1-3: D, 2D, 4D."""
        return (self.embed_dim, 2 * self.embed_dim, 4 * self.embed_dim)

    @property
    def stage_sides(self) -> tuple[int, int, int]:
        """Side length of the token grid of stages 1-3."""
        first = self.image_size // self.stem_reduction
        return (first, first // 2, first // 4)

    @property
    def stage_tokens(self) -> tuple[int, int, int]:
        """Token counts N of stages 1-3 (N, N/4, N/16)."""
        return tuple(side * side for side in self.stage_sides)  # type: ignore[return-value]

    @property
    def active_modalities(self) -> tuple[str, ...]:
        return MODALITY_SETS[self.modalities]

    @property
    def is_snnergy(self) -> bool:
        """The deployable SNNergy architecture (cross-modal, spiking, both inputs, CMQKA / SSA
        blocks), not a baseline."""
        snnergy_blocks = set(self.stage_attention) <= {"cmqka", "ssa"}
        return self.fusion == "cross" and self.modalities == "both" and self.neuron.spiking and snnergy_blocks

    @property
    def stage_attention(self) -> tuple[str, str, str]:
        return ATTENTION_LAYOUTS[self.attention]

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["depths"] = list(self.depths)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown model config keys: {unknown}")
        return cls(**data)

    def with_overrides(self, **overrides: Any) -> ModelConfig:
        """A copy with some fields changed (validated again)."""
        if "neuron" in overrides and isinstance(overrides["neuron"], dict):
            overrides["neuron"] = replace(self.neuron, **overrides["neuron"])
        return replace(self, **overrides)


def preset_names() -> list[str]:
    files = resources.files("snnergy.presets").iterdir()
    return sorted(p.name[: -len(".yaml")] for p in files if p.name.endswith(".yaml"))


def preset_data(name: str) -> dict[str, Any]:
    """A preset's YAML as a dict; ``extends: other`` starts from another preset (nested keys
    such as ``neuron`` and ``train`` are merged, not replaced)."""
    names = preset_names()
    if name not in names:
        raise ValueError(f"unknown preset {name!r}; available: {', '.join(names)}")
    data = yaml.safe_load(resources.files("snnergy.presets").joinpath(f"{name}.yaml").read_text()) or {}
    parent = data.pop("extends", None)
    if parent is None:
        return data
    merged = preset_data(parent)
    for key, value in data.items():
        merged[key] = (
            {**merged[key], **value} if isinstance(value, dict) and isinstance(merged.get(key), dict) else value
        )
    return merged


def load_preset(name: str, **overrides: Any) -> ModelConfig:
    """Read ``snnergy/presets/<name>.yaml`` into a ModelConfig, applying overrides."""
    data = preset_data(name)
    data.pop("train", None)  # the training recipe: snnergy.recipe.load_train_preset
    data["preset"] = name
    data.update({k: v for k, v in overrides.items() if v is not None})
    return ModelConfig.from_dict(data)
