"""Which parts of an exported NIR graph stock consumers run, and how well they agree with us.

``check_consumer`` splits a graph into the largest parts a consumer (nirtorch, norse)
can take: connected runs of nodes whose type the consumer builds, found by trying each node
type alone, never from a list we keep. Our extension subgraphs are never in a part (a
stock consumer would run them as identity). Each part is cut from the graph
(``export.nir_subgraph.cut``), fed the reference executor's values of the nodes outside it
and run frame by frame; its outputs are compared with the reference's values of the same
nodes: the fraction of equal spikes for a neuron, the largest absolute difference for a
real value. A part that fails to build or run is reported with the consumer's own error.

``snnergy nir-check FILE`` prints the resulting interop matrix (docs/export-nir.md has the
one for tiny).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import nir
import numpy as np
import torch

from export.nir_reference import run_graph, topological_order
from export.nir_subgraph import cut, nirtorch_module, norse_module, run_frames

CONSUMERS: dict[str, Callable[[nir.NIRGraph], torch.nn.Module]] = {"nirtorch": nirtorch_module, "norse": norse_module}


@dataclass
class PartResult:
    """One part of the graph in one consumer."""

    nodes: list[str]
    inputs: list[str]
    outputs: list[str]
    ran: bool
    error: str = ""
    spike_agreement: dict[str, float] = field(default_factory=dict)  # neuron output -> fraction of equal spikes
    max_abs_difference: dict[str, float] = field(default_factory=dict)  # real-valued output -> max |consumer - ref|


@dataclass
class ConsumerReport:
    consumer: str
    supported_types: list[str]
    unsupported_types: dict[str, str]  # node type -> the consumer's error
    parts: list[PartResult]

    @property
    def nodes_run(self) -> int:
        return sum(len(p.nodes) for p in self.parts if p.ran)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "nodes_run": self.nodes_run}


def _type_name(node: nir.NIRNode) -> str:
    if isinstance(node, nir.NIRGraph):
        return f"extension:{node.metadata.get('snnergy_op', 'subgraph')}"
    if isinstance(node, nir.LIF) and "snnergy_op" in node.metadata:
        return "LIF"  # a memoryless threshold unit is a standard LIF
    return type(node).__name__


def _first_line(error: BaseException) -> str:
    return f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"[:200]


def _merge_inputs(part: nir.NIRGraph) -> tuple[nir.NIRGraph, list[str]]:
    """The part with its ``Input`` ports merged into one when they all feed the same node (a
    node sums its incoming edges, so it may as well receive their sum); the sources merged."""
    ports = [name for name, node in part.nodes.items() if isinstance(node, nir.Input)]
    targets = {t for s, t in part.edges if s in ports}
    if len(ports) < 2 or len(targets) != 1:
        return part, [p.split(":", 1)[1] for p in ports]
    nodes = {name: node for name, node in part.nodes.items() if name not in ports}
    nodes["input:sum"] = part.nodes[ports[0]]
    edges = [(s, t) for s, t in part.edges if s not in ports] + [("input:sum", targets.pop())]
    merged = nir.NIRGraph(nodes=nodes, edges=edges, metadata=part.metadata)
    return merged, [p.split(":", 1)[1] for p in ports]


def _run_part(
    build: Callable[[nir.NIRGraph], torch.nn.Module], part: nir.NIRGraph, values: dict[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """The part's outputs (``output:<node>`` -> ``[T, B, ...]``) as the consumer computes them."""
    part, sources = _merge_inputs(part)
    inputs = [name for name, node in part.nodes.items() if isinstance(node, nir.Input)]
    outputs = [name for name, node in part.nodes.items() if isinstance(node, nir.Output)]
    if len(inputs) != 1:
        raise NotImplementedError(f"{len(inputs)} inputs: a stock consumer module takes one input tensor per step")
    module = build(part)
    with torch.no_grad():
        got = run_frames(module, sum(values[source] for source in sources))
    if isinstance(got, (tuple, list)) or len(outputs) != 1:
        raise NotImplementedError(f"{len(outputs)} outputs: compared only for parts with one output")
    return {outputs[0]: got}


def _alone(graph: nir.NIRGraph, name: str) -> nir.NIRGraph:
    """Node ``name`` alone between one ``Input`` (the sum of its sources) and one ``Output``."""
    node = graph.nodes[name]
    source_type = next(graph.nodes[s].output_type["output"] for s, t in graph.edges if t == name)
    nodes = {
        "input:sum": nir.Input(input_type=np.array(source_type)),
        name: node,
        f"output:{name}": nir.Output(output_type=np.array(node.output_type["output"])),
    }
    return nir.NIRGraph(nodes=nodes, edges=[("input:sum", name), (name, f"output:{name}")], metadata=graph.metadata)


def supported_types(graph: nir.NIRGraph, build: Callable, values: dict[str, torch.Tensor]) -> tuple[list, dict]:
    """Try each node type of ``graph`` on one node of it alone, fed the reference's input."""
    supported, unsupported, tried = [], {}, set()
    for name, node in graph.nodes.items():
        kind = _type_name(node)
        if kind in tried or isinstance(node, (nir.Input, nir.Output)) or kind.startswith("extension:"):
            continue
        tried.add(kind)
        frames = sum(values[s] for s, t in graph.edges if t == name)
        try:
            with torch.no_grad():
                run_frames(build(_alone(graph, name)), frames)
            supported.append(kind)
        except Exception as error:  # the consumer's own failure, reported as such
            unsupported[kind] = _first_line(error)
    return supported, unsupported


