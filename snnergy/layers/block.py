"""Bidirectional cross-modal fusion block and its spiking MLP.

For each modality m with the other modality o (both updated from the *same* inputs):
``Y_m = X_m + alpha_m * Attn_m(X_m, X_o)`` then ``Z_m = Y_m + MLP_m(Y_m)``.

The streams ``X``, ``Y``, ``Z`` are weighted sums of spike trains (the SPDS output plus
the spikes of each residual branch). A synaptic layer reading such a stream is exactly the
sum of that layer applied to each constituent spike train (a neuron summing several
incoming edges), so every layer here stays spike-driven; the energy accounting counts the
spikes of each constituent.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from snnergy.config import ModelConfig
from snnergy.layers.cmqka import CMQKAttention
from snnergy.layers.projection import TokenProjection
from snnergy.layers.ssa import CrossModalSSA
from snnergy.neurons import make_lif

MODALITIES = ("audio", "video")


class SpikingMLP(nn.Module):
    """``SN(BN(W2 SN(BN(W1 x))))`` with hidden width ``mlp_ratio * dim``."""

    def __init__(self, dim: int, config: ModelConfig):
        super().__init__()
        hidden = dim * config.mlp_ratio
        self.fc1, self.lif1 = TokenProjection(dim, hidden), make_lif(config.neuron)
        self.fc2, self.lif2 = TokenProjection(hidden, dim), make_lif(config.neuron)

    def forward(self, x: Tensor) -> Tensor:
        return self.lif2(self.fc2(self.lif1(self.fc1(x))))


class CrossModalBlock(nn.Module):
    """One bidirectional fusion block of kind ``cmqka`` or ``ssa`` on ``[T,B,C,N]`` streams.

    CMQKA's residual weight ``alpha`` is a learnable scalar per direction (init
    ``alpha_init``, 1.5 in the paper); SSA uses the plain Spikformer residual (weight 1).
    """

    def __init__(self, dim: int, kind: str, config: ModelConfig):
        super().__init__()
        attention = {"cmqka": CMQKAttention, "ssa": CrossModalSSA}[kind]
        self.kind = kind
        self.attn = nn.ModuleDict({m: attention(dim, config) for m in MODALITIES})
        self.mlp = nn.ModuleDict({m: SpikingMLP(dim, config) for m in MODALITIES})
        if kind == "cmqka":
            self.alpha = nn.ParameterDict({m: nn.Parameter(torch.tensor(float(config.alpha_init))) for m in MODALITIES})
        else:
            self.alpha = None

    def residual_weight(self, modality: str) -> Tensor | float:
        return 1.0 if self.alpha is None else self.alpha[modality]

    def forward(self, audio: Tensor, video: Tensor) -> tuple[Tensor, Tensor]:
        streams = {"audio": audio, "video": video}
        outputs = {}
        for m, other in (("audio", "video"), ("video", "audio")):
            y = streams[m] + self.residual_weight(m) * self.attn[m](streams[m], streams[other])
            outputs[m] = y + self.mlp[m](y)
        return outputs["audio"], outputs["video"]
