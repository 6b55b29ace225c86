"""CPU process models (floating and fixed point) of ``lava_runtime.processes``.

Fixed point carries real values (the encoded input, extension outputs) as integers with
``FRAC_BITS`` fractional bits, like Loihi's graded spikes; spikes are 0/1 integers. A
synapse chain reading real values shifts its integer sum right by ``FRAC_BITS``
(rounding to nearest) before it reaches a neuron.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from lava.magma.core.decorator import implements, requires, tag
from lava.magma.core.model.py.model import PyLoihiProcessModel
from lava.magma.core.model.py.ports import PyInPort, PyOutPort
from lava.magma.core.model.py.type import LavaPyType
from lava.magma.core.resources import CPU
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol
from lava.proc.lif.models import PyLifResetModelBitAcc, PyLifResetModelFloat
from lava.proc.prodneuron.process import ProdNeuron

from export.nir_reference import ssa_attention, synaptic
from export.package_format import FRAC_BITS, to_fixed
from lava_runtime.processes import (
    MAX_INPUTS,
    Cluster,
    Delay,
    FrameSource,
    NeuroCore,
    Product,
    Readout,
    SpikeProbe,
    SSAAttention,
    Synapses,
    TimeMean,
    TokenMean,
)

ONE = 1 << FRAC_BITS


def apply_ops(ops: list[tuple[str, dict[str, Any]]], x: np.ndarray, dtype: torch.dtype) -> np.ndarray:
    """Run a synapse chain on ``[lanes, ...]``: NIR synaptic nodes as the reference executor
    runs them, then the neuron's input scaling; integer chains compute exactly in float64."""
    t = torch.from_numpy(np.asarray(x)).to(dtype)
    for kind, p in ops:
        if kind == "synapse":
            t = synaptic(p["node"], t)
        elif kind == "scale":
            t = t * p["factor"]
        elif kind == "shift":  # integer >> bits, rounding to nearest
            t = torch.floor((t + (1 << (p["bits"] - 1))) / (1 << p["bits"]))
        else:
            raise ValueError(f"unknown synapse operation {kind!r}")
    return t.numpy()


def _model(proc: type, select_tag: str):
    """Lava's ``implements``/``requires``/``tag``, also for subclasses of another process's model
    (Lava refuses to re-decorate a class that inherited ``implements_process``)."""

    def decorate(cls: type) -> type:
        cls.implements_process = None
        return implements(proc=proc, protocol=LoihiProtocol)(requires(CPU)(tag(select_tag)(cls)))

    return decorate


class _Base(PyLoihiProcessModel):
    def __init__(self, proc_params: dict[str, Any]) -> None:
        super().__init__(proc_params)
        torch.set_num_threads(1)  # one OS process per Lava process already


class _FloatIO:
    """Ports of a one-input floating-point model: any numbers in, float32 out."""

    s_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)
    a_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.float32)


class _FixedIO:
    """Ports of a one-input fixed-point model: 24-bit integers in and out."""

    s_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)
    a_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)


# -- input ---------------------------------------------------------------------------------
class _FrameSourceBase(_Base):
    _frames = None

    def run_spk(self) -> None:
        if self._frames is None:
            self._frames = np.load(self.proc_params["frames_path"], mmap_mode="r")
        self.s_out.send(np.asarray(self._frames[self.time_step - 1]))


@_model(FrameSource, "floating_pt")
class PyFrameSourceFloat(_FrameSourceBase):
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.float32)


@_model(FrameSource, "fixed_pt")
class PyFrameSourceFixed(_FrameSourceBase):
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)


# -- synapses (the readout's; floating point in both modes) --------------------------------
@_model(Synapses, "floating_pt")
class PySynapses(_FloatIO, _Base):
    pass

    def run_spk(self) -> None:
        self.a_out.send(apply_ops(self.proc_params["ops"], self.s_in.recv(), torch.float32))


# -- extensions --------------------------------------------------------------------------
class _Unary(_Base):
    def run_spk(self) -> None:
        self.a_out.send(self.compute(np.asarray(self.s_in.recv())))


