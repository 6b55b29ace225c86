"""Run a ``--target loihi`` package as stock Lava processes (``export.stock_plan``).

Stock processes are lava-nc's own: ``RingBuffer`` feeds the frames, ``Sparse`` /
``DelaySparse`` / ``Dense`` are the synapses (weights over C-order flattened ``[C, H, W]``
neurons, reached through flattening and reshaping virtual ports), ``LIFReset`` / ``LIF`` the
neurons, ``ProdNeuron`` CMQKA's product, each one Lava process as Lava's Loihi back end
compiles them. The host's processes (``lava_runtime.processes``: time means, SSA attention, the readout's
synapses and delays) carry a leading axis of one lane, reached through reshaping ports; one
``SpikeProbe`` reads every population's spikes.

Fixed point (``mode="fixed"``) runs Lava's bit-accurate models of the same processes on the
package's integer parameters (``export.lava_package.quantise``): 8-bit weights (even where
signs mix), 12-bit decays, threshold and bias mantissas; real values travel as graded
spikes with ``FRAC_BITS`` fractional bits, which the synapses reading them drop again by
their weight exponent (a floor shift, where ``--target lava`` rounds), and ``ProdNeuron``
shifts its product right by the same bits.

Like ``lava_runtime.network``, the run happens in a child interpreter under a time limit
(``lava_runtime.guard``); it returns timings, and the spikes and logits travel through files.
"""

from __future__ import annotations

import dataclasses
import gc
import math
import tempfile
import time
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

import nir
import numpy as np

from export.package_format import (
    ACTIVATION_SHIFT,
    DECAY_ONE,
    FRAC_BITS,
    constant_weight,
    fixed_bias,
    population_key,
    synapse_key,
    to_fixed,
)
from export.stock_plan import StockPlan, StockProcess, build_stock_plan, synapse_matrix
from lava_runtime.guard import run_with_timeout
from lava_runtime.network import (
    MODES,
    Package,
    SimulationResult,
    checked_inputs,
    drive,
    read_spike_record,
)

GRADED_BITS = 24  # graded spikes: 24-bit payloads, as Loihi 2 carries them
RELAY_WEIGHT = 64  # fixed point: a relay's input weight (its threshold is half of it)
MAX_NEURONS = 2_000_000  # tiny: 176,640 neurons in 4.4 GiB; s has 9.7M neurons and 3.9G connections


