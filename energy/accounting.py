"""Spike counts -> synaptic operations (SOPs) and MACs, per layer and per stage.

Pure bookkeeping with no framework import, so PyTorch hooks and the Lava simulation feed
the same structures:

* a ``NetworkDescription`` lists the neuron populations (every group of spiking units)
  and the synaptic layers, each layer naming the populations whose spikes arrive at it
  and the fan-out of one arriving spike;
* ``SpikeCounts`` holds the spikes each population emitted per timestep, summed over the
  samples that were run;
* ``account`` combines the two: ``SOPs = sum over sources (spikes x fan-out)`` for layers
  fed by spikes, ``MACs = dense ops`` for layers fed by real values, under named
  ``EnergyConventions`` (whether a layer whose input is the same at every timestep is
  charged once or once per timestep).

A layer reading a residual stream (a weighted sum of spike trains) lists every
constituent spike train as a source: each spike of each constituent is one event that
reaches every target synapse, so its SOPs are the sum of the constituents' spikes times
the fan-out (docs/energy.md, "streams").
"""

from __future__ import annotations

from dataclasses import dataclass, field

STAGES = ("stem", "stage1", "stage2", "stage3", "head")
ONCE, PER_TIMESTEP = "once", "per-timestep"
CHARGES = (ONCE, PER_TIMESTEP)


@dataclass(frozen=True)
class EnergyConventions:
    """How often a layer whose input does not change over T is charged; stated in every report.

    With direct (repeat) encoding an input modality shows the same frame at every timestep.
    ``ann_static_input``: the ANN counterpart is then a function of that frame only, its
    activations are identical at every step, and a real ANN runs it once (``once``, the
    ANN reference of the Spikformer and QKFormer energy sections: one dense pass, FLOPs x
    E_MAC); only a causal tap over time makes the first steps differ, and those distinct
    steps are charged. ``snn_encoding_static_input``: the SNN's encoding layers (the
    real-valued convolutions reading the analog frame) compute the same currents at every
    step, so they can run once and feed the neurons a constant current (``once``, the
    ``E_MAC x FL_conv1`` term of Spikformer / Spike-driven Transformer / QKFormer, not
    multiplied by T). ``per-timestep`` charges both T times, as estimates that treat every
    step alike do. A modality whose input does change over T (e.g. chunked audio) is
    charged per timestep under either convention.
    """

    ann_static_input: str = ONCE
    snn_encoding_static_input: str = ONCE

    def __post_init__(self) -> None:
        for name in ("ann_static_input", "snn_encoding_static_input"):
            if getattr(self, name) not in CHARGES:
                raise ValueError(f"{name} must be one of {CHARGES}, got {getattr(self, name)!r}")

    @classmethod
    def named(cls, charge: str) -> EnergyConventions:
        """Both choices set to ``once`` or ``per-timestep`` (the ``--static-input`` flag)."""
        return cls(charge, charge)

    def describe(self) -> dict[str, str]:
        """The report's ``conventions`` field: each choice and what it means."""
        return {
            "ann_static_input": self.ann_static_input,
            "snn_encoding_static_input": self.snn_encoding_static_input,
            "ann_static_input_means": (
                "ANN counterpart charged one dense pass per inference for layers whose inputs are constant over T "
                "(Spikformer / QKFormer: FLOPs x E_MAC)"
                if self.ann_static_input == ONCE
                else "ANN counterpart charged its dense ops at every timestep"
            ),
            "snn_encoding_static_input_means": (
                "SNN encoding layers on a frame repeated over T charged once (Spikformer / Spike-driven Transformer "
                "/ QKFormer: E_MAC x FL_conv1)"
                if self.snn_encoding_static_input == ONCE
                else "SNN encoding layers charged at every timestep"
            ),
        }


@dataclass(frozen=True)
class Population:
    """A group of spiking units (LIF layer, max-pool OR unit, AND unit) of one stage.

    ``neurons`` counts units per sample and timestep. ``role`` tags what the population
    is in the architecture (``q``, ``k``, ``v``, ``attn``, ``mlp1``, ``mlp2``,
    ``attn_out``, ``spds``, ``spds_hidden``, ``pool``, ``and``) so tables can group it;
    ``computed_from`` names the populations an AND unit combines (informative: the
    counts still come from whoever ran the network).
    """

    name: str
    stage: str
    neurons: int
    role: str
    modality: str | None = None
    block: int | None = None
    pathway: str | None = None
    computed_from: tuple[str, ...] = ()


