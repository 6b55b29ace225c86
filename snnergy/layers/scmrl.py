"""S-CMRL's cross-modal spatio-temporal spiking attention, the quadratic baseline.

S-CMRL (Brain-Cog-Lab/S-CMRL, ``braincog/model_zoo/spikformer.py``, read at commit 3be3df7;
re-implemented here, not copied) fuses audio and video with one attention per direction,
queries from the stream that receives the result, keys and values from the other:

* a **spatial** SSA over the N tokens of each timestep and a **temporal** SSA over the T
  timesteps of each token, each ``SN(BN(W .))`` projections, ``scale * (Q K^T) V`` with no
  softmax (scale 0.25), an attention LIF and ``SN(BN(W_o .))`` (:class:`CrossModalSSA`
  with ``over="tokens"`` / ``over="time"``);
* their fusion ``mean_N(S) x mean_T(T)`` broadcast to ``[T,B,C,N]`` (the same product form
  SNNergy's Eq. 12 adopts, on quadratic-attention outputs instead of Q-K masks);
* the branch mapped by a linear layer with a bias (no BN) and spiked
  (``trans_linear`` / ``trans_lif``, active in their reported runs, ``--contrastive``),
  then added to the stream with a fixed weight of 1.5 (``--alpha 1.5``).

Constants as they ran: every LIF has tau 2 and threshold 1.0. The attention LIFs are
*written* with ``v_threshold=0.5``, but S-CMRL's neuron class names that parameter
``threshold`` and drops unknown keywords, so 0.5 never takes effect (the preset's
``attn_threshold: 1.0`` follows the code that produced their results). Deliberate
differences, all documented in README's baseline list: the attention sits in every
stage of our hierarchy (S-CMRL is single-scale) so that only the fusion differs from
SNNergy; their temporal attention reshapes ``[N,B,H,T,C/H]`` to ``[N,B,T,C]`` without
swapping heads and time back (heads and steps mix before the stateful LIF), which we
read as unintended and do not reproduce; their semantic-alignment (contrastive) loss is
a training objective, not fusion, and is not used; their membrane is detached between
steps (no gradient through time), ours is SpikingJelly's full BPTT as in every model here.
"""

from __future__ import annotations

from torch import Tensor, nn

from snnergy.config import ModelConfig
from snnergy.layers.cmqka import FactorFusion
from snnergy.layers.projection import TokenProjection
from snnergy.layers.ssa import CrossModalSSA
from snnergy.neurons import make_lif


class SCMRLAttention(nn.Module):
    """One direction of S-CMRL's attention: ``[T,B,C,N]`` query / key-value streams -> spikes."""

    def __init__(self, dim: int, config: ModelConfig):
        super().__init__()
        self.spatial = CrossModalSSA(dim, config, over="tokens")
        self.temporal = CrossModalSSA(dim, config, over="time")
        self.fusion = FactorFusion(1.0)
        self.out_proj = TokenProjection(dim, dim, batch_norm=False)
        self.out_lif = make_lif(config.neuron)

    def forward(self, x_query: Tensor, x_kv: Tensor) -> Tensor:
        spatial = self.spatial(x_query, x_kv).mean(dim=3, keepdim=True)  # mean_N: [T,B,C,1]
        temporal = self.temporal(x_query, x_kv).mean(dim=0, keepdim=True)  # mean_T: [1,B,C,N]
        return self.out_lif(self.out_proj(self.fusion(spatial, temporal)))
