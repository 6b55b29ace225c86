"""Cross-Modal Q-K Attention (CMQKA): linear-complexity cross-modal attention on spikes.

One direction (queries from modality ``q``, keys from the other modality ``k``), on token
tensors ``[T, B, C, N]`` split into ``H`` heads of ``C/H`` channels:

* spatial pathway (Eq. 6-8): ``Q_s = SN(BN(W x_q))``, ``K_s = SN(BN(W x_k))``; a token
  mask per head and timestep ``A_s = SN_attn(sum_{c in head} Q_s)`` (``[T, B, H, 1, N]``,
  binary); ``F_s = A_s * K_s`` - a product of two binary tensors, i.e. a logical AND;
* temporal pathway (Eq. 9-11): the paper permutes the tokens to ``[N, T, D]`` - time as
  the *sequence* axis - before its projections, then permutes back. A per-token linear
  map is unchanged by that permutation, so the permutation only means something if the
  projection acts along the sequence: ``Q_t``, ``K_t`` are causal convolutions over time,
  ``Q_t[t] = SN(BN(sum_{d < taps} W_d x[t - d]))`` (``cmqka_temporal_taps``; tap ``d`` is a
  synapse with a ``d``-step delay on hardware, so no future frame is needed). Each
  timestep's mask ``A_t = SN_attn(sum_c Q_t)`` and feature ``F_t = A_t * K_t`` then depend
  on how the query *and* the key streams evolved over the last ``taps`` steps ("which
  temporal patterns in the audio stream are relevant to the temporal evolution of visual
  content"), which the spatial pathway cannot express. With ``taps = 1`` the pathway is
  the spatial one with other weights (the reading used before, kept as an ablation);
* fusion (Eq. 12): ``mean_N(F_s)`` (``[T, B, C]``) times ``mean_T(F_t)`` (``[B, C, N]``),
  broadcast to ``[T, B, C, N]``, times a fixed gain ``cmqka_fusion_scale``
  (:class:`FactorFusion`). Why the gain: both factors are firing rates of AND units
  (a few %), so the product is ~1e-3 and ``W_o`` of it has a variance near 1e-7, far
  below BN's ``eps`` = 1e-5. BN after ``W_o`` then divides by ``sqrt(eps)`` instead of the
  signal's spread, its output is its bias plus a signal ~100x too small, and training
  switches ``out_lif`` off (docs/model.md has the measurements). BN is scale-invariant
  otherwise, so one fixed gain that lifts the product clear of ``eps`` restores the
  normalisation and changes nothing else; it is a constant of the product operation,
  exported with it;
* output: ``P = SN(BN(W_o fused))`` - the post-linear layer of Q-K attention - spikes.

Every step is O(N C) or O(taps N C^2) (the projections); no N x N tensor exists. The
ablations ``spatial`` / ``temporal`` keep one factor of the fusion, pooled as in it
(``mean_N(F_s)`` broadcast over tokens, or ``mean_T(F_t)`` broadcast over time), the
other factor being the constant 1.
"""

from __future__ import annotations

from torch import Tensor, nn

from snnergy.config import ModelConfig
from snnergy.layers.projection import TokenProjection
from snnergy.neurons import make_lif


class SpikingQK(nn.Module):
    """``SN(BN(W x))`` for the query and key of one pathway (``taps`` > 1: causal over time)."""

    def __init__(self, dim: int, config: ModelConfig, taps: int = 1):
        super().__init__()
        self.q_proj = TokenProjection(dim, dim, taps)
        self.q_lif = make_lif(config.neuron)
        self.k_proj = TokenProjection(dim, dim, taps)
        self.k_lif = make_lif(config.neuron)

    def forward(self, x_query: Tensor, x_key: Tensor) -> tuple[Tensor, Tensor]:
        return self.q_lif(self.q_proj(x_query)), self.k_lif(self.k_proj(x_key))


class FactorFusion(nn.Module):
    """Eq. 12: ``scale * spatial * temporal`` of the pooled factors ``[T,B,C,1]`` and
    ``[1,B,C,N]``, broadcast to ``[T,B,C,N]``.

    A module of its own so that a test-time ablation can replace one factor (a forward
    pre-hook) and a probe can read both, without code in the model for either.
    """

    def __init__(self, scale: float):
        super().__init__()
        self.scale = float(scale)

    def forward(self, spatial: Tensor, temporal: Tensor) -> Tensor:
        return (spatial * self.scale) * temporal


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
            self.temporal = SpikingQK(dim, config, config.cmqka_temporal_taps)
            self.temporal_attn_lif = make_lif(config.neuron, config.attn_threshold)
        self.fusion = FactorFusion(config.cmqka_fusion_scale)
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
        """``F_t = SN_attn(sum_c Q_t) AND K_t`` as ``[T, B, C, N]`` (``Q_t``, ``K_t`` causal over time)."""
        q, k = self.temporal(x_query, x_key)
        mask = self.temporal_attn_lif(self._heads(q).sum(dim=3, keepdim=True))  # [T,B,H,1,N]
        return (mask * self._heads(k)).flatten(2, 3)

    def forward(self, x_query: Tensor, x_key: Tensor) -> Tensor:
        steps, tokens = x_query.shape[0], x_query.shape[3]
        if self.pathways in ("spatiotemporal", "spatial"):
            spatial = self.spatial_features(x_query, x_key).mean(dim=3, keepdim=True)  # [T,B,C,1]
        if self.pathways in ("spatiotemporal", "temporal"):
            temporal = self.temporal_features(x_query, x_key).mean(dim=0, keepdim=True)  # [1,B,C,N]
        if self.pathways == "spatial":
            temporal = spatial.new_ones((1, 1, 1, tokens))
        elif self.pathways == "temporal":
            spatial = temporal.new_ones((steps, 1, 1, 1))
        return self.out_lif(self.out_proj(self.fusion(spatial, temporal)))