def _parts(graph: nir.NIRGraph, runnable: set[str]) -> list[list[str]]:
    """Runnable nodes grouped, in topological order, into parts with one input and one output:
    a node joins the parts of its sources (read by it alone) when, together, they still read
    one outside node (a stem's deep branch and shortcut merge at its output neuron);
    otherwise it starts a part (which may have several inputs, and is reported as such)."""
    sources_of: dict[str, list[str]] = {}
    targets_of: dict[str, list[str]] = {}
    for source, target in graph.edges:
        sources_of.setdefault(target, []).append(source)
        targets_of.setdefault(source, []).append(target)
    part_of: dict[str, int] = {}
    parts: dict[int, dict[str, Any]] = {}
    for name in topological_order(graph):
        if name not in runnable:
            continue
        sources = sources_of.get(name, [])
        # a source read by other nodes too ends its part there (a part has one output)
        inner = [s for s in sources if s in part_of and len(targets_of[s]) == 1]
        joined = {part_of[s] for s in inner}
        outside = {s for s in sources if s not in inner}
        inputs = set(outside).union(*(parts[i]["inputs"] for i in joined))
        if joined and len(inputs) == 1:
            keep, *others = sorted(joined)
            for other in others:
                parts[keep]["nodes"] += parts.pop(other)["nodes"]
            for member in parts[keep]["nodes"]:
                part_of[member] = keep
            parts[keep]["inputs"] = inputs
        else:
            keep = len(part_of) + len(parts) + 1_000_000  # a fresh key
            parts[keep] = {"nodes": [], "inputs": set(sources)}
        parts[keep]["nodes"].append(name)
        part_of[name] = keep
    order = {name: i for i, name in enumerate(graph.nodes)}
    grouped = [sorted(p["nodes"], key=order.get) for p in parts.values()]
    return sorted(grouped, key=len, reverse=True)


def check_consumer(graph: nir.NIRGraph, consumer: str, inputs: dict[str, torch.Tensor]) -> ConsumerReport:
    """Run every part of ``graph`` that ``consumer`` can take; compare with the reference executor.

    ``inputs``: Input node name -> ``[T, B, ...]`` frames.
    """
    if consumer not in CONSUMERS:
        raise ValueError(f"consumer must be one of {sorted(CONSUMERS)}, got {consumer!r}")
    build = CONSUMERS[consumer]
    values = run_graph(graph, inputs)
    supported, unsupported = supported_types(graph, build, values)
    runnable = {
        name
        for name, node in graph.nodes.items()
        if not isinstance(node, (nir.Input, nir.Output)) and _type_name(node) in supported
    }
    results = []
    for names in _parts(graph, runnable):
        part = cut(graph, names)
        ports = [n for n, node in part.nodes.items() if isinstance(node, nir.Input)]
        outs = [n for n, node in part.nodes.items() if isinstance(node, nir.Output)]
        result = PartResult(names, [p.split(":", 1)[1] for p in ports], [o.split(":", 1)[1] for o in outs], False)
        try:
            got = _run_part(build, part, values)
            result.ran = True
        except Exception as error:
            result.error = _first_line(error)
            results.append(result)
            continue
        for port, tensor in got.items():
            name = port.split(":", 1)[1]
            expected = values[name]
            if tensor.shape != expected.shape:
                result.ran, result.error = False, f"output {name}: shape {list(tensor.shape)} != {list(expected.shape)}"
            elif isinstance(graph.nodes[name], nir.LIF):
                result.spike_agreement[name] = (tensor == expected).float().mean().item()
            else:
                result.max_abs_difference[name] = (tensor - expected).abs().max().item()
        results.append(result)
    return ConsumerReport(consumer, supported, unsupported, results)


def format_matrix(reports: list[ConsumerReport], graph: nir.NIRGraph) -> str:
    """The interop matrix: node types per consumer, then every part that ran or failed."""
    types = sorted({_type_name(node) for node in graph.nodes.values()} - {"Input", "Output"})
    lines = ["| node type | nodes | " + " | ".join(r.consumer for r in reports) + " |"]
    lines.append("|---|---|" + "---|" * len(reports))
    for kind in types:
        count = sum(1 for node in graph.nodes.values() if _type_name(node) == kind)
        cells = []
        for report in reports:
            if kind in report.supported_types:
                cells.append("runs")
            elif kind in report.unsupported_types:
                cells.append(f"fails: {report.unsupported_types[kind]}")
            else:
                cells.append("not run (our extension, which stock consumers refuse: docs/export-nir.md)")
        lines.append(f"| {kind} | {count} | " + " | ".join(cells) + " |")
    total = sum(1 for node in graph.nodes.values() if not isinstance(node, (nir.Input, nir.Output)))
    for report in reports:
        ran = [p for p in report.parts if p.ran]
        spikes = [a for p in ran for a in p.spike_agreement.values()]
        real = [d for p in ran for d in p.max_abs_difference.values()]
        lines += [
            "",
            f"**{report.consumer}**: {len(ran)} of {len(report.parts)} parts ran ({report.nodes_run} of {total} "
            f"nodes); spike agreement with the reference executor: "
            + (f"min {min(spikes):.6f} over {len(spikes)} neuron outputs" if spikes else "-")
            + (f"; real-valued outputs: max abs difference {max(real):.2e} over {len(real)}" if real else ""),
        ]
        odd = [p for p in report.parts if not p.ran or any(a < 1.0 for a in p.spike_agreement.values())]
        for part in odd[:10]:
            where = f"* {len(part.nodes)} nodes from `{part.nodes[0]}`"
            if not part.ran:
                lines.append(f"{where}: not run ({part.error})")
            else:
                worst = min(part.spike_agreement, key=part.spike_agreement.get)
                lines.append(f"{where}: `{worst}` agrees on {part.spike_agreement[worst]:.6f} of spikes")
        if len(odd) > 10:
            lines.append(f"* ... {len(odd) - 10} more (the JSON lists every part)")
    return "\n".join(lines)
