"""``snnergy loihi-fit``: whether an exported network fits Loihi chips, population by population.

For every population placed on neurocores (``export.loihi_map``) it counts neurons, the
synaptic connections reaching them (each output neuron times the inputs its kernel window
covers, padding excluded) and the weights stored when convolution kernels are shared (one
copy per core) or expanded (one weight per connection), then the neurocores each needs
under the chip limits, which are data (``export/loihi_limits/*.yaml``, with sources) like
the energy cost models. Each population gets cores of its own; its neurons are split
evenly over them and each core stores the fan-in of its neurons (a shared kernel whole).

The stock form adds neurons of its own (``export.stock_plan``): relays for the causal taps
and the delay lines that line up fan-in, and clocks gating the taps. They are counted as
populations too (``role`` relay / clock), each relay with its identity synapse and, for a
tap, the clock's inhibitory synapse, one stored weight per connection.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import nir
import numpy as np
import yaml

from export.loihi_map import HOST, SYNAPTIC, is_population, place, population_synapses
from export.nir_reference import node_shapes
from export.stock_plan import STOCK_KINDS, build_stock_plan

LIMITS_DIR = Path(__file__).resolve().parent / "loihi_limits"
DEFAULT_LIMITS = "loihi2"
LIMIT_FIELDS = (
    "cores_per_chip",
    "neurons_per_chip",
    "synapses_per_chip",
    "neurons_per_core",
    "memory_per_core_bytes",
    "neuron_state_bits",
    "weight_bits",
)


@dataclass(frozen=True)
class ChipLimits:
    name: str
    source: str
    cores_per_chip: int
    neurons_per_chip: int
    synapses_per_chip: int
    neurons_per_core: int
    memory_per_core_bytes: int
    neuron_state_bits: int
    weight_bits: int
    description: str = ""


def load_limits(name_or_path: str = DEFAULT_LIMITS) -> ChipLimits:
    """A built-in chip (``loihi2``) or a YAML file with the same fields."""
    path = Path(name_or_path)
    if not path.suffix:
        path = LIMITS_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in LIMITS_DIR.glob("*.yaml"))
        raise ValueError(f"chip limits {name_or_path!r}: no such file; built-in: {known}")
    data = yaml.safe_load(path.read_text()) or {}
    missing = [key for key in ("name", "source", *LIMIT_FIELDS) if key not in data]
    if missing:
        raise ValueError(f"{path}: chip limits lack {missing}")
    return ChipLimits(
        name=str(data["name"]),
        source=" ".join(str(data["source"]).split()),
        description=str(data.get("description", "")),
        **{key: int(data[key]) for key in LIMIT_FIELDS},
    )


# ----------------------------------------------------------------- synapse counts
def _window_taps(size: int, kernel: int, stride: int, padding: int, dilation: int, outputs: int) -> int:
    """Inputs inside the window, summed over the outputs along one axis (padding excluded)."""
    return sum(sum(1 for k in range(kernel) if 0 <= o * stride - padding + k * dilation < size) for o in range(outputs))


def _pair(value) -> tuple[int, int]:
    return tuple(int(v) for v in np.broadcast_to(np.asarray(value), 2))


def synapse_counts(node: nir.NIRNode, in_shape: tuple[int, ...], out_shape: tuple[int, ...]) -> tuple[int, int]:
    """(connections, weights stored with shared kernels) of one synaptic node."""
    if isinstance(node, (nir.Flatten, nir.Delay)):
        return 0, 0
    if isinstance(node, nir.Affine):
        return int(np.asarray(node.weight).size), int(np.asarray(node.weight).size)
    if isinstance(node, nir.Conv2d):
        weight = np.asarray(node.weight)
        kernel, dilation = weight.shape[2:], _pair(node.dilation)
        inputs_per_output = weight.shape[1]  # C_in / groups
        stored = weight.size
    elif isinstance(node, (nir.SumPool2d, nir.AvgPool2d)):
        kernel, dilation = _pair(node.kernel_size), (1, 1)
        inputs_per_output = 1  # one channel, a constant kernel per channel
        stored = out_shape[0] * kernel[0] * kernel[1]
    else:
        raise ValueError(f"no synapse count for {type(node).__name__}")
    stride, padding = _pair(node.stride), _pair(node.padding)
    taps = [
        _window_taps(in_shape[1 + axis], kernel[axis], stride[axis], padding[axis], dilation[axis], out_shape[1 + axis])
        for axis in (0, 1)
    ]
    connections = out_shape[0] * inputs_per_output * taps[0] * taps[1]
    return connections, stored


# ----------------------------------------------------------------- cores
def cores_needed(neurons: int, synapse_bytes_per_neuron: float, shared_bytes: int, limits: ChipLimits) -> int | None:
    """Fewest cores holding ``neurons`` (split evenly) with their state, their own synapses and
    a copy of the shared kernels each; None if no split fits."""
    state = limits.neuron_state_bits / 8
    cores = max(1, math.ceil(neurons / limits.neurons_per_core))
    while cores <= neurons:
        per_core = math.ceil(neurons / cores)
        if math.ceil(per_core * (state + synapse_bytes_per_neuron)) + shared_bytes <= limits.memory_per_core_bytes:
            return cores
        if per_core == 1:
            break
        cores = max(cores + 1, math.ceil(neurons / (per_core - 1)))
    return None


def cores_shared(shape: tuple[int, ...], stored_bytes: int, limits: ChipLimits) -> int | None:
    """Fewest cores with shared kernels: output channels split over cores, each core storing
    the kernels of its channels once; a channel too large for a core is split over several,
    each holding a copy of its kernel."""
    channels, per_channel = int(shape[0]), int(np.prod(shape[1:]))
    state, kernel = limits.neuron_state_bits / 8, stored_bytes / channels
    for cores in range(1, channels + 1):
        chunk = math.ceil(channels / cores)
        if (
            chunk * per_channel <= limits.neurons_per_core
            and math.ceil(chunk * (per_channel * state + kernel)) <= limits.memory_per_core_bytes
        ):
            return cores
    per_channel_cores = cores_needed(per_channel, 0.0, math.ceil(kernel), limits)
    return None if per_channel_cores is None else channels * per_channel_cores


@dataclass
class PopulationFit:
    name: str
    process: str
    neurons: int
    connections: int
    stored_weights: int  # with shared convolution kernels
    graded: bool
    cores_shared: int | None  # kernels stored once per core that uses them
    cores_expanded: int | None  # one stored weight per connection
    cores: int | None  # the fewer of the two
    role: str = "model"  # a population of the model, or a relay / clock the stock form adds


@dataclass
class FitReport:
    limits: ChipLimits
    populations: list[PopulationFit]
    host: list[dict[str, str]]
    totals: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "limits": asdict(self.limits),
            "totals": self.totals,
            "populations": [asdict(p) for p in self.populations],
            "host": self.host,
        }


def fit_graph(graph: nir.NIRGraph, limits: ChipLimits) -> FitReport:
    placements = place(graph)
    shapes = node_shapes(graph)
    sources_of: dict[str, list[str]] = {}
    for source, target in graph.edges:
        sources_of.setdefault(target, []).append(source)
    weight_bytes = limits.weight_bits / 8
    populations = []
    for name, node in graph.nodes.items():
        if not is_population(node):
            continue
        neurons = int(np.prod(shapes[name]))
        connections = stored = 0
        for synapse in population_synapses(graph, name):
            synapse_node = graph.nodes[synapse]
            if not isinstance(synapse_node, SYNAPTIC):
                continue
            in_shape = shapes[sources_of[synapse][0]]
            c, s = synapse_counts(synapse_node, in_shape, shapes[synapse])
            connections, stored = connections + c, stored + s
        shared = cores_shared(shapes[name], math.ceil(stored * weight_bytes), limits)
        expanded = cores_needed(neurons, connections * weight_bytes / neurons, 0, limits)
        options = [c for c in (shared, expanded) if c is not None]
        populations.append(
            PopulationFit(
                name=name,
                process=placements[name].process,
                neurons=neurons,
                connections=connections,
                stored_weights=stored,
                graded=placements[name].graded,
                cores_shared=shared,
                cores_expanded=expanded,
                cores=min(options) if options else None,
            )
        )
    populations += _support_fits(graph, placements, limits)
    host = [{"node": p.node, "role": p.process, "why": p.why} for p in placements.values() if p.where == HOST]
    report = FitReport(limits, populations, host)
    report.totals = _totals(populations, limits)
    return report


def _support_fits(graph: nir.NIRGraph, placements: dict, limits: ChipLimits) -> list[PopulationFit]:
    """The relays and clocks of the stock form, as populations of their own."""
    placement = [{"node": p.node, "where": p.where, "process": p.process} for p in placements.values()]
    plan = build_stock_plan(graph, int(graph.metadata.get("time_steps", 1)), placement)
    fits = []
    for name in plan.support:
        process = plan.processes[name]
        neurons = int(np.prod(process.shape))
        connections = sum(neurons for _ in process.inputs)  # identity synapse; a tap's clock reaches every neuron
        cores = cores_needed(neurons, connections * limits.weight_bits / 8 / neurons, 0, limits)
        kind = STOCK_KINDS[process.kind]
        fits.append(
            PopulationFit(name, kind, neurons, connections, connections, False, cores, cores, cores, process.kind)
        )
    return fits


def _totals(populations: list[PopulationFit], limits: ChipLimits) -> dict[str, Any]:
    neurons = sum(p.neurons for p in populations)
    connections = sum(p.connections for p in populations)
    stored = sum(p.stored_weights for p in populations)
    unfit = [p.name for p in populations if p.cores is None]

    def total(field: str) -> int | None:
        values = [getattr(p, field) for p in populations]
        return None if None in values else sum(values)

    cores, cores_shared, cores_expanded = total("cores"), total("cores_shared"), total("cores_expanded")
    # weights stored when each population takes the cheaper way (shared unless expanded needs fewer cores)
    stored_chosen = sum(p.stored_weights if p.cores == p.cores_shared else p.connections for p in populations)

    def chips(core_count: int | None, synapses: int) -> int | None:
        if core_count is None:
            return None
        return max(
            math.ceil(core_count / limits.cores_per_chip),
            math.ceil(neurons / limits.neurons_per_chip),
            math.ceil(synapses / limits.synapses_per_chip),
        )

    return {
        "populations": len(populations),
        "relay_and_clock_neurons": sum(p.neurons for p in populations if p.role != "model"),
        "graded_populations": sum(p.graded for p in populations),
        "neurons": neurons,
        "connections": connections,
        "stored_weights": stored,
        "neuron_state_bytes": math.ceil(neurons * limits.neuron_state_bits / 8),
        "weight_bytes_shared": math.ceil(stored * limits.weight_bits / 8),
        "weight_bytes_expanded": math.ceil(connections * limits.weight_bits / 8),
        "cores": cores,
        "stored_weights_chosen": stored_chosen,
        "chips": chips(cores, stored_chosen),
        "cores_shared": cores_shared,
        "cores_expanded": cores_expanded,
        "chips_expanded": chips(cores_expanded, connections),
        "chips_shared": chips(cores_shared, stored),
        "populations_that_do_not_fit": unfit,
    }


def format_fit(report: FitReport, title: str = "") -> str:
    """The report as Markdown: totals, then one row per population, then the host's part."""
    t = report.totals

    def show(value) -> str:
        return "does not fit" if value is None else f"{value:,}"

    lines = [f"# Loihi fit{': ' + title if title else ''} ({report.limits.name})", ""]
    lines += [
        f"- populations on neurocores: {t['populations']} ({t['graded_populations']} with graded-spike inputs), "
        f"including the relays and clocks the stock form adds ({t['relay_and_clock_neurons']:,} neurons)",
        f"- neurons: {t['neurons']:,}; synaptic connections: {t['connections']:,}; "
        f"weights stored with shared kernels: {t['stored_weights']:,}",
        f"- memory: neuron state {t['neuron_state_bytes'] / 1024:,.0f} KiB; weights "
        f"{t['weight_bytes_shared'] / 1024:,.0f} KiB with shared kernels, "
        f"{t['weight_bytes_expanded'] / 1024:,.0f} KiB with one weight per connection",
        f"- neurocores: **{show(t['cores'])}** ({show(t['chips'])} chip(s)), each population stored the cheaper "
        f"way; {show(t['cores_shared'])} if all kernels are shared, {show(t['cores_expanded'])} if none is "
        f"({show(t['chips_expanded'])} chip(s))",
        f"- on the host: {len(report.host)} nodes ({', '.join(sorted({h['role'] for h in report.host}))})",
        f"- limits: {report.limits.source}",
        "",
        "| population | process | neurons | connections | stored weights | graded | cores "
        "| cores (shared) | cores (expanded) |",
        "|---|---|---:|---:|---:|---|---:|---:|---:|",
    ]
    for p in report.populations:
        lines.append(
            f"| {p.name} | {p.process} | {p.neurons:,} | {p.connections:,} | {p.stored_weights:,} | "
            f"{'yes' if p.graded else ''} | {show(p.cores)} | {show(p.cores_shared)} | {show(p.cores_expanded)} |"
        )
    lines += ["", "| on the host | role | why |", "|---|---|---|"]
    lines += [f"| {h['node']} | {h['role']} | {h['why']} |" for h in report.host]
    return "\n".join(lines) + "\n"


def load_graph(path: str | Path) -> tuple[nir.NIRGraph, str]:
    """The NIR graph of a checkpoint, a ``.nir`` file or an exported package directory,
    with a one-line description of where it came from."""
    path = Path(path)
    if path.is_dir():
        from export.package_format import read_manifest

        manifest = read_manifest(path)
        return nir.read(path / manifest["files"]["graph"]), f"package {path}"
    if not path.is_file():
        raise ValueError(f"{path} does not exist (give a checkpoint, a .nir file or an exported package directory)")
    if path.suffix == ".nir":
        return nir.read(path), f"NIR file {path}"
    from export.nir_model import build_nir_graph
    from snnergy.checkpoint import load_checkpoint

    checkpoint = load_checkpoint(path)
    return build_nir_graph(checkpoint), f"checkpoint {path} (preset {checkpoint.model_config.preset})"
