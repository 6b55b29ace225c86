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
from snnergy.layers.scmrl import SCMRLAttention
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
    """One bidirectional fusion block of kind ``cmqka``, ``ssa`` or ``scmrl`` on ``[T,B,C,N]`` streams.

    CMQKA's residual weight ``alpha`` is a learnable scalar per direction (init
    ``alpha_init``, 1.5 in the paper); SSA's and S-CMRL's is the fixed ``ssa_residual``
    (1: Spikformer; 1.5: S-CMRL). A late-fusion baseline (``fusion`` other than ``cross``) runs the same
    block within each modality: the key stream is the query's own.
    """

    def __init__(self, dim: int, kind: str, config: ModelConfig):
        super().__init__()
        attention = {"cmqka": CMQKAttention, "ssa": CrossModalSSA, "scmrl": SCMRLAttention}[kind]
        self.kind = kind
        self.cross = config.fusion == "cross"
        self.modalities = config.active_modalities
        self.ssa_residual = float(config.ssa_residual)
        self.attn = nn.ModuleDict({m: attention(dim, config) for m in self.modalities})
        self.mlp = nn.ModuleDict({m: SpikingMLP(dim, config) for m in self.modalities})
        if kind == "cmqka":
            self.alpha = nn.ParameterDict(
                {m: nn.Parameter(torch.tensor(float(config.alpha_init))) for m in self.modalities}
            )
        else:
            self.alpha = None

    def residual_weight(self, modality: str) -> Tensor | float:
        return self.ssa_residual if self.alpha is None else self.alpha[modality]

    def key_modality(self, modality: str) -> str:
        """Whose stream gives the keys: the other modality's in a cross-modal block."""
        return ("video" if modality == "audio" else "audio") if self.cross else modality

    def forward(self, audio: Tensor | None, video: Tensor | None) -> tuple[Tensor | None, Tensor | None]:
        streams = {"audio": audio, "video": video}
        outputs = {"audio": None, "video": None}
        for m in self.modalities:
            y = streams[m] + self.residual_weight(m) * self.attn[m](streams[m], streams[self.key_modality(m)])
            outputs[m] = y + self.mlp[m](y)
        return outputs["audio"], outputs["video"]
