"""Parts of an exported graph as graphs of their own, and stock NIR consumers that run them.

A third-party NIR consumer (nirtorch, norse) cannot run the whole SNNergy graph (two
inputs, our extension nodes); it can run parts of it. ``cut`` makes such a part a graph:
the chosen nodes, one ``Input`` per outside node feeding them and one ``Output`` per node
read outside (or by nothing). Values for its inputs come from the reference executor on
the whole graph, so a consumer's output can be compared with the reference's values of
the same nodes, part by part.
"""

from __future__ import annotations

from collections.abc import Iterable

import nir
import numpy as np
import torch

from export.nir_reference import NIRLIF
from export.package_format import DT


def cut(graph: nir.NIRGraph, names: Iterable[str]) -> nir.NIRGraph:
    """The nodes ``names`` of ``graph`` with their edges, fed by ``input:<outside node>`` and
    read through ``output:<node>``."""
    keep = [name for name in graph.nodes if name in set(names)]
    if not keep:
        raise ValueError("no node of the graph is among the names to cut")
    inside = set(keep)
    nodes: dict[str, nir.NIRNode] = {name: graph.nodes[name] for name in keep}
    edges = [(s, t) for s, t in graph.edges if s in inside and t in inside]
    for source, target in graph.edges:
        if target in inside and source not in inside:
            port = f"input:{source}"
            nodes.setdefault(port, nir.Input(input_type=np.array(graph.nodes[source].output_type["output"])))
            edges.append((port, target))
    read_outside = {s for s, t in graph.edges if s in inside and t not in inside}
    read_at_all = {s for s, _ in graph.edges}
    for name in keep:
        if name in read_outside or name not in read_at_all:
            nodes[f"output:{name}"] = nir.Output(output_type=np.array(graph.nodes[name].output_type["output"]))
            edges.append((name, f"output:{name}"))
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata={"dt": graph.metadata.get("dt", DT)})


def nirtorch_module(graph: nir.NIRGraph) -> torch.nn.Module:
    """``graph`` in nirtorch's interpreter; LIF nodes run as our :class:`NIRLIF` (nirtorch
    ships no neuron models)."""
    import nirtorch

    dt = float(graph.metadata.get("dt", DT))
    return nirtorch.nir_to_torch(graph, node_map={nir.LIF: lambda node: NIRLIF(node, dt)})


def norse_module(graph: nir.NIRGraph) -> torch.nn.Module:
    """``graph`` as norse builds it (its own LIF, same Euler step)."""
    import norse.torch as norse

    return norse.from_nir(graph, dt=float(graph.metadata.get("dt", DT)))


def run_frames(module: torch.nn.Module, frames: torch.Tensor) -> torch.Tensor:
    """A stateful consumer module (``forward(x, state) -> (y, state)``) over ``[T, ...]`` frames."""
    state, outputs = None, []
    for frame in frames:
        out, state = module(frame, state)
        outputs.append(out)
    return torch.stack(outputs)