@dataclass(frozen=True)
class LayerInput:
    """One input of a synaptic layer: its spike sources and the fan-out of one spike.

    ``positions`` is the size of the input tensor per sample and timestep. A plain input
    has one source of that many neurons; a residual stream has several sources of the
    same size (its constituent spike trains).
    """

    sources: tuple[str, ...]
    fan_out: float
    positions: int
    delay: int = 0  # steps before a spike arrives (a causal tap); spikes arriving after the window are never delivered


@dataclass(frozen=True)
class SynapticLayer:
    """A layer of synapses (or an analytic operation counted like one).

    ``dense_ops`` is what the layer computes per sample and timestep on dense inputs (the
    ANN-equivalent MACs). A ``real_valued`` layer reads non-spike values (``reads`` says
    which) and costs ``dense_ops`` MACs; any other layer costs SOPs from its ``inputs``.
    ``upstream`` names the input modalities whose data reach the layer (empty: unknown),
    so the ANN equivalent knows when the layer's input is constant over T; ``stateless``
    marks a real-valued layer with no neuron state between those inputs and itself (an SNN's
    encoding layers, every layer of an ANN): its input is then constant over T too.
    ``time_depth`` is the largest delay, in steps, on a path from the inputs (causal taps
    over time): on a repeated frame the first ``time_depth`` steps still differ (a tap
    reads zero before the first frame), so ``1 + time_depth`` steps are distinct.
    """

    name: str
    stage: str
    kind: str
    dense_ops: int
    inputs: tuple[LayerInput, ...] = ()
    real_valued: bool = False
    modality: str | None = None
    reads: str = ""
    upstream: tuple[str, ...] = ()
    stateless: bool = False
    time_depth: int = 0

    def __post_init__(self) -> None:
        if self.stateless and not (self.real_valued and self.upstream):
            raise ValueError(f"layer {self.name}: a stateless layer is real-valued and names the inputs it reads")
        if self.real_valued == bool(self.inputs):
            raise ValueError(f"layer {self.name}: a real-valued layer has no spike inputs, a spiking layer needs some")


@dataclass(frozen=True)
class NetworkDescription:
    """Populations and synaptic layers of one network, and its stage layout."""

    time_steps: int
    populations: tuple[Population, ...]
    layers: tuple[SynapticLayer, ...]
    stages: tuple[str, ...] = STAGES
    stage_kinds: tuple[str, ...] = ()  # attention kind of stage1..stage3
    meta: dict = field(default_factory=dict)
    spiking: bool = True  # False: an ANN (its real-valued layers follow the ANN convention)

    def __post_init__(self) -> None:
        names = [p.name for p in self.populations]
        duplicated = sorted({n for n in names if names.count(n) > 1})
        if duplicated:
            raise ValueError(f"populations listed twice: {duplicated}")
        layer_names = [layer.name for layer in self.layers]
        duplicated = sorted({n for n in layer_names if layer_names.count(n) > 1})
        if duplicated:
            raise ValueError(f"layers listed twice: {duplicated}")
        sizes = {p.name: p.neurons for p in self.populations}
        for item in list(self.populations) + list(self.layers):
            if item.stage not in self.stages:
                raise ValueError(f"{item.name}: unknown stage {item.stage!r} (stages: {', '.join(self.stages)})")
        for layer in self.layers:
            for layer_input in layer.inputs:
                if len(set(layer_input.sources)) != len(layer_input.sources):
                    raise ValueError(f"layer {layer.name}: a source is listed twice in one input")
                for source in layer_input.sources:
                    if source not in sizes:
                        raise ValueError(f"layer {layer.name}: unknown source population {source!r}")
                    if sizes[source] != layer_input.positions:
                        raise ValueError(
                            f"layer {layer.name}: source {source} has {sizes[source]} neurons, the input has "
                            f"{layer_input.positions} positions"
                        )

    def population(self, name: str) -> Population:
        for population in self.populations:
            if population.name == name:
                return population
        raise KeyError(name)


