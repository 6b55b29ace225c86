"""Build and run the Lava process graph of a ``--target lava`` package.

Reads only the package's files (``manifest.json``, ``model.nir``, ``fixed_point.npz``).
Inputs and logits travel through ``.npy`` memory maps in a work directory, spikes through
files each neuron core appends to, so the Lava run (in a child interpreter under a time
limit, ``lava_runtime.guard``) returns nothing but timings.
"""

from __future__ import annotations

import dataclasses
import json
import math
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nir
import numpy as np

from export.package_format import FRAC_BITS, fixed_bias, population_key, read_manifest, synapse_key, to_fixed
from lava_runtime.guard import announce_stopping, group_memory, run_with_timeout
from lava_runtime.plan import GROUPINGS, NetworkPlan, ProcessPlan, build_plan, group_processes, lif_parameters

MODES = {"float": "floating_pt", "fixed": "fixed_pt"}
REAL_VALUED = ("input", "token_mean", "time_mean", "product", "ssa_attention")
# Messages buffered per Lava channel (lava's default: 64). Every process sends and receives
# once per step and no step starts before every process has finished the last, so a channel
# never holds more than one message; 2 leaves slack for the sender's acknowledgement thread.
# Each channel's shared memory is this many messages: 64 put 7.3 GB in /dev/shm for the s preset.
CHANNEL_SIZE = 2


@dataclass
class Package:
    path: Path
    manifest: dict[str, Any]
    graph: nir.NIRGraph
    fixed: dict[str, np.ndarray] | None

    @property
    def time_steps(self) -> int:
        return int(self.manifest["time_steps"])


def load_package(path: str | Path) -> Package:
    path = Path(path)
    manifest = read_manifest(path)
    graph = nir.read(path / manifest["files"]["graph"])
    recorded = {"dt": graph.metadata.get("dt"), "time_steps": graph.metadata.get("time_steps")}
    for key, value in recorded.items():
        if value is None or not np.isclose(float(value), float(manifest[key])):
            raise ValueError(
                f"{path}: the manifest's {key} {manifest[key]!r} disagrees with the graph's {value!r}; re-export "
                "the package"
            )
    graph_inputs = {
        name.split(".", 1)[1]: [int(d) for d in node.input_type["input"]]
        for name, node in graph.nodes.items()
        if isinstance(node, nir.Input)
    }
    if graph_inputs != manifest["inputs"]:
        raise ValueError(
            f"{path}: the manifest's input shapes {manifest['inputs']} are not the graph's {graph_inputs}; "
            "re-export the package"
        )
    if json.loads(graph.metadata.get("model_config", "null")) != manifest["model_config"]:
        raise ValueError(f"{path}: the manifest's model_config is not the graph's; re-export the package")
    fixed = None
    if "fixed_point" in manifest["files"]:
        with np.load(path / manifest["files"]["fixed_point"]) as arrays:
            fixed = {key: arrays[key] for key in arrays.files}
    return Package(path, manifest, graph, fixed)


