"""Cross-Modal Q-K Attention (CMQKA): linear-complexity cross-modal attention on spikes.

One direction (queries from modality ``q``, keys from the other modality ``k``), on token
tensors ``[T, B, C, N]`` split into ``H`` heads of ``C/H`` channels:

* spatial pathway: ``Q_s = SN(BN(W x_q))``, ``K_s = SN(BN(W x_k))``; a token mask per head
  and timestep ``A_s = SN_attn(sum_{c in head} Q_s)`` (``[T, B, H, 1, N]``, binary);
  ``F_s = A_s * K_s`` - a product of two binary tensors, i.e. a logical AND;
* temporal pathway (time is the sequence axis, its own projections ``W_q^t``, ``W_k^t``):
  ``A_t = SN_attn(sum_{c in head} Q_t)``, one binary mask per timestep (and token),
  ``F_t = A_t * K_t``. Interpretation (the paper's text lost Eq. 10; SPEC asks us to state
  ours): Eq. 10 is Eq. 7's channel aggregation applied to the temporal projections. The
  permutation to a time-major layout does not change a per-token linear map, so the
  pathways differ in their weights and in how the fusion pools them: ``F_s`` is averaged
  over tokens (a temporal profile), ``F_t`` over time (a spatial map). We tried a coarser
  reading - one gate per timestep from the token-averaged channel sum - and rejected it:
  that gate is a near-constant that is silent at initialisation, and through the
  multiplicative fusion it blocks every gradient of the attention branch;
* fusion: ``mean_N(F_s)`` (``[T, B, C]``) times ``mean_T(F_t)`` (``[B, C, N]``), broadcast
  to ``[T, B, C, N]`` (real-valued: the only non-spike product in the block);
* output: ``P = SN(BN(W_o fused))`` - the post-linear layer of Q-K attention - spikes.

Every step is O(N C) or O(N C^2) (the projections); no N x N tensor exists. The
ablations ``spatial`` / ``temporal`` keep one factor of the fusion, pooled as in it:
``mean_N(F_s)`` broadcast over tokens, or ``mean_T(F_t)`` broadcast over time. (Feeding
``F_s`` or ``F_t`` un-pooled to ``W_o`` would make the two ablations the same function:
the pathways differ only in their weights and in this pooling.)
"""

from __future__ import annotations

from torch import Tensor, nn

from snnergy.config import ModelConfig
from snnergy.layers.projection import TokenProjection
from snnergy.neurons import make_lif


class SpikingQK(nn.Module):
    """``SN(BN(W x))`` for the query and key of one pathway."""

    def __init__(self, dim: int, config: ModelConfig):
        super().__init__()
        self.q_proj = TokenProjection(dim, dim)
        self.q_lif = make_lif(config.neuron)
        self.k_proj = TokenProjection(dim, dim)
        self.k_lif = make_lif(config.neuron)

    def forward(self, x_query: Tensor, x_key: Tensor) -> tuple[Tensor, Tensor]:
        return self.q_lif(self.q_proj(x_query)), self.k_lif(self.k_proj(x_key))


class CMQKAttention(nn.Module):
    """One direction of CMQKA: ``[T,B,C,N]`` query stream and key stream -> spikes ``[T,B,C,N]``."""

    def __init__(self, dim: int, config: ModelConfig):
        super().__init__()
        self.num_heads = config.num_heads
        self.pathways = config.cmqka_pathways
        if self.pathways in ("spatiotemporal", "spatial"):
            self.spatial = SpikingQK(dim, config)
            self.spatial_attn_lif = make_lif(config.neuron, config.attn_threshold)
        if self.pathways in ("spatiotemporal", "temporal"):
            self.temporal = SpikingQK(dim, config)
            self.temporal_attn_lif = make_lif(config.neuron, config.attn_threshold)
        self.out_proj = TokenProjection(dim, dim)
        self.out_lif = make_lif(config.neuron)

    def _heads(self, x: Tensor) -> Tensor:
        """``[T,B,C,N]`` -> ``[T,B,H,C/H,N]`` (no batch size baked in: exports stay batch-agnostic)."""
        return x.unflatten(2, (self.num_heads, x.shape[2] // self.num_heads))

    def spatial_features(self, x_query: Tensor, x_key: Tensor) -> Tensor:
        """``F_s = SN_attn(sum_c Q_s) AND K_s`` as ``[T, B, C, N]``."""
        q, k = self.spatial(x_query, x_key)
        mask = self.spatial_attn_lif(self._heads(q).sum(dim=3, keepdim=True))  # [T,B,H,1,N]
        return (mask * self._heads(k)).flatten(2, 3)

    def temporal_features(self, x_query: Tensor, x_key: Tensor) -> Tensor:
        """``F_t = SN_attn(sum_c Q_t) AND K_t`` as ``[T, B, C, N]``."""
        q, k = self.temporal(x_query, x_key)
        mask = self.temporal_attn_lif(self._heads(q).sum(dim=3, keepdim=True))  # [T,B,H,1,N]
        return (mask * self._heads(k)).flatten(2, 3)

    def forward(self, x_query: Tensor, x_key: Tensor) -> Tensor:
        if self.pathways == "spatial":
            f_s = self.spatial_features(x_query, x_key)
            fused = f_s.mean(dim=3, keepdim=True).expand_as(f_s)  # each timestep's token average
        elif self.pathways == "temporal":
            f_t = self.temporal_features(x_query, x_key)
            fused = f_t.mean(dim=0, keepdim=True).expand_as(f_t)  # each token's time average
        else:
            f_s = self.spatial_features(x_query, x_key).mean(dim=3)  # [T,B,C]
            f_t = self.temporal_features(x_query, x_key).mean(dim=0)  # [B,C,N]
            fused = f_s.unsqueeze(-1) * f_t.unsqueeze(0)  # [T,B,C,N]
        return self.out_lif(self.out_proj(fused))