@dataclass(frozen=True)
class SpikeCounts:
    """Spikes per population per timestep, summed over ``samples`` inferences.

    ``static_inputs`` lists the input modalities whose data were identical at every
    timestep in every sample run (direct encoding), as observed by whoever ran the network.
    """

    samples: int
    time_steps: int
    counts: dict[str, tuple[float, ...]]
    static_inputs: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.samples < 1:
            raise ValueError(f"spike counts need at least one sample, got {self.samples}")
        for name, per_step in self.counts.items():
            if len(per_step) != self.time_steps:
                raise ValueError(f"population {name}: {len(per_step)} timesteps counted, expected {self.time_steps}")


@dataclass(frozen=True)
class LayerAccount:
    """Operations of one layer per inference (averaged over the samples)."""

    name: str
    stage: str
    kind: str
    modality: str | None
    sources: tuple[str, ...]
    fan_outs: tuple[float, ...]
    arriving_spikes: float
    input_rate: float | None  # arriving spikes per input position per timestep
    sops: float
    macs: float
    dense_ops: float  # ANN-equivalent ops per inference (timesteps charged as the conventions say)
    sops_per_timestep: tuple[float, ...]
    reads: str = ""
    charged_steps: int = 0  # timesteps its MACs are charged (real-valued layers)
    ann_charged_steps: int = 0  # timesteps its ANN-equivalent ops are charged


@dataclass(frozen=True)
class PopulationAccount:
    """Spikes of one population per inference (averaged over the samples)."""

    name: str
    stage: str
    role: str
    modality: str | None
    block: int | None
    pathway: str | None
    neurons: int
    spikes: float
    neuron_updates: float  # neurons x timesteps
    firing_rate: float
    spikes_per_timestep: tuple[float, ...]


@dataclass(frozen=True)
class StageOps:
    """Per-inference totals of one stage (or of the whole network)."""

    name: str
    sops: float
    macs: float
    dense_ops: float
    spikes: float
    neuron_updates: float

    @property
    def firing_rate(self) -> float | None:
        """Spikes per neuron per timestep (None for a stage without neurons, the head)."""
        return self.spikes / self.neuron_updates if self.neuron_updates else None


@dataclass(frozen=True)
class NetworkAccount:
    samples: int
    time_steps: int
    layers: tuple[LayerAccount, ...]
    populations: tuple[PopulationAccount, ...]
    stages: tuple[StageOps, ...]
    stage_kinds: tuple[str, ...] = ()
    conventions: EnergyConventions = field(default_factory=EnergyConventions)
    static_inputs: tuple[str, ...] = ()

    @property
    def total(self) -> StageOps:
        return sum_stage_ops("total", self.stages)


def sum_stage_ops(name: str, parts: tuple[StageOps, ...] | list[StageOps]) -> StageOps:
    return StageOps(
        name,
        sum((p.sops for p in parts), 0.0),
        sum((p.macs for p in parts), 0.0),
        sum((p.dense_ops for p in parts), 0.0),
        sum((p.spikes for p in parts), 0.0),
        sum((p.neuron_updates for p in parts), 0.0),
    )


def _static(layer: SynapticLayer, counts: SpikeCounts) -> bool:
    """The layer's input data are the same at every timestep: every upstream modality's input is."""
    return bool(layer.upstream) and set(layer.upstream) <= set(counts.static_inputs)


