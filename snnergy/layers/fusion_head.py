"""Late-fusion heads of the baselines (OGM-GE / PMR's four), on pooled features.

Each takes the per-timestep pooled features of both modalities, ``[T, B, C]`` each, and
returns per-timestep logits ``[T, B, K]`` (the model averages them over T). SNNergy itself
and the ``concat`` baseline use a plain linear layer on the concatenation
(``snnergy.model``).

* ``sum``: a linear classifier per modality, logits added;
* ``film``: the video features scale and shift the audio features, ``gamma(v) * a + beta(v)``;
* ``gated``: ``fc_out(sigmoid(fc_a(a)) * fc_v(v))``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class SumFusion(nn.Module):
    def __init__(self, dim: int, classes: int):
        super().__init__()
        self.audio, self.video = nn.Linear(dim, classes), nn.Linear(dim, classes)

    def forward(self, audio: Tensor, video: Tensor) -> Tensor:
        return self.audio(audio) + self.video(video)


class FiLMFusion(nn.Module):
    def __init__(self, dim: int, classes: int):
        super().__init__()
        self.film = nn.Linear(dim, 2 * dim)
        self.out = nn.Linear(dim, classes)

    def forward(self, audio: Tensor, video: Tensor) -> Tensor:
        gamma, beta = self.film(video).chunk(2, dim=-1)
        return self.out(gamma * audio + beta)


class GatedFusion(nn.Module):
    def __init__(self, dim: int, classes: int):
        super().__init__()
        self.gate, self.value = nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.out = nn.Linear(dim, classes)

    def forward(self, audio: Tensor, video: Tensor) -> Tensor:
        return self.out(torch.sigmoid(self.gate(audio)) * self.value(video))


FUSION_HEADS = {"sum": SumFusion, "film": FiLMFusion, "gated": GatedFusion}