@_model(TokenMean, "floating_pt")
class PyTokenMeanFloat(_FloatIO, _Unary):
    pass

    def compute(self, x: np.ndarray) -> np.ndarray:
        total = x.astype(np.float32).sum(axis=(-2, -1), keepdims=True)
        return np.broadcast_to(total / np.float32(self.proc_params["divisor"]), x.shape)


@_model(TokenMean, "fixed_pt")
class PyTokenMeanFixed(_FixedIO, _Unary):
    pass

    def compute(self, x: np.ndarray) -> np.ndarray:
        divisor = int(self.proc_params["divisor"])
        total = x.astype(np.int64).sum(axis=(-2, -1), keepdims=True)
        return np.broadcast_to((total * ONE + divisor // 2) // divisor, x.shape).astype(np.int32)


class _TimeMeanBase(_Base):
    def __init__(self, proc_params: dict[str, Any]) -> None:
        super().__init__(proc_params)
        self.window = proc_params["time_steps"]
        self.offset = proc_params["input_latency"]
        self.total = None
        self.mean = None

    def run_spk(self) -> None:
        x = np.asarray(self.s_in.recv())
        if self.total is None:
            self.total, self.mean = np.zeros(x.shape, np.float64), np.zeros(x.shape, np.float64)
        frame = (self.time_step - 1 - self.offset) % self.window
        self.total = x.astype(np.float64) if frame == 0 else self.total + x
        self.a_out.send(self.mean)
        self.mean_sent = self.mean
        if frame == self.window - 1:
            self.mean = self.finish(self.total)

    def finish(self, total: np.ndarray) -> np.ndarray:
        return total.astype(np.float32) / np.float32(self.window)


@_model(TimeMean, "floating_pt")
class PyTimeMeanFloat(_FloatIO, _TimeMeanBase):
    pass


@_model(TimeMean, "fixed_pt")
class PyTimeMeanFixed(_FixedIO, _TimeMeanBase):
    pass

    def finish(self, total: np.ndarray) -> np.ndarray:  # binary frames in, FRAC_BITS out
        return (total.astype(np.int64) * ONE + self.window // 2) // self.window


@_model(Readout, "floating_pt")
class PyReadout(PyTimeMeanFloat):
    _record = None

    def run_spk(self) -> None:
        super().run_spk()
        if self._record is None:
            self._record = np.load(self.proc_params["record_path"], mmap_mode="r+")
        self._record[self.time_step - 1] = self.mean_sent


@_model(Product, "floating_pt")
class PyProductFloat(_Base):
    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)
    b_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)
    a_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.float32)

    def run_spk(self) -> None:
        a, b = np.asarray(self.a_in.recv(), np.float32), np.asarray(self.b_in.recv(), np.float32)
        self.a_out.send(a * np.float32(self.proc_params["scale"]) * b)


@_model(Product, "fixed_pt")
class PyProductFixed(_Base):
    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)
    b_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)
    a_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)

    def run_spk(self) -> None:
        a, b = np.asarray(self.a_in.recv(), np.float64), np.asarray(self.b_in.recv(), np.float64)
        product = np.floor(a * b * self.proc_params["scale"] / ONE + 0.5)  # round half up; exact for operands in [0, 1]
        self.a_out.send(np.clip(product, -(2**23), 2**23 - 1).astype(np.int32))


def ssa_values(q: np.ndarray, k: np.ndarray, v: np.ndarray, heads: int) -> np.ndarray:
    """``(Q K^T) V`` per head on ``[lanes, C, H, W]`` in float64 (integer counts for binary inputs)."""
    operands = [torch.from_numpy(np.asarray(x, np.float64)) for x in (q, k, v)]
    return ssa_attention(*operands, heads).numpy()


@_model(SSAAttention, "floating_pt")
class PySSAFloat(_Base):
    q_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)
    k_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)
    v_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)
    a_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.float32)

    def run_spk(self) -> None:
        counts = ssa_values(self.q_in.recv(), self.k_in.recv(), self.v_in.recv(), self.proc_params["heads"])
        self.a_out.send(counts.astype(np.float32) * np.float32(self.proc_params["scale"]))


