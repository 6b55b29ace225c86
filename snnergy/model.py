"""The SNNergy hierarchy: SPDS stems, three fusion stages, pooled fusion head.

``audio [B, T, Ca, S, S]`` and ``video [B, T, Cv, S, S]`` -> logits ``[B, classes]``.
Internally tensors are T-first (``[T, B, ...]``, SpikingJelly's multi-step layout).

* stem: one SPDS per modality, reduction ``stem_reduction`` (4: 128x128 -> 32x32 tokens);
* stage s (channels D, 2D, 4D; tokens N, N/4, N/16): ``depths[s]`` bidirectional fusion
  blocks of the kind the ``attention`` layout names (hybrid: CMQKA, CMQKA, SSA), with an
  SPDS (x2) per modality before stages 2 and 3;
* head: mean over tokens per modality (global average pooling), concatenation (fusion),
  a linear classifier per timestep, mean over timesteps.

Baselines are configurations of the same hierarchy (``ModelConfig.fusion``,
``modalities``, ``neuron.spiking``): late fusions run the blocks within each modality and
fuse in the head (``snnergy.layers.fusion_head``); single-modality models have one stream;
the ANN counterpart has ReLUs where SNNergy has LIFs.

Neuron state is reset at the start of every forward, so a caller cannot leak membrane
potential from one batch into the next.
"""

from __future__ import annotations

import torch
from spikingjelly.activation_based import functional
from torch import Tensor, nn

from snnergy.config import ModelConfig
from snnergy.layers.block import MODALITIES, CrossModalBlock
from snnergy.layers.fusion_head import FUSION_HEADS
from snnergy.layers.spds import SPDS

STAGE_NAMES = ("stem", "stage1", "stage2", "stage3", "head")


class SNNergy(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.modalities = config.active_modalities
        d1, d2, d3 = config.stage_dims
        in_channels = {"audio": config.audio_channels, "video": config.video_channels}
        self.stem = nn.ModuleDict(
            {m: SPDS(in_channels[m], d1, config.stem_reduction, config.neuron) for m in self.modalities}
        )
        self.down = nn.ModuleList(
            nn.ModuleDict({m: SPDS(c_in, c_out, 2, config.neuron) for m in self.modalities})
            for c_in, c_out in ((d1, d2), (d2, d3))
        )
        self.stages = nn.ModuleList(
            nn.ModuleList(CrossModalBlock(dim, kind, config) for _ in range(depth))
            for dim, kind, depth in zip(config.stage_dims, config.stage_attention, config.depths)
        )
        if config.fusion in ("cross", "concat"):
            self.head = nn.Linear(len(self.modalities) * d3, config.num_classes)
        else:
            self.head = FUSION_HEADS[config.fusion](d3, config.num_classes)

    def expected_shape(self, modality: str, batch: int | str = "B") -> list[int | str]:
        channels = self.config.audio_channels if modality == "audio" else self.config.video_channels
        size = self.config.image_size
        return [batch, self.config.time_steps, channels, size, size]

    def _validate(self, audio: Tensor, video: Tensor) -> None:
        for modality, x in (("audio", audio), ("video", video)):
            expected = self.expected_shape(modality)
            if x.dim() != 5 or list(x.shape[1:]) != expected[1:]:
                raise ValueError(f"{modality} input must have shape {expected} ([B, T, C, H, W]), got {list(x.shape)}")
        if audio.shape[0] != video.shape[0]:
            raise ValueError(f"audio and video batch sizes differ: {audio.shape[0]} vs {video.shape[0]}")

    def forward_stages(self, audio: Tensor, video: Tensor) -> dict[str, dict[str, Tensor]]:
        """Run the network; return every stage's output per modality (T-first) and the logits.

        Stem and stage outputs are ``[T, B, C, H, W]``; ``head`` holds ``logits`` ``[B, K]``.
        """
        if audio.dim() == 5 and video.dim() == 5 and audio.shape[1] != video.shape[1]:
            raise ValueError(
                f"audio and video must have the same number of timesteps T; got {audio.shape[1]} and {video.shape[1]} "
                f"(expected {self.config.time_steps})"
            )
        self._validate(audio, video)
        functional.reset_net(self)
        inputs = {"audio": audio.transpose(0, 1), "video": video.transpose(0, 1)}
        x = {m: self.stem[m](inputs[m]) for m in self.modalities}  # a single-modality model ignores the other input
        outputs: dict[str, dict[str, Tensor]] = {"stem": dict(x)}
        for index, blocks in enumerate(self.stages):
            if index > 0:
                x = {m: self.down[index - 1][m](x[m]) for m in self.modalities}
            grid = tuple(x[self.modalities[0]].shape[3:])
            streams = [x[m].flatten(3) if m in x else None for m in MODALITIES]
            for block in blocks:
                streams = block(*streams)
            x = {m: s.unflatten(3, grid) for m, s in zip(MODALITIES, streams) if s is not None}
            outputs[f"stage{index + 1}"] = dict(x)
        pooled = [x[m].flatten(3).mean(dim=3) for m in self.modalities]  # [T,B,C] each
        per_step = self.head(torch.cat(pooled, dim=2)) if isinstance(self.head, nn.Linear) else self.head(*pooled)
        outputs["head"] = {"logits": per_step.mean(dim=0)}
        return outputs

    def forward(self, audio: Tensor, video: Tensor) -> Tensor:
        return self.forward_stages(audio, video)["head"]["logits"]


def build_model(config: ModelConfig, seed: int = 0) -> SNNergy:
    """A freshly initialised model; the same seed gives the same weights on CPU."""
    generator_state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        return SNNergy(config)
    finally:
        torch.random.set_rng_state(generator_state)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