def _layer_account(
    layer: SynapticLayer, counts: SpikeCounts, conventions: EnergyConventions, spiking: bool
) -> LayerAccount:
    t, samples = counts.time_steps, counts.samples
    distinct = min(t, 1 + layer.time_depth) if _static(layer, counts) else t  # steps whose inputs differ
    ann_steps = distinct if conventions.ann_static_input == ONCE else t
    dense = float(layer.dense_ops * ann_steps)
    if layer.real_valued:
        charge = conventions.snn_encoding_static_input if spiking else conventions.ann_static_input
        steps = distinct if layer.stateless and charge == ONCE else t
        return LayerAccount(
            layer.name,
            layer.stage,
            layer.kind,
            layer.modality,
            (),
            (),
            0.0,
            None,
            0.0,
            float(layer.dense_ops * steps),
            dense,
            tuple(0.0 for _ in range(t)),
            layer.reads,
            steps,
            ann_steps,
        )
    sops_per_step = [0.0] * t
    arriving, positions, sources, fan_outs = 0.0, 0, [], []
    for layer_input in layer.inputs:
        positions += layer_input.positions
        for source in layer_input.sources:
            delivered = counts.counts[source][: t - layer_input.delay]  # those that arrive within the window
            arriving += sum(delivered)
            sources.append(source)
            fan_outs.append(layer_input.fan_out)
            for step, spikes in enumerate(delivered):
                sops_per_step[step + layer_input.delay] += spikes * layer_input.fan_out
    sops_per_step = tuple(s / samples for s in sops_per_step)
    arriving /= samples
    rate = arriving / (positions * t) if positions else 0.0
    return LayerAccount(
        layer.name,
        layer.stage,
        layer.kind,
        layer.modality,
        tuple(sources),
        tuple(fan_outs),
        arriving,
        rate,
        sum(sops_per_step),
        0.0,
        dense,
        sops_per_step,
        layer.reads,
        0,
        ann_steps,
    )


def _population_account(population: Population, counts: SpikeCounts) -> PopulationAccount:
    per_step = tuple(s / counts.samples for s in counts.counts[population.name])
    spikes = sum(per_step)
    updates = float(population.neurons * counts.time_steps)
    return PopulationAccount(
        population.name,
        population.stage,
        population.role,
        population.modality,
        population.block,
        population.pathway,
        population.neurons,
        spikes,
        updates,
        spikes / updates if updates else 0.0,
        per_step,
    )


def account(
    description: NetworkDescription, counts: SpikeCounts, conventions: EnergyConventions | None = None
) -> NetworkAccount:
    """Per-layer, per-population and per-stage operation counts per inference."""
    conventions = conventions or EnergyConventions()
    if counts.time_steps != description.time_steps:
        raise ValueError(f"spike counts cover {counts.time_steps} timesteps, the network runs {description.time_steps}")
    known = {p.name for p in description.populations}
    missing = sorted(known - set(counts.counts))
    unknown = sorted(set(counts.counts) - known)
    if missing or unknown:
        raise ValueError(f"spike counts do not match the network: missing {missing[:5]}, unknown {unknown[:5]}")
    layers = tuple(_layer_account(layer, counts, conventions, description.spiking) for layer in description.layers)
    populations = tuple(_population_account(p, counts) for p in description.populations)
    stages = []
    for stage in description.stages:
        stage_layers = [layer for layer in layers if layer.stage == stage]
        stage_pops = [p for p in populations if p.stage == stage]
        stages.append(
            StageOps(
                stage,
                sum((layer.sops for layer in stage_layers), 0.0),
                sum((layer.macs for layer in stage_layers), 0.0),
                sum((layer.dense_ops for layer in stage_layers), 0.0),
                sum((p.spikes for p in stage_pops), 0.0),
                sum((p.neuron_updates for p in stage_pops), 0.0),
            )
        )
    return NetworkAccount(
        counts.samples,
        counts.time_steps,
        layers,
        populations,
        tuple(stages),
        description.stage_kinds,
        conventions,
        tuple(sorted(counts.static_inputs)),
    )


def description_to_dict(description: NetworkDescription) -> dict:
    """A JSON-ready copy of ``description`` (for export packages)."""
    from dataclasses import asdict

    return asdict(description)


def description_from_dict(data: dict) -> NetworkDescription:
    """Inverse of ``description_to_dict``; validates like the constructor."""
    populations = tuple(Population(**{**p, "computed_from": tuple(p["computed_from"])}) for p in data["populations"])
    layers = tuple(
        SynapticLayer(
            **{
                **layer,
                "upstream": tuple(layer.get("upstream", ())),
                "inputs": tuple(
                    LayerInput(tuple(i["sources"]), i["fan_out"], i["positions"], int(i.get("delay", 0)))
                    for i in layer["inputs"]
                ),
            }
        )
        for layer in data["layers"]
    )
    return NetworkDescription(
        data["time_steps"],
        populations,
        layers,
        tuple(data["stages"]),
        tuple(data["stage_kinds"]),
        dict(data.get("meta", {})),
        bool(data.get("spiking", True)),
    )