def checked_inputs(package: Package, audio: np.ndarray, video: np.ndarray, mode: str) -> dict[str, np.ndarray]:
    """The two modalities' ``[samples, T, C, H, W]`` inputs, checked against the package and
    the mode before any Lava process starts."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {sorted(MODES)}, got {mode!r}")
    if mode == "fixed" and package.fixed is None:
        raise ValueError(f"{package.path} has no fixed-point parameters: export it with --fixed-point")
    inputs = {"audio": np.asarray(audio), "video": np.asarray(video)}
    samples = len(inputs["audio"])
    for modality, data in inputs.items():
        expected = (package.time_steps, *package.manifest["inputs"][modality])
        if data.ndim != 5 or tuple(data.shape[1:]) != expected or len(data) != samples:
            raise ValueError(
                f"{modality} input must be [{samples}, {', '.join(map(str, expected))}], got {list(data.shape)}"
            )
    if samples < 1:
        raise ValueError("need at least one sample")
    return inputs


@dataclass
class SimulationResult:
    logits: np.ndarray  # [samples, classes]
    spikes: dict[str, np.ndarray]  # LIF node -> [samples, T, *shape] bool
    mode: str
    lanes: int
    steps: int
    latency: int
    processes: int
    process_counts: dict[str, int]
    compile_seconds: float
    run_seconds: float
    grouping: str = "block"
    lava_processes: int = 0  # the Lava processes (clusters) that ran the ``processes`` above
    memory_mib: float = 0.0  # PSS of the whole Lava process group at the end of the run (guard.group_memory)
    os_processes: int = 0
    support_spikes: dict[str, np.ndarray] = field(default_factory=dict)  # stock: relays and clocks, as ``spikes``

    @property
    def predictions(self) -> np.ndarray:
        return self.logits.argmax(axis=1)


def _origin(plan: NetworkPlan, name: str) -> ProcessPlan:
    """The process whose values reach ``name`` through delays."""
    process = plan.processes[name]
    return _origin(plan, process.sources[0]) if process.kind == "delay" else process


class _Builder:
    """The process specs of a plan and the Lava clusters that run them (inside the Lava child)."""

    def __init__(self, package: Package, plan: NetworkPlan, mode: str, lanes: int, steps: int, workdir: Path):
        self.package, self.plan, self.mode, self.lanes, self.steps, self.workdir = (
            package,
            plan,
            mode,
            lanes,
            steps,
            workdir,
        )
        self.graph, self.dt = package.graph, float(package.manifest["dt"])
        self.procs: dict[str, Any] = {}

    # ----------------------------------------------------------------- synapse operations
    def _op(self, name: str, target: str | None) -> list[tuple[str, dict[str, Any]]]:
        """The synaptic node ``name`` as a chain step (``export.nir_reference.synaptic`` runs it);
        in fixed point, a conv into LIF ``target`` with its integer weights and no bias (the
        bias is the neuron's)."""
        node = self.graph.nodes[name]
        if not isinstance(node, (nir.Conv2d, nir.SumPool2d, nir.AvgPool2d, nir.Flatten, nir.Affine)):
            raise ValueError(f"{name}: not a synaptic node")
        if self.mode == "fixed" and target is not None:
            if isinstance(node, nir.Affine):
                raise ValueError(f"{name}: fixed-point Affine into a neuron is not supported")
            if isinstance(node, nir.Conv2d):
                weight = self.package.fixed[synapse_key(target, name, "weight_mant")].astype(np.float64)
                node = dataclasses.replace(node, weight=weight, bias=np.zeros(weight.shape[0]))
        return [("synapse", {"node": node})]

    def _into_neuron(self, target: str, source_kind: str, last_node: str | None) -> list[tuple[str, dict[str, Any]]]:
        """Scaling of the input of LIF ``target``: 1/tau in float; the integer weight, and the
        fractional bits of real-valued inputs dropped, in fixed point."""
        if self.mode == "float":
            return [("scale", {"factor": 1.0 / lif_parameters(self.graph.nodes[target], self.dt)["tau_steps"]})]
        ops = []
        conv = last_node is not None and isinstance(self.graph.nodes[last_node], nir.Conv2d)
        if not conv:
            ops.append(("scale", {"factor": float(self.package.fixed[population_key(target, "direct_weight")])}))
        if source_kind in REAL_VALUED:
            ops.append(("shift", {"bits": FRAC_BITS}))
        return ops

    # ----------------------------------------------------------------- processes
    def build(self) -> None:
        """One process object per plan process: its parameters and Vars, run as a cluster member."""
        from lava_runtime import processes as P

        for plan in self.plan.processes.values():
            shape = (self.lanes, *plan.shape)
            kind = plan.kind
            if kind == "input":
                proc = P.FrameSource(shape=shape, frames_path=str(self.workdir / f"{plan.name}.npy"), name=plan.name)
            elif kind == "synapses":
                proc = self._synapses(plan, shape)
            elif kind == "lif":
                proc = self._lif(plan, shape)
            elif kind == "token_mean":
                proc = P.TokenMean(shape=shape, divisor=int(plan.params["divisor"]), name=plan.name)
            elif kind == "time_mean":
                proc = P.TimeMean(
                    shape=shape,
                    time_steps=self.plan.time_steps,
                    input_latency=plan.params["input_latency"],
                    name=plan.name,
                )
            elif kind == "readout":
                proc = P.Readout(
                    shape=shape,
                    time_steps=self.plan.time_steps,
                    input_latency=plan.params["input_latency"],
                    record_path=str(self.workdir / "readout.npy"),
                    name=plan.name,
                )
            elif kind == "product":
                proc = P.Product(
                    shape=shape, scale=float(self.graph.nodes[plan.name].metadata.get("scale", 1.0)), name=plan.name
                )
            elif kind == "ssa_attention":
                node = self.graph.nodes[plan.name]
                proc = P.SSAAttention(
                    shape=shape, heads=int(node.metadata["heads"]), scale=float(node.metadata["scale"]), name=plan.name
                )
            elif kind == "delay":
                proc = P.Delay(shape=shape, steps=int(plan.params["steps"]), name=plan.name)
            else:
                raise ValueError(f"{plan.name}: no Lava process for kind {kind!r}")
            self.procs[plan.name] = proc

    def _synapses(self, plan: ProcessPlan, shape: tuple[int, ...]) -> Any:
        """The readout's chains (into no neuron): floating point in both modes."""
        from lava_runtime import processes as P

        ops = [op for node in plan.nodes for op in self._op(node, None)]
        in_shape = (self.lanes, *self.plan.processes[plan.sources[0]].shape)
        return P.Synapses(in_shape=in_shape, out_shape=shape, ops=ops, name=plan.name)

    def _lif(self, plan: ProcessPlan, shape: tuple[int, ...]) -> Any:
        from lava_runtime import processes as P

        node = self.graph.nodes[plan.name]
        for key in ("v_reset", "v_leak"):
            if np.any(np.asarray(getattr(node, key)) != 0):
                raise ValueError(f"{plan.name}: Lava's LIF resets to 0; {key} must be 0")
        record = self.workdir / f"spikes.{plan.name}.bits"
        inputs = []
        for group in plan.params["inputs"]:
            ops = [op for name in group["nodes"] for op in self._op(name, plan.name)]
            last = group["nodes"][-1] if group["nodes"] else None
            ops += self._into_neuron(plan.name, _origin(self.plan, group["sources"][0]).kind, last)
            inputs.append({"ops": ops, "delays": group["delays"], "shifts": group["shifts"]})
        in_shapes = [(self.lanes, *self.plan.processes[source].shape) for source in plan.sources]
        window_steps = self.steps - self.plan.latency  # every sample window, back to back
        common = dict(
            shape=shape,
            in_shapes=in_shapes,
            inputs=inputs,
            reset_interval=self.plan.time_steps,
            reset_offset=(1 + plan.latency) % self.plan.time_steps,
            record_path=str(record),
            active_steps=(plan.latency + 1, plan.latency + window_steps),
            name=plan.name,
        )
        if self.mode == "float":
            params = lif_parameters(node, self.dt)
            return P.NeuroCore(du=1.0, dv=params["dv"], vth=params["vth"], **common)
        fixed = self.package.fixed
        mantissa, exponent = self._fixed_bias(plan, shape)
        return P.NeuroCore(
            du=int(fixed[population_key(plan.name, "du")]),
            dv=int(fixed[population_key(plan.name, "dv")]),
            vth=int(fixed[population_key(plan.name, "vth_mant")]),
            bias_mant=mantissa,
            bias_exp=exponent,
            **common,
        )

    def _fixed_bias(self, plan: ProcessPlan, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
        """One value per channel, ``[1, C, 1, ...]`` (it broadcasts over lanes and positions)."""
        synapses = [spec["nodes"][-1] for spec in plan.params["inputs"] if spec["nodes"]]
        mantissa, exponent = fixed_bias(self.package.fixed, plan.name, synapses, shape[1])
        per_channel = (1, shape[1]) + (1,) * (len(shape) - 2)
        return mantissa.reshape(per_channel), np.full(per_channel, exponent, dtype=np.int32)

    def _port_sources(self, plan: ProcessPlan) -> dict[str, list[str]]:
        """Each input port of ``plan``'s process and the processes whose outputs it sums."""
        named = {"product": ("a_in", "b_in"), "ssa_attention": ("q_in", "k_in", "v_in")}
        ports: dict[str, list[str]] = defaultdict(list)
        for index, source in enumerate(plan.sources):
            ports[
                named[plan.kind][index] if plan.kind in named else (f"in{index}" if plan.kind == "lif" else "s_in")
            ].append(source)
        return dict(ports)

    def clusters(self, grouping: str) -> list[Any]:
        """The Lava processes that run the network: one ``Cluster`` per group of the plan."""
        from lava_runtime import processes as P
        from lava_runtime.models import MODELS, cluster_model

        groups = group_processes(self.plan, grouping)
        home = {name: index for index, names in enumerate(groups) for name in names}
        outputs: list[list[str]] = [[] for _ in groups]
        for plan in self.plan.processes.values():
            for source in plan.sources:
                if home[source] != home[plan.name] and source not in outputs[home[source]]:
                    outputs[home[source]].append(source)
        lanes_shape = {name: (self.lanes, *plan.shape) for name, plan in self.plan.processes.items()}
        clusters = []
        for index, names in enumerate(groups):
            members, inputs = [], []
            for name in names:
                plan, proc = self.plan.processes[name], self.procs[name]
                ports = self._port_sources(plan)
                for source in (s for sources in ports.values() for s in sources if home[s] != index):
                    if source not in inputs:  # one port per source, however many members and taps read it
                        inputs.append(source)
                model = MODELS[MODES[self.mode]][type(proc)]
                members.append(
                    {
                        "name": name,
                        "model": model,
                        "proc_params": proc.proc_params,
                        "ports": ports,
                        "vars": {var.name: (var.shape, var.init) for var in proc.vars},
                        "output_port": "s_out" if plan.kind in ("input", "lif") else "a_out",
                    }
                )
            out_types = []
            for name in outputs[index]:
                kind = self.plan.processes[name].kind
                lava_type = getattr(
                    MODELS[MODES[self.mode]][type(self.procs[name])], "s_out" if kind in ("input", "lif") else "a_out"
                )
                out_types.append((lava_type.d_type, lava_type.precision))
            cluster = P.Cluster(
                members=members,
                inputs=inputs,
                in_shapes=[lanes_shape[s] for s in inputs],
                outputs=outputs[index],
                out_shapes=[lanes_shape[s] for s in outputs[index]],
                name=f"cluster:{names[0]}",
            )
            clusters.append((cluster, cluster_model(MODES[self.mode], len(inputs), tuple(out_types))))
        by_output = {
            name: (clusters[index][0], j) for index in range(len(groups)) for j, name in enumerate(outputs[index])
        }
        for cluster, _ in clusters:
            for i, source in enumerate(cluster.proc_params["inputs"]):
                producer, j = by_output[source]
                getattr(producer, f"out{j}").connect(getattr(cluster, f"in{i}"))
        return clusters


def _run_in_child(
    package: Package, plan: NetworkPlan, mode: str, lanes: int, steps: int, workdir: Path, progress: bool, grouping: str
) -> dict[str, Any]:
    """Build, run and stop the network (inside the child interpreter); return timings."""
    from lava.magma.core.run_configs import Loihi2SimCfg

    started = time.perf_counter()
    builder = _Builder(package, plan, mode, lanes, steps, workdir)
    builder.build()
    clusters = builder.clusters(grouping)
    anchor = clusters[-1][0]
    # keyed by process instance (as Lava's compiler looks them up): no search of model directories
    models = dict(clusters)
    config = Loihi2SimCfg(select_tag=MODES[mode], exception_proc_model_map=models)
    return drive(anchor, config, steps, plan.time_steps, f"lava ({mode}, {lanes} lanes)", progress, started)


def drive(anchor: Any, config: Any, steps: int, chunk: int, description: str, progress: bool, started: float) -> dict:
    """Compile and start the network on its first step, run the rest ``chunk`` steps at a time
    (a progress bar if asked), measure, and stop every Lava process, also on failure."""
    from lava.magma.core.run_conditions import RunSteps

    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=steps, desc=description, unit="step", leave=False)
    try:
        anchor.run(
            condition=RunSteps(num_steps=1), run_cfg=config, compile_config={"pypy_channel_size": CHANNEL_SIZE}
        )  # compiles, starts
        compiled = time.perf_counter()
        done = 1
        while done < steps:
            step = min(chunk, steps - done)
            anchor.run(condition=RunSteps(num_steps=step), run_cfg=config)
            done += step
            if bar is not None:
                bar.update(step)
        finished = time.perf_counter()
        memory, os_processes = group_memory()  # every Lava process is still alive here
    finally:
        announce_stopping()  # workers ending from here on is the shutdown, not a failure
        anchor.stop()
        if bar is not None:
            bar.close()
    return {
        "compile_seconds": compiled - started,
        "run_seconds": finished - compiled,
        "memory_mib": memory / 2**20,
        "os_processes": os_processes,
    }


def simulate(
    package: Package,
    audio: np.ndarray,
    video: np.ndarray,
    mode: str = "float",
    lanes: int = 16,
    timeout: float | None = None,
    progress: bool = False,
    workdir: str | Path | None = None,
    grouping: str = "block",
) -> SimulationResult:
    """Run ``[samples, T, C, H, W]`` inputs through the package's Lava network.

    ``lanes`` samples run side by side; samples stream through back to back, one window of
    ``T`` steps each, and the run lasts ``windows * T + latency`` steps. ``grouping`` says
    how many populations one Lava process runs (``lava_runtime.plan.group_processes``).
    """
    if grouping not in GROUPINGS:
        raise ValueError(f"grouping must be one of {list(GROUPINGS)}, got {grouping!r}")
    if lanes < 1:
        raise ValueError("need at least one lane")
    inputs = checked_inputs(package, audio, video, mode)
    time_steps, samples = package.time_steps, len(audio)
    lanes = min(lanes, samples)
    plan = build_plan(package.graph, time_steps)
    windows = math.ceil(samples / lanes)
    steps = windows * time_steps + plan.latency
    with tempfile.TemporaryDirectory(dir=workdir, prefix="snnergy-lava-") as tmp:
        work = Path(tmp)
        for modality, data in inputs.items():
            frames = np.lib.format.open_memmap(
                work / f"{plan.input_nodes[modality]}.npy",
                mode="w+",
                dtype=np.float32 if mode == "float" else np.int32,
                shape=(steps, lanes, *data.shape[2:]),
            )
            padded = np.zeros((windows * lanes, *data.shape[1:]), dtype=np.float64)
            padded[:samples] = data
            block = (
                padded.reshape(windows, lanes, *data.shape[1:])
                .swapaxes(1, 2)
                .reshape(windows * time_steps, lanes, *data.shape[2:])
            )
            frames[: windows * time_steps] = block if mode == "float" else to_fixed(block).astype(np.int32)
            frames.flush()
            del frames
        np.lib.format.open_memmap(
            work / "readout.npy", mode="w+", dtype=np.float64, shape=(steps, lanes, *plan.processes[plan.output].shape)
        )
        limit = timeout if timeout is not None else 120 + 2.0 * steps * len(plan.processes) * max(1, lanes // 8) / 10
        timings = run_with_timeout(
            _run_in_child, package, plan, mode, lanes, steps, work, progress, grouping, timeout=limit
        )
        readout = np.load(work / "readout.npy")
        logits = np.stack([readout[k * time_steps + plan.latency] for k in range(windows)]).reshape(
            windows * lanes, -1
        )[:samples]
        spikes = {}
        for name, process in plan.processes.items():
            if process.kind != "lif":
                continue
            window_rows = read_spike_record(work / f"spikes.{name}.bits", (lanes, *process.shape))
            per_sample = window_rows.reshape(windows, time_steps, lanes, *process.shape).swapaxes(1, 2)
            spikes[name] = np.ascontiguousarray(
                per_sample.reshape(windows * lanes, time_steps, *process.shape)[:samples]
            )
    kinds = Counter(process.kind for process in plan.processes.values())
    return SimulationResult(
        logits=logits,
        spikes=spikes,
        mode=mode,
        lanes=lanes,
        steps=steps,
        latency=plan.latency,
        processes=len(plan.processes),
        process_counts=dict(kinds),
        grouping=grouping,
        lava_processes=len(group_processes(plan, grouping)),
        **timings,
    )


def read_spike_record(path: Path, shape: tuple[int, ...]) -> np.ndarray:
    """A neuron core's record: one bit-packed ``shape`` of spikes per active step, in order."""
    units = math.prod(shape)
    rows = np.fromfile(path, dtype=np.uint8).reshape(-1, (units + 7) // 8)
    return np.unpackbits(rows, axis=1, count=units).astype(bool).reshape(len(rows), *shape)