@_model(SSAAttention, "fixed_pt")
class PySSAFixed(_Base):
    q_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)
    k_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)
    v_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)
    a_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)

    def run_spk(self) -> None:
        counts = ssa_values(self.q_in.recv(), self.k_in.recv(), self.v_in.recv(), self.proc_params["heads"])
        self.a_out.send(to_fixed(counts * self.proc_params["scale"]).astype(np.int32))


class _DelayBase(_Base):
    def __init__(self, proc_params: dict[str, Any]) -> None:
        super().__init__(proc_params)
        self.buffer: list[np.ndarray] = []

    def run_spk(self) -> None:
        x = np.asarray(self.s_in.recv())
        if not self.buffer:
            self.buffer = [np.zeros_like(x) for _ in range(self.proc_params["steps"])]
        self.buffer.append(x)
        self.a_out.send(self.buffer.pop(0))


@_model(Delay, "floating_pt")
class PyDelayFloat(_FloatIO, _DelayBase):
    pass


@_model(Delay, "fixed_pt")
class PyDelayFixed(_FixedIO, _DelayBase):
    pass


# -- neuron cores: Lava's own LIF dynamics, fed by their dendritic synapses ----------------
class _CoreMixin:
    """Sums the currents of every input (delayed, through its synapse chain), then steps
    Lava's ``LIFReset`` dynamics (``subthr_dynamics``, ``spiking_activation``,
    ``reset_voltage``) exactly as its own ``run_spk`` does, and records the spikes."""

    _record = None
    _delays = None
    synapse_dtype = torch.float32

    def _port(self, index: int, delay: int) -> np.ndarray:
        x = np.asarray(getattr(self, f"in{index}").recv())
        if not delay:
            return x
        if self._delays is None:
            self._delays = {}
        line = self._delays.setdefault(index, [np.zeros_like(x) for _ in range(delay)])
        line.append(x)
        return line.pop(0)

    def _receive(self) -> list[np.ndarray]:
        """Every port's message this step, through its delay line (read every step, active or not)."""
        received, port = [], 0
        for group in self.proc_params["inputs"]:
            for delay, shift in zip(group["delays"], group["shifts"]):
                x = self._port(port, delay + shift)
                if shift and (self.time_step - self.reset_offset) % self.reset_interval < shift:
                    x = np.zeros_like(x)  # a causal tap reads nothing from before its sample's first frame
                received.append(x)
                port += 1
        return received

    def _current(self, received: list[np.ndarray]) -> np.ndarray:
        total, port = None, 0
        for group in self.proc_params["inputs"]:
            summed = None
            for x in received[port : port + len(group["delays"])]:
                summed = x if summed is None else summed + x
            port += len(group["delays"])
            current = apply_ops(group["ops"], summed, self.synapse_dtype)
            total = current if total is None else total + current
        return self.as_activation(total)

    def run_spk(self) -> None:
        received = self._receive()
        first, last = self.proc_params["active_steps"]
        if not first <= self.time_step <= last:  # no sample here: idle (see NeuroCore)
            self.s_out.send(np.zeros(self.v.shape, dtype=bool))
            return
        activation = self._current(received)
        if (self.time_step % self.reset_interval) == self.reset_offset:
            self.u *= 0
            self.v *= 0
        self.prepare()
        self.subthr_dynamics(activation_in=activation)
        spikes = self.spiking_activation()
        self.reset_voltage(spike_vector=spikes)
        if self._record is None:  # appended, not memory-mapped: written pages stay out of the process
            self._record = open(self.proc_params["record_path"], "ab", buffering=0)  # noqa: SIM115 - open for the run
        self._record.write(np.packbits(spikes).tobytes())
        self.s_out.send(spikes)


def _input_ports(value_type: type, precision: int | None = None) -> dict[str, LavaPyType]:
    """LavaPyTypes of the ports ``in0`` .. ``in{MAX_INPUTS - 1}`` (a core creates those it uses)."""
    return {f"in{i}": LavaPyType(PyInPort.VEC_DENSE, value_type, precision=precision) for i in range(MAX_INPUTS)}


