"""Cross-modal Spiking Self-Attention (Spikformer-style), used at the coarsest stage.

Q from the query modality, K and V from the other, all spikes ``SN(BN(W x))``; per head
``SN_attn(scale * (Q K^T) V)`` with no softmax, then ``P = SN(BN(W_o .))``. ``Q K^T`` is an
N x N integer matrix (counts of coincident spikes): O(N^2 D), which is why SNNergy keeps
it to stage 3 (N/16 tokens).

The scale ``s`` is learnable (Eq. 5: "s is a learnable scaling factor") when
``ssa_scale_learnable`` is set, initialised to ``ssa_scale``: ``Q K^T V`` counts coincident
spikes, and how many of them should reach the attention neuron's threshold depends on
the firing rates training settles on, which a fixed constant cannot anticipate. A scalar
per direction; it folds into the ``ssa_attention`` operation at export.

``over="time"`` attends over the T timesteps of each token instead of over the tokens of
each timestep (S-CMRL's temporal attention, ``snnergy.layers.scmrl``): the projections
and neurons are the same, only the product's sequence axis changes (``Q K^T`` is T x T
per token and head).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from snnergy.config import ModelConfig
from snnergy.layers.projection import TokenProjection
from snnergy.neurons import make_lif

ATTENTION_AXES = ("tokens", "time")


class CrossModalSSA(nn.Module):
    """One direction of cross-modal SSA: ``[T,B,C,N]`` query / key-value streams -> spikes."""

    def __init__(self, dim: int, config: ModelConfig, over: str = "tokens"):
        super().__init__()
        if over not in ATTENTION_AXES:
            raise ValueError(f"SSA attends over one of {ATTENTION_AXES}, got {over!r}")
        self.over = over
        self.num_heads = config.num_heads
        if config.ssa_scale_learnable:
            self.scale = nn.Parameter(torch.tensor(float(config.ssa_scale)))
        else:
            self.scale = float(config.ssa_scale)
        self.q_proj, self.q_lif = TokenProjection(dim, dim), make_lif(config.neuron)
        self.k_proj, self.k_lif = TokenProjection(dim, dim), make_lif(config.neuron)
        self.v_proj, self.v_lif = TokenProjection(dim, dim), make_lif(config.neuron)
        self.attn_lif = make_lif(config.neuron, config.attn_threshold)
        self.out_proj = TokenProjection(dim, dim)
        self.out_lif = make_lif(config.neuron)

    def _heads(self, x: Tensor) -> Tensor:
        """``[T,B,C,N]`` -> ``[T,B,H,N,C/H]`` (tokens as the sequence) or ``[N,B,H,T,C/H]`` (time)."""
        x = x.unflatten(2, (self.num_heads, x.shape[2] // self.num_heads)).transpose(-1, -2)
        return x if self.over == "tokens" else x.transpose(0, 3)

    def _merge(self, x: Tensor) -> Tensor:
        """Inverse of ``_heads``: back to ``[T,B,C,N]``."""
        x = x if self.over == "tokens" else x.transpose(0, 3)
        return x.transpose(-1, -2).flatten(2, 3)

    def forward(self, x_query: Tensor, x_kv: Tensor) -> Tensor:
        q = self._heads(self.q_lif(self.q_proj(x_query)))
        k = self._heads(self.k_lif(self.k_proj(x_kv)))
        v = self._heads(self.v_lif(self.v_proj(x_kv)))
        scores = q @ k.transpose(-1, -2)  # [T,B,H,N,N] (over tokens) or [N,B,H,T,T] (over time)
        attended = self._merge((scores @ v) * self.scale)  # [T,B,C,N]
        return self.out_lif(self.out_proj(self.attn_lif(attended)))
