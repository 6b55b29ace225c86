"""Where each node of an exported SNNergy NIR graph runs on a Loihi system, and why.

One classification, read by ``snnergy loihi-fit`` (what must fit on the chips) and by the
``--target loihi`` export (which stock Lava process runs each node). The rules:

* a **LIF** node is a population of stock ``LIFReset`` neurons on neurocores; when real
  values reach it (the frames, CMQKA's fused product, SSA's output) they arrive as graded
  spikes, which Loihi 2 carries (up to 24-bit payloads) and plain binary Loihi does not;
* a **synaptic** node (``Conv2d``, ``SumPool2d``, ``AvgPool2d``, ``Affine``, ``Flatten``)
  whose output reaches a neuron is that neuron's synapses: a stock ``Conv`` (the spike
  OR-pool and CMQKA's ``mean_N`` are convolutions with fixed kernels) or ``Dense``; a
  ``Delay`` is carried by the synapses after it (Loihi 2 synapses have delays: stock
  ``DelaySparse``);
* the **product** extension (CMQKA's ``mean_N x mean_T``) is stock ``ProdNeuron``, a
  neuron of two inputs, which Loihi 2 runs as a programmed neuron model;
* the **host** keeps what a neurocore cannot compute: the input frames (injected as
  graded spikes), ``time_mean`` (it needs every frame of a window before it can emit),
  ``ssa_attention`` (``Q K^T V`` multiplies two signals that both change every step; a
  synapse holds fixed weights) and the readout (synapses that feed no neuron: the
  classifier averages real-valued logits, which cores do not emit).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import nir

from export.nir_reference import extension_op

SYNAPTIC = (nir.Conv2d, nir.SumPool2d, nir.AvgPool2d, nir.Affine, nir.Flatten)
NEUROCORE, HOST = "neurocore", "host"
REAL_VALUED_OPS = ("product", "ssa_attention", "time_mean")  # extensions whose outputs are real values

HOST_REASONS = {
    "input": "the host injects the encoded frames into the chip as graded spikes",
    "time_mean": "emits a mean over all T frames of a window, so it must hold the window: a buffer, not a neuron",
    "ssa_attention": "Q K^T V multiplies two signals that both change every step; a synapse holds fixed weights",
    "readout": "synapses that feed no neuron: the classifier averages real-valued logits, which cores do not emit",
}


@dataclass(frozen=True)
class Placement:
    """Where one NIR node runs: ``process`` is the stock Lava process (or host role)."""

    node: str
    where: str  # NEUROCORE | HOST
    process: str
    why: str
    graded: bool = False  # real values reach it: graded spikes in


def is_population(node: nir.NIRNode) -> bool:
    """A node holding neurons on cores: a LIF population or a product neuron."""
    return isinstance(node, nir.LIF) or extension_op(node) == "product"


def place(graph: nir.NIRGraph) -> dict[str, Placement]:
    """The placement of every node but the graph's ``Output``."""
    sources_of, targets_of = defaultdict(list), defaultdict(list)
    for source, target in graph.edges:
        sources_of[target].append(source)
        targets_of[source].append(target)

    def reaches_population(name: str, seen: frozenset = frozenset()) -> bool:
        for target in targets_of[name]:
            node = graph.nodes[target]
            if is_population(node):
                return True
            synaptic = isinstance(node, (*SYNAPTIC, nir.Delay)) and target not in seen
            if synaptic and reaches_population(target, seen | {name}):
                return True
        return False

    def real_valued(name: str) -> bool:
        """Whether ``name``'s output carries real values (through synapses back to a source)."""
        node = graph.nodes[name]
        if isinstance(node, nir.Input) or extension_op(node) in REAL_VALUED_OPS:
            return True
        if isinstance(node, (*SYNAPTIC, nir.Delay)):
            return any(real_valued(source) for source in sources_of[name])
        return False  # a LIF emits binary spikes

    placements = {}
    for name, node in graph.nodes.items():
        op = extension_op(node)
        if isinstance(node, nir.Output):
            continue
        if isinstance(node, nir.Input):
            placement = Placement(name, HOST, "RingBuffer", HOST_REASONS["input"])
        elif isinstance(node, nir.LIF):
            graded = any(real_valued(source) for source in sources_of[name])
            why = "real values in, as graded spikes" if graded else "binary spikes in"
            placement = Placement(name, NEUROCORE, "LIFReset", why, graded)
        elif op == "product":
            placement = Placement(
                name, NEUROCORE, "ProdNeuron", "a neuron multiplying its two graded inputs (programmed model)", True
            )
        elif op in ("time_mean", "ssa_attention"):
            placement = Placement(name, HOST, op, HOST_REASONS[op])
        elif op is not None:
            raise ValueError(f"node {name!r}: no Loihi placement for the extension {op!r}")
        elif isinstance(node, nir.Delay):
            placement = Placement(name, NEUROCORE, "DelaySparse", "a synaptic delay of the synapses it feeds")
        elif isinstance(node, SYNAPTIC):
            if not reaches_population(name):
                placement = Placement(name, HOST, "readout", HOST_REASONS["readout"])
            elif isinstance(node, (nir.Affine, nir.Flatten)):
                placement = Placement(name, NEUROCORE, "Dense", "synapses of the neurons it feeds")
            else:
                why = {
                    nir.Conv2d: "synapses of the neurons it feeds",
                    nir.SumPool2d: "the spike OR-pool's sum: a per-channel conv with a ones kernel",
                    nir.AvgPool2d: "a per-channel conv with a constant kernel (CMQKA's mean_N)",
                }[type(node)]
                placement = Placement(name, NEUROCORE, "Conv", why)
        else:
            raise ValueError(f"node {name!r}: no Loihi placement for {type(node).__name__}")
        placements[name] = placement
    return placements


def population_synapses(graph: nir.NIRGraph, population: str) -> list[str]:
    """The synaptic nodes (and delays) on the paths into ``population`` from the nearest
    neurons, host processes or inputs: the synapses stored with its neurons."""
    sources_of = defaultdict(list)
    for source, target in graph.edges:
        sources_of[target].append(source)
    found: list[str] = []

    def back(name: str) -> None:
        for source in sources_of[name]:
            if isinstance(graph.nodes[source], (*SYNAPTIC, nir.Delay)) and source not in found:
                found.append(source)
                back(source)

    back(population)
    return found