@_model(NeuroCore, "floating_pt")
class PyNeuroCoreFloat(_CoreMixin, PyLifResetModelFloat):
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.bool_)  # spikes as bytes, not Lava's float64
    # single precision, as the PyTorch model integrates: half the state of Lava's float64 (1.2 GB at s)
    u: np.ndarray = LavaPyType(np.ndarray, np.float32)
    v: np.ndarray = LavaPyType(np.ndarray, np.float32)
    locals().update(_input_ports(float))

    def __init__(self, proc_params: dict[str, Any]) -> None:
        super().__init__(proc_params)
        torch.set_num_threads(1)

    def prepare(self) -> None:
        pass

    def as_activation(self, current: np.ndarray) -> np.ndarray:
        return current


@_model(NeuroCore, "fixed_pt")
class PyNeuroCoreFixed(_CoreMixin, PyLifResetModelBitAcc):
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.bool_)
    locals().update(_input_ports(np.int32, 24))
    synapse_dtype = torch.float64  # integer sums, exact

    def __init__(self, proc_params: dict[str, Any]) -> None:
        super().__init__(proc_params)
        torch.set_num_threads(1)

    def prepare(self) -> None:
        """As Lava's bit-accurate ``run_spk``: scale the bias every step, the threshold once."""
        self.scale_bias()
        if not self.isthrscaled:
            self.scale_threshold()

    def as_activation(self, current: np.ndarray) -> np.ndarray:
        return np.clip(current, -(2**23), 2**23 - 1).astype(np.int32)  # 24-bit dendritic sum


# -- clusters: several processes in one Lava process ---------------------------------------
class _Inbox:
    """A member's input port inside a cluster: the values its sources produced this step,
    summed (as Lava sums the connections into one port)."""

    def __init__(self, cluster: _ClusterBase, sources: list[str]):
        self.cluster, self.sources = cluster, sources

    def recv(self) -> np.ndarray:
        values = [self.cluster.value_of(source) for source in self.sources]
        return values[0] if len(values) == 1 else sum(np.asarray(v, np.float64) for v in values)


class _Outbox:
    """A member's output port inside a cluster: kept for the members after it, and sent on
    at once where another cluster reads it (so that cluster can go on within the step)."""

    def __init__(self, cluster: _ClusterBase, name: str):
        self.cluster, self.name = cluster, name

    def send(self, data: np.ndarray) -> None:
        self.cluster.publish(self.name, data)


def build_member(spec: dict[str, Any], cluster: _ClusterBase) -> PyLoihiProcessModel:
    """A process model as Lava's builder makes it (its Vars set from their initial values),
    with ports that read and write the cluster's mailboxes instead of channels."""
    model_class = spec["model"]
    member = model_class(spec["proc_params"])
    for name, (shape, init) in spec["vars"].items():
        lava_type = getattr(model_class, name)
        if issubclass(lava_type.cls, np.ndarray):
            value = np.ndarray(shape, lava_type.d_type)
            value[:] = init
        else:
            value = init
        setattr(member, name, value)
    for port, sources in spec["ports"].items():
        setattr(member, port, _Inbox(cluster, sources))
    setattr(member, spec["output_port"], _Outbox(cluster, spec["name"]))
    return member


class _ClusterBase(_Base):
    """Runs its members in order every step (see ``lava_runtime.processes.Cluster``)."""

    def __init__(self, proc_params: dict[str, Any]) -> None:
        super().__init__(proc_params)
        self._input_index = {source: index for index, source in enumerate(proc_params["inputs"])}
        self._output_index = {name: index for index, name in enumerate(proc_params["outputs"])}
        self._members: list[PyLoihiProcessModel] | None = None
        self._values: dict[str, np.ndarray] = {}
        self._received: dict[str, np.ndarray] = {}

    def value_of(self, source: str) -> np.ndarray:
        if source in self._input_index:
            if source not in self._received:  # each input port is read once per step
                self._received[source] = getattr(self, f"in{self._input_index[source]}").recv()
            return self._received[source]
        return self._values[source]

    def publish(self, name: str, data: np.ndarray) -> None:
        self._values[name] = data
        if name in self._output_index:
            getattr(self, f"out{self._output_index[name]}").send(data)

    def run_spk(self) -> None:
        if self._members is None:
            self._members = [build_member(spec, self) for spec in self.proc_params["members"]]
        self._received = {}
        for member in self._members:
            member.time_step = self.time_step
            member.run_spk()
        for source in self._input_index:  # a channel must be read every step
            self.value_of(source)