class _StockBuilder:
    """Lava process objects of a stock plan, connected (inside the Lava child)."""

    def __init__(self, package: Package, plan: StockPlan, mode: str, steps: int, windows: int, workdir: Path):
        self.package, self.plan, self.mode = package, plan, mode
        self.steps, self.windows, self.workdir = steps, windows, workdir
        self.fixed = mode == "fixed"
        self.procs: dict[str, Any] = {}
        self.models: dict[Any, type] = {}  # process instance -> model, for processes Lava has no float model of

    def build(self) -> Any:
        for process in self.plan.processes.values():
            self.procs[process.name] = self._make(process)
        for process in self.plan.processes.values():
            for source, port in process.inputs:
                self._connect(source, process, port)
        return self._probe()

    # ----------------------------------------------------------------- processes
    def _make(self, p: StockProcess) -> Any:
        from lava.proc.dense.process import Dense
        from lava.proc.io.source import RingBuffer
        from lava.proc.lif.process import LIF, LIFReset
        from lava.proc.prodneuron.process import ProdNeuron
        from lava.proc.sparse.process import DelaySparse, Sparse
        from scipy.sparse import csr_matrix

        from lava_runtime import models as M
        from lava_runtime import processes as P

        T = self.plan.time_steps
        lane = (1, *p.shape)
        if p.kind == "source":
            return RingBuffer(data=np.load(self.workdir / f"{p.name}.npy"))
        if p.kind == "sparse":
            (rows, cols, values, out_size, in_size), exponent = self._synapse_weights(p)
            weights = csr_matrix((values, (rows, cols)), shape=(out_size, in_size))
            common = dict(weights=weights, num_message_bits=GRADED_BITS if p.params["graded"] else 0, name=p.name)
            if self.fixed:
                common["weight_exp"] = exponent
            if p.params["delay"] == 0:
                return Sparse(**common)
            delays = weights.copy().astype(int)  # per synapse, as sparse as the weights (an int here
            delays.data[:] = int(p.params["delay"])  # becomes a dense matrix in lava-nc 0.10)
            return DelaySparse(delays=delays, **common)
        if p.kind == "lif":
            reset = dict(reset_interval=T, reset_offset=p.params["reset_offset"], name=p.name)
            if not self.fixed:
                return LIFReset(
                    shape=p.shape, du=1.0, dv=p.params["dv"], vth=p.params["vth"], bias_mant=p.params["bias"], **reset
                )
            fixed = self.package.fixed
            mantissa, exponent = fixed_bias(fixed, p.name, p.params["synapses"], p.shape[0])
            per_neuron = np.broadcast_to(mantissa.reshape(-1, *([1] * (len(p.shape) - 1))), p.shape)
            return LIFReset(
                shape=p.shape,
                du=int(fixed[population_key(p.name, "du")]),
                dv=int(fixed[population_key(p.name, "dv")]),
                vth=int(fixed[population_key(p.name, "vth_mant")]),
                bias_mant=np.ascontiguousarray(per_neuron),
                bias_exp=np.full(p.shape, exponent, dtype=np.int32),
                **reset,
            )
        if p.kind == "relay":
            if self.fixed:  # memoryless: du, dv clear u and v; one relay weight lifts v over vth
                return LIF(shape=p.shape, du=DECAY_ONE - 1, dv=DECAY_ONE - 1, vth=RELAY_WEIGHT // 2, name=p.name)
            return LIF(shape=p.shape, du=1.0, dv=1.0, vth=0.5, name=p.name)
        if p.kind == "clock":  # v counts the steps since the reset (bias 1 per step), fires at the T-th
            if self.fixed:
                clock = dict(du=0, dv=0, bias_mant=1, bias_exp=ACTIVATION_SHIFT, vth=T - 1)
            else:
                clock = dict(du=0.0, dv=0.0, bias_mant=1.0, vth=T - 0.5)
            return LIFReset(shape=(1,), reset_interval=T, reset_offset=p.params["reset_offset"], name=p.name, **clock)
        if p.kind == "clock_synapse":
            weight = -2 * RELAY_WEIGHT if self.fixed else p.params["weight"]
            return Dense(weights=np.full((math.prod(p.shape), 1), weight), name=p.name)
        if p.kind == "prod":
            if self.fixed:  # Lava's own fixed-point model: (a_in1 * a_in2) >> exp, reals with FRAC_BITS
                return ProdNeuron(shape=p.shape, vth=0, exp=FRAC_BITS)
            proc = ProdNeuron(shape=p.shape, vth=0, exp=0)
            self.models[proc] = M.PyProdNeuronFloat
            return proc
        if p.kind == "time_mean":
            proc = P.TimeMean(shape=lane, time_steps=T, input_latency=p.params["input_latency"], name=p.name)
        elif p.kind == "readout":
            proc = P.Readout(
                shape=lane,
                time_steps=T,
                input_latency=p.params["input_latency"],
                record_path=str(self.workdir / "readout.npy"),
                name=p.name,
            )
        elif p.kind == "ssa_attention":
            proc = P.SSAAttention(shape=lane, heads=p.params["heads"], scale=p.params["scale"], name=p.name)
        elif p.kind == "host_synapses":
            node = self.package.graph.nodes[p.params["node"]]
            in_shape = (1, *self.plan.processes[p.inputs[0][0]].shape)
            proc = P.Synapses(in_shape=in_shape, out_shape=lane, ops=[("synapse", {"node": node})], name=p.name)
        elif p.kind == "host_delay":
            proc = P.Delay(shape=lane, steps=p.params["steps"], name=p.name)
        else:
            raise ValueError(f"{p.name}: no Lava process for kind {p.kind!r}")
        self.models[proc] = M.MODELS[MODES[self.mode]][type(proc)]
        return proc

    def _synapse_weights(self, p: StockProcess) -> tuple[tuple, int]:
        """The synapse's sparse matrix and weight exponent. Float: the NIR weights times the
        plan's scale. Fixed: the package's integer weights (8-bit, even where signs mix); real
        values arrive with FRAC_BITS fractional bits, which the exponent drops again; the
        token mean's constant weight is a mantissa and a positive exponent."""
        name = p.params["node"]
        node = None if name is None else self.package.graph.nodes[name]
        in_shape = p.params["in_shape"]
        if not self.fixed:
            return synapse_matrix(node, in_shape, p.params["scale"]), 0
        target = p.params["target"]
        kind = self.plan.processes[target].kind
        if kind == "relay":
            return synapse_matrix(None, in_shape, RELAY_WEIGHT), 0
        if kind == "prod":  # the token mean, scale folded in: every weight scale / area, as a real
            rows, cols, values, out_size, in_size = synapse_matrix(node, in_shape, p.params["scale"])
            mantissa, exponent = constant_weight(values[0])
            return (rows, cols, np.full(len(values), mantissa), out_size, in_size), exponent
        fixed = self.package.fixed
        if isinstance(node, nir.Conv2d):
            integer = np.asarray(fixed[synapse_key(target, name, "weight_mant")], dtype=np.float64)
            node = dataclasses.replace(node, weight=integer, bias=np.zeros(integer.shape[0]))
            scale = 1.0
        else:  # a spike OR-pool or a direct input: the population's weight for an input of 1
            scale = float(fixed[population_key(target, "direct_weight")])
        rows, cols, values, out_size, in_size = synapse_matrix(node, in_shape, scale)
        exponent = -FRAC_BITS if p.params["graded"] else 0
        return (rows, cols, np.round(values).astype(np.int64), out_size, in_size), exponent

    # ----------------------------------------------------------------- connections
    def _out_port(self, name: str) -> tuple[Any, str]:
        """The output port of process ``name`` and its layout: ``nir`` (the population's
        ``[C, H, W]``), ``flat`` (a synapse's flattened neurons) or ``lane`` (a host process's
        ``[1, C, H, W]``)."""
        p, proc = self.plan.processes[name], self.procs[name]
        if p.kind in ("sparse", "clock_synapse"):
            return proc.a_out, "flat"
        if p.kind in ("source", "lif", "relay", "clock", "prod"):
            return proc.s_out, "nir"
        return proc.a_out, "lane"

    def _connect(self, source: str, target: StockProcess, port_name: str) -> None:
        port, layout = self._out_port(source)
        proc = self.procs[target.name]
        if target.kind in ("time_mean", "readout", "ssa_attention", "host_synapses", "host_delay"):
            wanted = "lane"
        elif target.kind in ("sparse", "clock_synapse"):
            wanted = "flat"
        else:
            wanted = "nir"
        in_port = getattr(proc, port_name)
        shape = tuple(self.plan.processes[source].shape)
        if layout != wanted:
            if layout in ("flat", "lane"):
                port = port.reshape(shape)
            if wanted == "flat":
                port = port.flatten()
            elif wanted == "lane":
                port = port.reshape((1, *shape))
        port.connect(in_port)

    def _probe(self) -> Any:
        from lava_runtime import models as M
        from lava_runtime import processes as P

        populations = self.plan.populations + self.plan.support
        windows = []
        for name in populations:
            first = self.plan.processes[name].latency
            windows.append((first, first + self.windows * self.plan.time_steps))
        probe = P.SpikeProbe(
            shapes=[self.plan.processes[n].shape for n in populations],
            paths=[str(self.workdir / f"spikes.{n}.bits") for n in populations],
            windows=windows,
            name="spike_probe",
        )
        for index, name in enumerate(populations):
            self.procs[name].s_out.connect(getattr(probe, f"in{index}"))
        self.models[probe] = M.spike_probe_model(len(populations))
        return probe


def _run_stock_in_child(
    package: Package, mode: str, steps: int, windows: int, workdir: Path, progress: bool
) -> dict[str, Any]:
    from lava.magma.core.run_configs import Loihi2SimCfg
    from scipy.sparse import SparseEfficiencyWarning

    warnings.simplefilter("ignore", SparseEfficiencyWarning)  # DelaySparse rebuilds its matrices every step
    started = time.perf_counter()
    plan = build_stock_plan(package.graph, package.time_steps, package.manifest["placement"])
    builder = _StockBuilder(package, plan, mode, steps, windows, workdir)
    anchor = builder.build()
    config = Loihi2SimCfg(select_tag=MODES[mode], exception_proc_model_map=builder.models)
    gc.collect()
    gc.freeze()  # Lava forks a worker per process: keep their garbage collectors off the parent's objects
    return drive(anchor, config, steps, plan.time_steps, f"lava (stock processes, {mode})", progress, started)


def simulate_stock(
    package: Package,
    audio: np.ndarray,
    video: np.ndarray,
    mode: str = "float",
    timeout: float | None = None,
    progress: bool = False,
    workdir: str | Path | None = None,
) -> SimulationResult:
    """Stream ``[samples, T, C, H, W]`` inputs, one sample per window of ``T`` steps, through
    the stock network; every spike of every population and the logits come back."""
    inputs = checked_inputs(package, audio, video, mode)
    time_steps, samples = package.time_steps, len(audio)
    plan = build_stock_plan(package.graph, time_steps, package.manifest["placement"])
    if plan.processes[plan.output].kind != "readout":
        raise ValueError(f"{package.path}: the graph's output is not a time-mean readout")
    neurons = sum(math.prod(plan.processes[name].shape) for name in plan.populations)
    if neurons > MAX_NEURONS:
        raise ValueError(
            f"{package.path}: {neurons:,} neurons; the stock simulation expands every convolution into a sparse "
            f"matrix and runs one OS process per Lava process, which this machine cannot hold beyond "
            f"{MAX_NEURONS:,} neurons. Simulate it as --target lava (batched, grouped), or size it with loihi-fit"
        )
    steps = samples * time_steps + plan.latency
    with tempfile.TemporaryDirectory(dir=workdir, prefix="snnergy-loihi-") as tmp:
        work = Path(tmp)
        for modality, data in inputs.items():
            frames = np.zeros((*data.shape[2:], steps), dtype=np.float64 if mode == "float" else np.int32)
            sequence = np.moveaxis(data.reshape(samples * time_steps, *data.shape[2:]), 0, -1)  # time last
            frames[..., : samples * time_steps] = sequence if mode == "float" else to_fixed(sequence)
            np.save(work / f"{plan.inputs[modality]}.npy", frames)
        np.lib.format.open_memmap(
            work / "readout.npy", mode="w+", dtype=np.float64, shape=(steps, 1, *plan.processes[plan.output].shape)
        )
        limit = timeout if timeout is not None else 300 + 0.02 * steps * len(plan.processes)
        timings = run_with_timeout(_run_stock_in_child, package, mode, steps, samples, work, progress, timeout=limit)
        readout = np.load(work / "readout.npy")
        logits = np.stack([readout[k * time_steps + plan.latency] for k in range(samples)]).reshape(samples, -1)
        spikes = {}
        for name in plan.populations + plan.support:
            shape = plan.processes[name].shape
            rows = read_spike_record(work / f"spikes.{name}.bits", tuple(shape))
            spikes[name] = rows.reshape(samples, time_steps, *shape)
    support = {name: spikes.pop(name) for name in plan.support}
    kinds = Counter(process.kind for process in plan.processes.values())
    return SimulationResult(
        logits=logits,
        spikes=spikes,
        mode=mode,
        lanes=1,
        steps=steps,
        latency=plan.latency,
        processes=len(plan.processes),
        process_counts=dict(kinds),
        grouping="stock",
        lava_processes=len(plan.processes) + 1,
        support_spikes=support,
        **timings,
    )
