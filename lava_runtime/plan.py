"""From an exported NIR graph to the list of Lava processes that run it (no Lava import).

Grouping, and why each keeps the Loihi-style semantics:

* one **neuron-core process per NIR LIF node**: the population (Lava's ``LIFReset``
  dynamics) together with the synapses of every input that feeds only it, as a Loihi
  neurocore holds a population's compartments and its dendritic synapses. A *synapse
  chain* is a run of synaptic NIR nodes (``Conv2d``, ``SumPool2d``, ``AvgPool2d``,
  ``Flatten``, ``Affine``) between two neuron/extension nodes: it has no state, so running
  it where its spikes arrive changes nothing but the number of messages; the inputs'
  currents are summed (NIR's fan-in sum) before the neuron update of the same step;
* the readout's chains (pool -> flatten -> linear, not into a neuron) stay synapse
  processes;
* one **process per extension node** (``time_mean``, ``product``, ``ssa_attention``), and
  one ``token_mean`` process per whole-grid ``AvgPool2d`` (CMQKA's ``mean_N``: the grid's
  sum over the window area);
* **batch lanes**: every process holds ``lanes`` independent copies of its units, one
  per sample of a batch, as replicating a network over cores would. No unit reads
  another lane, so each lane runs exactly the single-sample network.

Timing. Synapses deliver within the step (like SpikingJelly's layer-by-layer step), so
every node sees frame ``j`` of a sample at the same step, except downstream of a
``time_mean``: its output exists only once the last frame of the window has arrived, so
it is emitted during the next window (latency ``T``). Where paths of different latency
meet, a ``Delay`` process on the earlier path lines them up; the readout's latency is the
documented pipeline latency of the whole network. Samples stream through back to back,
one window of ``T`` steps each; every neuron resets at the first frame of its window.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import nir
import numpy as np

from export.nir_reference import delay_steps, node_shapes, token_mean_divisor, topological_order
from export.package_format import DT

SYNAPTIC = (nir.Conv2d, nir.SumPool2d, nir.AvgPool2d, nir.Flatten, nir.Affine)


@dataclass
class ProcessPlan:
    """One Lava process: what it runs, its per-sample output shape and its output latency."""

    name: str
    kind: str  # input | synapses | lif | token_mean | time_mean | product | ssa_attention | delay | shift | readout
    shape: tuple[int, ...]
    latency: int
    sources: list[str] = field(default_factory=list)  # process names, in operand order
    nodes: list[str] = field(default_factory=list)  # NIR nodes it runs, in order
    params: dict = field(default_factory=dict)


@dataclass
class NetworkPlan:
    processes: dict[str, ProcessPlan]
    time_steps: int
    output: str  # the process whose output is the logits
    input_nodes: dict[str, str]  # modality -> input process name

    @property
    def latency(self) -> int:
        return self.processes[self.output].latency

    def count(self, kind: str) -> int:
        return sum(1 for p in self.processes.values() if p.kind == kind)


def _decode(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def build_plan(graph: nir.NIRGraph, time_steps: int) -> NetworkPlan:
    """Processes, their sources and latencies, with delays where paths of different latency meet."""
    sources_of, targets_of = defaultdict(list), defaultdict(list)
    for source, target in graph.edges:
        sources_of[target].append(source)
        targets_of[source].append(target)
    shapes = node_shapes(graph)
    process_of: dict[str, str] = {}  # NIR node -> process running it
    processes: dict[str, ProcessPlan] = {}
    inputs: dict[str, str] = {}
    output = ""

    for name in topological_order(graph):
        node = graph.nodes[name]
        node_sources = sources_of[name]
        if isinstance(node, nir.Input):
            processes[name] = ProcessPlan(name, "input", shapes[name], 0)
            inputs[name.split(".", 1)[1]] = name
            process_of[name] = name
            continue
        if isinstance(node, nir.Output):
            (output,) = (process_of[s] for s in node_sources)
            continue
        divisor = token_mean_divisor(node, tuple(shapes[name][-2:]))
        if divisor is not None:  # CMQKA's mean_N, a whole-grid AvgPool2d: one process, not a synapse chain
            processes[name] = ProcessPlan(
                name, "token_mean", shapes[name], 0, [process_of[s] for s in node_sources], [name], {"divisor": divisor}
            )
            process_of[name] = name
            continue
        if isinstance(node, SYNAPTIC):
            (single,) = node_sources if len(node_sources) == 1 else (None,)
            chain = processes.get(process_of.get(single, ""))
            if chain is not None and chain.kind == "synapses" and len(targets_of[single]) == 1:
                chain.nodes.append(name)  # extend the stateless chain
                chain.shape = shapes[name]
                process_of[name] = chain.name
                continue
            kind = "synapses"
        elif isinstance(node, nir.LIF):
            kind = "lif"
        elif isinstance(node, nir.Delay):
            kind = "shift"  # a causal tap: delayed within each sample's window (the model's zero history)
        elif isinstance(node, nir.NIRGraph) and "snnergy_op" in node.metadata:
            kind = node.metadata["snnergy_op"]
            if "operands" in node.metadata:
                node_sources = [_decode(n) for n in node.metadata["operands"]]
        else:
            raise ValueError(f"node {name!r}: no Lava mapping for {type(node).__name__}")
        params = {"steps": delay_steps(node, float(graph.metadata.get("dt", DT)))} if kind == "shift" else {}
        processes[name] = ProcessPlan(
            name, kind, shapes[name], 0, [process_of[s] for s in node_sources], [name], params
        )
        process_of[name] = name

    if not output:
        raise ValueError("the graph has no Output node")
    processes[output].kind = "readout" if processes[output].kind == "time_mean" else processes[output].kind
    _assign_latencies(processes, time_steps)
    _fuse_into_neurons(processes)
    return NetworkPlan(processes, time_steps, output, inputs)


def _fuse_into_neurons(processes: dict[str, ProcessPlan]) -> None:
    """Each neuron process takes in the synapse chains and delays that only feed it.

    A neuron's ``params["inputs"]`` lists its dendritic groups: the processes whose outputs
    a group sums (each read through its own port, after its own delay) and the NIR synaptic
    nodes applied to that sum (none for a direct spike or value input). ``sources`` lists
    the ports' processes, group after group. Synapses are stateless and linear, so delaying
    their input instead of their output changes nothing.
    """
    targets = defaultdict(list)
    for plan in processes.values():
        for source in plan.sources:
            targets[source].append(plan.name)
    absorbed: set[str] = set()

    def undelayed(name: str, consumer: str) -> tuple[str, int, int]:
        """``name`` with the delays that only ``consumer`` reads looked through: the source,
        its alignment delay (a plain stream delay) and its causal shift (within the window)."""
        process = processes[name]
        if process.kind in ("delay", "shift") and targets[name] == [consumer]:
            absorbed.add(name)
            source, delay, shift = undelayed(process.sources[0], name)
            steps = process.params["steps"]
            return (source, delay + steps, shift) if process.kind == "delay" else (source, delay, shift + steps)
        return name, 0, 0

    for plan in processes.values():
        if plan.kind != "lif":
            continue
        groups = []
        for port_source in plan.sources:
            source, after, shift = undelayed(port_source, plan.name)
            chain = processes[source]
            if chain.kind == "synapses" and len(targets[source]) == 1:
                absorbed.add(source)
                feeds = [undelayed(s, source) for s in chain.sources]
                groups.append(
                    {
                        "sources": [s for s, _, _ in feeds],
                        "delays": [d + after for _, d, _ in feeds],
                        "shifts": [sh + shift for _, _, sh in feeds],
                        "nodes": list(chain.nodes),
                    }
                )
            else:
                groups.append({"sources": [source], "delays": [after], "shifts": [shift], "nodes": []})
        plan.params["inputs"] = groups
        plan.sources = [s for group in groups for s in group["sources"]]
    left = [name for name, p in processes.items() if p.kind == "shift" and name not in absorbed]
    if left:
        raise ValueError(
            f"causal delay nodes {left[:3]} do not feed one neuron's synapses only; the runtime cannot place them"
        )
    for name in absorbed:
        del processes[name]


def _assign_latencies(processes: dict[str, ProcessPlan], time_steps: int) -> None:
    """Latency of every process; insert ``Delay`` processes on the earlier of meeting paths."""
    for plan in list(processes.values()):  # insertion order is topological
        if plan.kind == "input":
            continue
        arrival = max(processes[s].latency for s in plan.sources)
        for index, source in enumerate(plan.sources):
            lag = arrival - processes[source].latency
            if lag:
                delay_name = f"{source}@delay{lag}"
                if delay_name not in processes:
                    processes[delay_name] = ProcessPlan(
                        delay_name,
                        "delay",
                        processes[source].shape,
                        arrival,
                        [source],
                        params={"steps": lag, "input_latency": processes[source].latency},
                    )
                plan.sources[index] = delay_name
        plan.latency = arrival + (time_steps if plan.kind in ("time_mean", "readout") else 0)
        plan.params["input_latency"] = arrival


def lif_parameters(node: nir.LIF, dt: float) -> dict[str, float]:
    """Floating-point LIF parameters: NIR's Euler step as Lava's ``v(1 - dv) + u``, ``u = a``."""
    tau_steps = float(np.asarray(node.tau).flat[0]) / dt
    return {"tau_steps": tau_steps, "dv": 1.0 / tau_steps, "vth": float(np.asarray(node.v_threshold).flat[0])}


GROUPINGS = ("block", "population")


def group_processes(plan: NetworkPlan, grouping: str) -> list[list[str]]:
    """The plan's processes in groups, each run by one Lava process, members in run order.

    ``population``: every process alone (each population its own Lava process, as many
    OS processes as populations). ``block``: one group per block and modality, read off
    the module path that names every node: up to its modality, a fusion block's attention
    and MLP together (``stages.0.0.audio``, ``stem.video``, ``down.1.audio``, ``head``); a
    delay joins the process it delays. Every Lava process costs a synchronisation round
    trip per step: tiny has 108 processes, 17 blocks.
    """
    if grouping not in GROUPINGS:
        raise ValueError(f"grouping must be one of {list(GROUPINGS)}, got {grouping!r}")
    modalities = set(plan.input_nodes)

    def block(name: str) -> str:
        parts = [part for part in name.split("@", 1)[0].split(".") if part not in ("attn", "mlp")]
        for index, part in enumerate(parts):
            if part in modalities:
                return ".".join(parts[: index + 1])
        return parts[0]

    key = (lambda name: name) if grouping == "population" else block
    groups: dict[str, list[str]] = {}
    for name in run_order(plan):
        groups.setdefault(key(name), []).append(name)
    return list(groups.values())


def run_order(plan: NetworkPlan) -> list[str]:
    """The processes in an order where every process comes after its sources."""
    order: list[str] = []
    placed: set[str] = set()

    def place(name: str) -> None:
        if name in placed:
            return
        for source in plan.processes[name].sources:
            place(source)
        placed.add(name)
        order.append(name)

    for name in plan.processes:
        place(name)
    return order