def cluster_model(mode: str, inputs: int, out_types: tuple[Any, ...]) -> type:
    """The cluster's model for ``mode``: ports ``in0`` .. ``in{inputs - 1}`` and one ``out{j}``
    per entry of ``out_types``, typed as member ``j``'s output (a Lava channel carries its
    sender's type: spikes stay one byte each)."""
    key = (mode, inputs, out_types)
    if key not in _CLUSTER_MODELS:
        ports = {f"in{i}": LavaPyType(PyInPort.VEC_DENSE, float) for i in range(inputs)}
        ports.update(
            {
                f"out{j}": LavaPyType(PyOutPort.VEC_DENSE, d_type, precision=precision)
                for j, (d_type, precision) in enumerate(out_types)
            }
        )
        _CLUSTER_MODELS[key] = _model(Cluster, mode)(type(f"PyCluster{len(_CLUSTER_MODELS)}", (_ClusterBase,), ports))
    return _CLUSTER_MODELS[key]


_CLUSTER_MODELS: dict[tuple[str, int, tuple[Any, ...]], type] = {}


MODELS = {
    "floating_pt": {
        FrameSource: PyFrameSourceFloat,
        Synapses: PySynapses,
        TokenMean: PyTokenMeanFloat,
        TimeMean: PyTimeMeanFloat,
        Readout: PyReadout,
        Product: PyProductFloat,
        SSAAttention: PySSAFloat,
        Delay: PyDelayFloat,
        NeuroCore: PyNeuroCoreFloat,
    },
    "fixed_pt": {
        FrameSource: PyFrameSourceFixed,
        Synapses: PySynapses,
        TokenMean: PyTokenMeanFixed,
        TimeMean: PyTimeMeanFixed,
        Readout: PyReadout,
        Product: PyProductFixed,
        SSAAttention: PySSAFixed,
        Delay: PyDelayFixed,
        NeuroCore: PyNeuroCoreFixed,
    },
}


# -- stock processes' floating-point models lava-nc lacks, and the spike probe ---------------
@_model(ProdNeuron, "floating_pt")
class PyProdNeuronFloat(PyLoihiProcessModel):
    """lava-nc 0.10 ships ``ProdNeuron`` in fixed point only: the same neuron in floating
    point, ``v = a_in1 * a_in2`` sent where ``|v| > vth`` (no exponent: reals need none)."""

    a_in1: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)
    a_in2: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)
    v: np.ndarray = LavaPyType(np.ndarray, float)
    vth: np.ndarray = LavaPyType(np.ndarray, float)
    exp: np.ndarray = LavaPyType(np.ndarray, float)

    def run_spk(self) -> None:
        self.v = np.asarray(self.a_in1.recv(), float) * np.asarray(self.a_in2.recv(), float)
        self.s_out.send(self.v * (np.abs(self.v) > self.vth))


class _SpikeProbeBase(_Base):
    _files = None

    def run_spk(self) -> None:
        if self._files is None:
            self._files = [open(path, "ab", buffering=0) for path in self.proc_params["paths"]]  # noqa: SIM115
        step = self.time_step - 1
        for index, (first, stop) in enumerate(self.proc_params["windows"]):
            spikes = getattr(self, f"in{index}").recv()  # every channel is read every step
            if first <= step < stop:
                self._files[index].write(np.packbits(np.asarray(spikes).astype(bool).ravel()).tobytes())


def spike_probe_model(ports: int) -> type:
    """The probe's model with ports ``in0`` .. ``in{ports - 1}``."""
    if ports not in _PROBE_MODELS:
        attributes = {f"in{i}": LavaPyType(PyInPort.VEC_DENSE, float) for i in range(ports)}
        _PROBE_MODELS[ports] = _model(SpikeProbe, "floating_pt")(
            type(f"PySpikeProbe{ports}", (_SpikeProbeBase,), attributes)
        )
    return _PROBE_MODELS[ports]


_PROBE_MODELS: dict[int, type] = {}
