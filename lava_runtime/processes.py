"""Custom Lava processes for what lava-nc has no process for, and a recording LIF.

Every process carries a leading *lane* axis (one lane per sample of a batch, see
``lava_runtime.plan``). Neurons are Lava's own ``LIFReset`` (its Vars and dynamics), which
``NeuroCore`` extends with the synapses of its inputs and a spike recorder (a file of
bit-packed spikes the parent reads after the run). The process models live in
``lava_runtime.models``. Lava itself schedules only ``Cluster`` processes, each running one
or more of the others as members (``snnergy simulate --grouping``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from lava.magma.core.process.ports.ports import InPort, OutPort
from lava.magma.core.process.process import AbstractProcess
from lava.magma.core.process.variable import Var
from lava.proc.lif.process import LIFReset


class FrameSource(AbstractProcess):
    """Sends frame ``t - 1`` of a ``.npy`` memory map ``(steps, *shape)`` at step ``t``: the
    host feeding the encoded inputs of every lane, one timestep per step."""

    def __init__(self, *, shape: tuple[int, ...], frames_path: str, name: str | None = None):
        super().__init__(shape=shape, frames_path=frames_path, name=name)
        self.s_out = OutPort(shape=shape)


class Synapses(AbstractProcess):
    """A stateless chain of synaptic operations (pool, flatten, affine) outside any neuron
    core: the readout's, which runs in floating point in both modes, as a classifier reading
    spike counts on the host would.

    ``ops`` is a list of ``(kind, params)`` (``lava_runtime.models.apply_ops``); the chain
    delivers within the step. Several connections into ``s_in`` are summed by Lava.
    """

    def __init__(
        self,
        *,
        in_shape: tuple[int, ...],
        out_shape: tuple[int, ...],
        ops: list[tuple[str, dict[str, Any]]],
        name: str | None = None,
    ):
        super().__init__(in_shape=in_shape, out_shape=out_shape, ops=ops, name=name)
        self.s_in = InPort(shape=in_shape)
        self.a_out = OutPort(shape=out_shape)


class TokenMean(AbstractProcess):
    """``mean_N`` as the graph writes it: each channel's sum over the token grid divided by
    ``divisor`` (the whole-grid AvgPool2d's window area), broadcast back to every token."""

    def __init__(self, *, shape: tuple[int, ...], divisor: int, name: str | None = None):
        super().__init__(shape=shape, divisor=divisor, name=name)
        self.s_in = InPort(shape=shape)
        self.a_out = OutPort(shape=shape)


class TimeMean(AbstractProcess):
    """``mean_T``: the mean of a window of ``time_steps`` frames, emitted during the next window.

    ``input_latency`` places the window: frame ``j`` arrives at step ``k T + j + 1 + input_latency``.
    """

    def __init__(self, *, shape: tuple[int, ...], time_steps: int, input_latency: int, name: str | None = None):
        super().__init__(shape=shape, time_steps=time_steps, input_latency=input_latency, name=name)
        self.s_in = InPort(shape=shape)
        self.a_out = OutPort(shape=shape)


class Readout(TimeMean):
    """The logits: the time mean of the per-step head output (floating point in both modes),
    also written step by step to ``record_path`` (a ``.npy`` memory map)."""

    def __init__(self, *, record_path: str, **kwargs: Any):
        super().__init__(**kwargs)
        self.proc_params["record_path"] = record_path


class Product(AbstractProcess):
    """``scale * a * b`` element-wise on two real-valued operands (CMQKA's fusion, Eq. 12)."""

    def __init__(self, *, shape: tuple[int, ...], scale: float = 1.0, name: str | None = None):
        super().__init__(shape=shape, scale=scale, name=name)
        self.a_in = InPort(shape=shape)
        self.b_in = InPort(shape=shape)
        self.a_out = OutPort(shape=shape)


class SSAAttention(AbstractProcess):
    """``scale * (Q K^T) V`` per head on binary Q, K, V (cross-modal SSA)."""

    def __init__(self, *, shape: tuple[int, ...], heads: int, scale: float, name: str | None = None):
        super().__init__(shape=shape, heads=heads, scale=scale, name=name)
        self.q_in = InPort(shape=shape)
        self.k_in = InPort(shape=shape)
        self.v_in = InPort(shape=shape)
        self.a_out = OutPort(shape=shape)


class Delay(AbstractProcess):
    """Delays its input by ``steps`` (lines up paths of different latency, like Loihi's axon delays)."""

    def __init__(self, *, shape: tuple[int, ...], steps: int, name: str | None = None):
        super().__init__(shape=shape, steps=steps, name=name)
        self.s_in = InPort(shape=shape)
        self.a_out = OutPort(shape=shape)


MAX_INPUTS = 8


class NeuroCore(LIFReset):
    """A population with its dendritic synapses: Lava's ``LIFReset`` plus input ports
    ``in0``, ``in1``, ... (shapes ``in_shapes``). ``inputs`` lists dendritic groups, each
    ``{"delays": [steps per port], "ops": [...]}``: a group sums its ports (the next
    ``len(delays)`` ones, each delayed) and applies its synapse chain. Spikes are also
    appended to ``record_path``, bit-packed, one record per active step (below).

    ``active_steps`` (first, last) are the steps its sample windows cover. Before the first
    sample reaches it (pipeline fill) and after the last has left (drain), nothing it
    computes is read by anyone: every consumer's windows line up with its own through the
    plan's delays, and every window starts from a reset. There it idles, as a Loihi core
    without input does: it keeps receiving (and delaying) but sends no spikes.
    """

    def __init__(
        self,
        *,
        in_shapes: list[tuple[int, ...]],
        inputs: list[dict[str, Any]],
        record_path: str,
        active_steps: tuple[int, int],
        **kwargs: Any,
    ):
        if not 0 < len(in_shapes) <= MAX_INPUTS or len(in_shapes) != sum(len(group["delays"]) for group in inputs):
            raise ValueError(f"a neuron core takes 1 to {MAX_INPUTS} inputs, got {len(in_shapes)}")
        bias_mant, bias_exp = np.asarray(kwargs.pop("bias_mant", 0)), np.asarray(kwargs.pop("bias_exp", 0))
        super().__init__(**kwargs)
        # the bias is one value per channel: held as [1, C, 1, ...] (or one number), not one per
        # unit and lane as LIFReset's Vars would be (at the s preset those were ~25 MB per population)
        self.bias_mant = Var(shape=bias_mant.shape or (1,), init=bias_mant.reshape(bias_mant.shape or (1,)))
        self.bias_exp = Var(shape=bias_exp.shape or (1,), init=bias_exp.reshape(bias_exp.shape or (1,)))
        self.proc_params["inputs"] = inputs
        self.proc_params["record_path"] = record_path
        self.proc_params["active_steps"] = active_steps
        for index in range(MAX_INPUTS):  # a process model must match every port: unused ones stay unconnected
            setattr(self, f"in{index}", InPort(shape=in_shapes[index] if index < len(in_shapes) else (1,)))


class Cluster(AbstractProcess):
    """Several of the processes above run by one Lava process (one OS process).

    Loihi maps many populations onto one neurocore; here a cluster is the unit the Lava
    runtime schedules and synchronises every step. Its members keep their own models and
    state, exchange values in memory, and run in the network's topological order within
    the step, so every member computes exactly what it computes as a process of its own.
    Values crossing clusters travel through Lava ports: ``in{i}`` carries the output of the
    process ``inputs[i]`` (another cluster's member), ``out{j}`` that of member ``outputs[j]``.

    ``members`` lists ``{"name", "model", "proc_params", "vars", "ports"}`` per member, in
    run order: the model class, its parameters and Var values, and for each of its input
    ports the process it reads.
    """

    def __init__(
        self,
        *,
        members: list[dict[str, Any]],
        inputs: list[str],
        in_shapes: list[tuple[int, ...]],
        outputs: list[str],
        out_shapes: list[tuple[int, ...]],
        name: str | None = None,
    ):
        super().__init__(members=members, inputs=inputs, outputs=outputs, name=name)
        for index, shape in enumerate(in_shapes):  # exactly the ports it uses: each one costs compile time
            setattr(self, f"in{index}", InPort(shape=shape))
        for index, shape in enumerate(out_shapes):
            setattr(self, f"out{index}", OutPort(shape=shape))


class SpikeProbe(AbstractProcess):
    """The host reading spikes: port ``in{i}`` receives population ``i``'s spikes, and the
    steps ``windows[i] = (first, stop)`` of them are appended, bit-packed, to ``paths[i]``."""

    def __init__(
        self,
        *,
        shapes: list[tuple[int, ...]],
        paths: list[str],
        windows: list[tuple[int, int]],
        name: str | None = None,
    ):
        super().__init__(paths=paths, windows=windows, name=name)
        for index, shape in enumerate(shapes):
            setattr(self, f"in{index}", InPort(shape=shape))
