"""From an exported NIR graph to stock Lava processes, timed as Loihi runs them (no Lava import).

The deployment form of ``--target loihi``: ``lava_runtime.stock`` builds these processes,
``lava_runtime.fixed_emulation`` computes their integers in PyTorch, ``loihi-fit`` counts
the neurons they add, and ``snnergy simulate`` charges them.

The ``--target loihi`` network, as the package's manifest places its nodes (``placement``,
written by ``export.loihi_map``): every neuron population a stock ``LIFReset``, every
synaptic NIR node a stock ``Sparse`` (``DelaySparse`` where it must wait), CMQKA's product a
stock ``ProdNeuron``; the host keeps what ``export.loihi_map`` puts there (the frames,
``time_mean``, ``ssa_attention``, the readout), as small host processes.

Timing. A stock synapse delivers one step after its input (Lava's ``Conv``/``Sparse``
buffer a step, as Loihi's synapses do); neurons and host processes emit within the step.
Every process has a *latency*: the step at which it emits frame 0 of the first window.
Where inputs of different latency meet a neuron, the earlier synapses wait
(``DelaySparse``, the synapse's own weights with a uniform delay); where they meet a host
process, a host delay lines them up; ``time_mean`` emits a window's mean during the next
window (latency ``T``). Samples stream back to back, one window of ``T`` steps each, and
every neuron resets at its window's first frame (``LIFReset(reset_interval=T)``).

Causal taps (NIR ``Delay`` of ``d`` steps, zero before a sample's first frame) are ``d``
*relay* neurons in a chain (memoryless LIFs copying their input one step later); a *clock*
neuron, a LIF counting steps with a bias, fires once per window and inhibits the relays
at each window's first frame, so no spike crosses from one sample into the next. Relays and
clocks are stock LIFs on neurocores: no host process is needed for the taps.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import nir
import numpy as np
import torch

from export.nir_reference import delay_steps, extension_op, node_shapes, synaptic, topological_order
from export.package_format import DT

HOST = "host"
INHIBITION = -2.0  # a clock spike into a relay: far below the relay's threshold of 0.5


@dataclass
class StockProcess:
    """One Lava process. ``inputs``: (source process, this process's port), in port order."""

    name: str
    kind: str
    shape: tuple[int, ...]  # per sample, NIR layout [C, H, W] (or the node's own)
    latency: int
    inputs: list[tuple[str, str]] = field(default_factory=list)
    params: dict = field(default_factory=dict)  # a synapse's: its NIR node (None: identity), scale, input shape
    stock: bool = True


STOCK_KINDS = {
    "sparse": "Sparse",
    "lif": "LIFReset",
    "relay": "LIF",
    "clock": "LIFReset",
    "clock_synapse": "Dense",
    "prod": "ProdNeuron",
    "source": "RingBuffer",
}


@dataclass
class StockPlan:
    processes: dict[str, StockProcess]
    time_steps: int
    output: str  # the readout process
    inputs: dict[str, str]  # modality -> source process
    populations: list[str]  # the LIF populations whose spikes are recorded (NIR node names)

    @property
    def latency(self) -> int:
        return self.processes[self.output].latency

    @property
    def support(self) -> list[str]:
        """The neurons the stock form adds to the model's: relays (causal taps, delay lines)
        and clocks. They cost energy like any neuron (``snnergy.simulate`` charges them)."""
        return [name for name, p in self.processes.items() if p.kind in ("relay", "clock")]

    def manifest(self) -> list[dict]:
        """Each process: its Lava process class (stock) or host role."""
        return [
            {
                "process": p.name,
                "lava": ("DelaySparse" if p.params.get("delay") else STOCK_KINDS[p.kind]) if p.stock else p.kind,
                "where": "neurocore" if p.stock and p.kind != "source" else "host",
            }
            for p in self.processes.values()
        ]


def tau_steps(node: nir.LIF, dt: float) -> float:
    return float(np.asarray(node.tau).flat[0]) / dt


def synapse_matrix(node: nir.NIRNode, in_shape: tuple[int, ...], scale: float) -> tuple:
    """The synaptic node as a ``(rows, cols, values, out_size, in_size)`` sparse matrix over
    C-order flattened neurons (``None`` node: the identity), weights times ``scale``."""
    size = int(np.prod(in_shape))
    if node is None:
        index = np.arange(size)
        return index, index, np.full(size, scale), size, size
    rows, cols, values, out_size = [], [], [], 0
    with torch.no_grad():
        for start in range(0, size, 1024):
            count = min(1024, size - start)
            basis = torch.zeros((count, size), dtype=torch.float64)
            basis[torch.arange(count), torch.arange(start, start + count)] = 1.0
            out = synaptic(_unbiased(node), basis.reshape(count, *in_shape)).reshape(count, -1)
            out_size = out.shape[1]
            column, row = torch.nonzero(out, as_tuple=True)
            rows.append(row.numpy())
            cols.append(column.numpy() + start)
            values.append(out[column, row].numpy() * scale)
    return np.concatenate(rows), np.concatenate(cols), np.concatenate(values), out_size, size


def _unbiased(node: nir.NIRNode) -> nir.NIRNode:
    if isinstance(node, nir.Conv2d):
        return nir.Conv2d(
            input_shape=node.input_shape,
            weight=node.weight,
            stride=node.stride,
            padding=node.padding,
            dilation=node.dilation,
            groups=node.groups,
            bias=np.zeros_like(node.bias),
        )
    return node


@dataclass(frozen=True)
class Placement:
    """A node's placement as the package's manifest records it (``export.loihi_map``)."""

    where: str
    process: str


class _Planner:
    def __init__(self, graph: nir.NIRGraph, time_steps: int, placement: list[dict]):
        self.graph, self.T = graph, time_steps
        self.dt = float(graph.metadata.get("dt", DT))
        self.shapes = node_shapes(graph)
        self.placements = {entry["node"]: Placement(entry["where"], entry["process"]) for entry in placement}
        self.sources_of: dict[str, list[str]] = defaultdict(list)
        for source, target in graph.edges:
            self.sources_of[target].append(source)
        self.processes: dict[str, StockProcess] = {}
        self.inputs: dict[str, str] = {}
        self.output = ""

    def add(self, process: StockProcess) -> str:
        if process.name in self.processes:
            raise ValueError(f"duplicate process {process.name!r}")
        self.processes[process.name] = process
        return process.name

    def latency(self, name: str) -> int:
        return self.processes[name].latency

    def real_valued(self, name: str) -> bool:
        process = self.processes[name]
        if process.kind == "host_delay":
            return self.real_valued(process.inputs[0][0])
        return process.kind in ("source", "prod", "time_mean", "ssa_attention", "host_synapses")

    # ----------------------------------------------------------------- host alignment
    def host_delayed(self, name: str, latency: int) -> str:
        """``name``'s output delayed on the host to arrive at ``latency``."""
        lag = latency - self.latency(name)
        if lag < 0:
            raise ValueError(f"{name} arrives after {latency}: cannot advance a signal")
        if lag == 0:
            return name
        delayed = f"{name}@delay{lag}"
        if delayed not in self.processes:
            source = self.processes[name]
            self.add(
                StockProcess(delayed, "host_delay", source.shape, latency, [(name, "s_in")], {"steps": lag}, False)
            )
        return delayed

    # ----------------------------------------------------------------- causal taps
    def relay_chain(self, delay_node: str) -> str:
        """The relays carrying ``delay_node``'s source ``d`` steps later, inhibited at every
        window's first frame; returns the last relay (its latency is the source's)."""
        (source,) = self.sources_of[delay_node]
        steps = delay_steps(self.graph.nodes[delay_node], self.dt)
        if steps == 0:
            return source
        if self.real_valued(source):
            raise ValueError(f"{delay_node}: a causal tap of real values cannot be relayed by spiking neurons")
        shape, latency = self.processes[source].shape, self.latency(source)
        clock = self.clock(latency)
        previous = source
        for index in range(1, steps + 1):
            relay = f"{delay_node}.relay{index}"
            self.add(StockProcess(relay, "relay", shape, latency))
            identity = self.synapse(relay, None, previous, 1.0, 0)
            gate = self.add(
                StockProcess(
                    f"{relay}<-clock", "clock_synapse", shape, latency, [(clock, "s_in")], {"weight": INHIBITION}
                )
            )
            self.processes[relay].inputs = [(identity, "a_in"), (gate, "a_in")]
            previous = relay
        return previous

    def delay_line(self, source: str, steps: int) -> str:
        """``source``'s spikes ``steps`` later: an identity ``DelaySparse`` into a relay neuron.
        Cheaper than delaying a large synapse (Lava's ``DelaySparse`` works in proportion to
        its weights times its delay every step); shared by every synapse that needs it."""
        name = f"{source}@delay{steps}"
        if name not in self.processes:
            shape = self.processes[source].shape
            self.add(StockProcess(name, "relay", shape, self.latency(source) + steps))
            self.processes[name].inputs = [(self.synapse(name, None, source, 1.0, steps - 1), "a_in")]
        return name

    def waiting(self, upstream: str, node_name: str | None, delay: int) -> tuple[str, int]:
        """Where a synapse waits ``delay`` steps: spikes in a delay line, host values on the host,
        and only an identity synapse (as many weights as neurons) as a ``DelaySparse``: Lava's
        CPU ``DelaySparse`` rebuilds its matrices every step, slow for a convolution's weights."""
        if delay == 0 or node_name is None:
            return upstream, delay
        if not self.real_valued(upstream):
            return self.delay_line(upstream, delay), 0
        if not self.processes[upstream].stock or self.processes[upstream].kind == "source":
            return self.host_delayed(upstream, self.latency(upstream) + delay), 0
        return upstream, delay

    def clock(self, latency: int) -> str:
        """A one-neuron clock firing the step before each window's first frame at ``latency``."""
        name = f"clock{latency % self.T}"
        if name not in self.processes:
            self.add(StockProcess(name, "clock", (1,), 0, params={"reset_offset": (latency + 1) % self.T}))
        return name

    # ----------------------------------------------------------------- neurons
    def feeds(self, target: str) -> list[tuple[str | None, str]]:
        """(synaptic NIR node or None, upstream process) for every input of ``target``."""
        result = []
        for source in self.sources_of[target]:
            node = self.graph.nodes[source]
            if self.placements.get(source) is not None and self.placements[source].process in ("Conv", "Dense"):
                for upstream in self.sources_of[source]:
                    if isinstance(self.graph.nodes[upstream], nir.Delay):
                        result.append((source, self.relay_chain(upstream)))
                    elif upstream in self.processes:
                        result.append((source, upstream))
                    else:
                        raise ValueError(f"{source}: chains of synaptic nodes into a neuron are not mapped")
            elif source in self.processes:
                result.append((None, source))
            else:
                raise ValueError(f"{target}: no process for its input {source} ({type(node).__name__})")
        return result

    def synapse(self, target: str, node_name: str | None, upstream: str, scale: float, delay: int) -> str:
        """A stock synapse from ``upstream`` into ``target`` (``node_name`` None: the identity): its
        weights (times ``scale``) as a ``Sparse`` matrix, a ``DelaySparse`` when it must wait.
        (Loihi 2 can store a convolution's kernel once, as ``loihi-fit`` counts it; lava-nc's
        CPU model of ``Conv`` loops over every pair of channels in scipy each step, so the
        simulation runs the expanded weights, the same numbers, as Lava's ``Sparse``.)"""
        node = None if node_name is None else self.graph.nodes[node_name]
        in_shape = self.processes[upstream].shape
        name = f"{target}<-{node_name or 'identity'}<-{upstream}"
        shape = in_shape if node is None else self.shapes[node_name]
        params = {
            "target": target,
            "node": node_name,
            "scale": scale,
            "in_shape": in_shape,
            "delay": delay,
            "graded": self.real_valued(upstream),
        }
        latency = self.latency(upstream) + 1 + delay
        return self.add(StockProcess(name, "sparse", shape, latency, [(upstream, "s_in")], params))

    def lif(self, name: str) -> None:
        node = self.graph.nodes[name]
        for key in ("v_reset", "v_leak"):
            if np.any(np.asarray(getattr(node, key)) != 0):
                raise ValueError(f"{name}: Lava's LIF resets to 0; {key} must be 0")
        tau = tau_steps(node, self.dt)
        feeds = self.feeds(name)
        arrival = max(self.latency(upstream) + 1 for _, upstream in feeds)
        bias = np.zeros(self.shapes[name], dtype=np.float64)
        inputs, biased = [], set()
        for node_name, upstream in feeds:
            upstream, delay = self.waiting(upstream, node_name, arrival - (self.latency(upstream) + 1))
            inputs.append((self.synapse(name, node_name, upstream, 1.0 / tau, delay), "a_in"))
            if node_name in biased:  # a synaptic node read from several sources: its bias once
                continue
            biased.add(node_name)
            if node_name is not None and getattr(self.graph.nodes[node_name], "bias", None) is not None:
                channel_bias = np.asarray(self.graph.nodes[node_name].bias, dtype=np.float64) / tau
                bias = bias + channel_bias.reshape(-1, *([1] * (bias.ndim - 1)))
        params = {
            "synapses": sorted(n for n in biased if n is not None),
            "dv": 1.0 / tau,
            "vth": float(np.asarray(node.v_threshold).flat[0]),
            "bias": bias,
            "reset_offset": (arrival + 1) % self.T,
        }
        self.add(StockProcess(name, "lif", self.shapes[name], arrival, inputs, params))

    def product(self, name: str) -> None:
        """CMQKA's ``mean_N x mean_T``: the token mean a stock synapse into ``a_in1`` (the
        product's scale folded into its weights), the time mean from the host into ``a_in2``."""
        node = self.graph.nodes[name]
        operands = [o.decode() if isinstance(o, bytes) else str(o) for o in node.metadata["operands"]]
        spatial, temporal = operands
        if self.placements[spatial].process != "Conv" or temporal not in self.processes:
            raise ValueError(f"{name}: the product expects a synaptic token mean and a host time mean")
        (upstream,) = self.sources_of[spatial]
        scale = float(node.metadata.get("scale", 1.0))
        arrival = max(self.latency(upstream) + 1, self.latency(temporal))
        upstream, delay = self.waiting(upstream, spatial, arrival - self.latency(upstream) - 1)
        a_in1 = self.synapse(name, spatial, upstream, scale, delay)
        a_in2 = self.host_delayed(temporal, arrival)
        self.add(StockProcess(name, "prod", self.shapes[name], arrival, [(a_in1, "a_in1"), (a_in2, "a_in2")]))

    # ----------------------------------------------------------------- host
    def host(self, name: str, kind: str) -> None:
        node = self.graph.nodes[name]
        sources = self.sources_of[name]
        if kind == "ssa_attention":
            sources = [o.decode() if isinstance(o, bytes) else str(o) for o in node.metadata["operands"]]
        arrival = max(self.latency(s) for s in sources)
        aligned = [self.host_delayed(s, arrival) for s in sources]
        params: dict = {"input_latency": arrival}
        if kind == "host_synapses":
            params["node"] = name
            inputs = [(s, "s_in") for s in aligned]
        elif kind == "ssa_attention":
            params.update(heads=int(node.metadata["heads"]), scale=float(node.metadata["scale"]))
            inputs = list(zip(aligned, ("q_in", "k_in", "v_in")))
        else:  # time_mean / readout
            inputs = [(s, "s_in") for s in aligned]
        latency = arrival + (self.T if kind in ("time_mean", "readout") else 0)
        self.add(StockProcess(name, kind, self.shapes[name], latency, inputs, params, stock=False))

    def build(self) -> StockPlan:
        for name in topological_order(self.graph):
            node, placement = self.graph.nodes[name], self.placements.get(name)
            op = extension_op(node)
            if isinstance(node, nir.Input):
                self.add(StockProcess(name, "source", self.shapes[name], 0))
                self.inputs[name.split(".", 1)[-1]] = name  # input.<modality>
            elif isinstance(node, nir.Output):
                (self.output,) = self.sources_of[name]
            elif isinstance(node, nir.LIF):
                self.lif(name)
            elif op == "product":
                self.product(name)
            elif op in ("time_mean", "ssa_attention"):
                is_readout = any(isinstance(self.graph.nodes[t], nir.Output) for s, t in self.graph.edges if s == name)
                self.host(name, "readout" if is_readout else op)
            elif placement is not None and placement.where == HOST:
                self.host(name, "host_synapses")
            # synapses and delays feeding neurons are built with their neuron (``feeds``)
        if self.output not in self.processes:
            raise ValueError("the graph's output is computed by no process")
        populations = [n for n, p in self.processes.items() if p.kind == "lif"]
        return StockPlan(self.processes, self.T, self.output, self.inputs, populations)


def build_stock_plan(graph: nir.NIRGraph, time_steps: int, placement: list[dict]) -> StockPlan:
    """The stock processes of ``graph``, placed as the package's manifest says (``placement``)."""
    return _Planner(graph, time_steps, placement).build()
