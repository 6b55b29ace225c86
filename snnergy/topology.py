"""One description of the network's topology, walked by everything that needs it.

``walk(model, visitor)`` goes over an :class:`~snnergy.model.SNNergy` in data-flow order
(stems, then per stage the downsampling SPDS and the fusion blocks, then the head) and
keeps the residual streams: a stream is the list of spike trains summed into it, each
with its weight (``Y = X + alpha P``, ``Z = Y + M``). At each part it calls the visitor
with the part's :class:`Site` (module path, module, stage, modality, block) and the
streams it reads; the visitor returns the name of the spike train the part emits, which
the walk appends to the streams.

The NIR exporter (``export.nir_model``) and the energy describer
(``energy.torch_probe``) are both visitors, so a change of the topology is made here
once, and the names they give populations are the same by construction: the module
path of the neuron layer (an AND unit, which has no module, is ``<attention>.<pathway>_features``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from torch import nn

from snnergy.model import STAGE_NAMES, SNNergy

Stream = list[tuple[str, float]]  # (spike train, weight in the sum)


@dataclass(frozen=True)
class Site:
    """Where a part sits: its module path and module, report stage, modality, and for a fusion
    block's parts the block index and attention kind (cmqka, ssa, scmrl)."""

    path: str
    module: nn.Module
    stage: str
    modality: str
    block: int | None = None
    kind: str = ""


class ModelVisitor(Protocol):
    def spds(self, site: Site, stream: Stream | None) -> str:
        """A stem (``stream`` None: it reads the analog input of ``site.modality``) or downsampling SPDS."""
        ...

    def attention(self, site: Site, query: Stream, key: Stream) -> str:
        """One direction of a fusion block's attention; ``key`` is the stream its keys (and
        values) read: the other modality's in a cross-modal block."""
        ...

    def mlp(self, site: Site, stream: Stream) -> str: ...

    def head(self, streams: dict[str, Stream]) -> None:
        """The head reading the final stream of each modality."""
        ...


def residual_weight(block: nn.Module, modality: str) -> float:
    weight = block.residual_weight(modality)
    return float(weight.detach()) if hasattr(weight, "detach") else float(weight)


def walk(model: SNNergy, visitor: ModelVisitor) -> None:
    """Call ``visitor`` on every part of ``model`` in data-flow order (see the module docstring)."""
    modalities = model.config.active_modalities
    streams: dict[str, Stream] = {
        m: [(visitor.spds(Site(f"stem.{m}", model.stem[m], STAGE_NAMES[0], m), None), 1.0)] for m in modalities
    }
    for s, blocks in enumerate(model.stages):
        stage = STAGE_NAMES[s + 1]
        if s > 0:
            streams = {
                m: [(visitor.spds(Site(f"down.{s - 1}.{m}", model.down[s - 1][m], stage, m), streams[m]), 1.0)]
                for m in modalities
            }
        for b, block in enumerate(blocks):
            updated = {}
            for m in modalities:
                query, key = streams[m], streams[block.key_modality(m)]
                site = Site(f"stages.{s}.{b}.attn.{m}", block.attn[m], stage, m, b, block.kind)
                y = query + [(visitor.attention(site, query, key), residual_weight(block, m))]  # Y = X + alpha P
                site = Site(f"stages.{s}.{b}.mlp.{m}", block.mlp[m], stage, m, b)
                updated[m] = y + [(visitor.mlp(site, y), 1.0)]  # Z = Y + M
            streams = updated  # both directions read the block's inputs
    visitor.head(streams)
