"""The stock fixed-point network's arithmetic in PyTorch, bit for bit, over whole sequences.

``lava_runtime.stock`` in ``mode="fixed"`` runs Lava's bit-accurate models, one Lava
process per population, step by step. This module computes the same integers, batched:
it walks the same stock plan (``build_stock_plan``) and applies, per process, what the
Lava model does, without the steps the plan only spends on timing (delay lines, host
delays, clocks). It is the reference a fixed-point Lava run is checked against (every
spike must agree), and, with ``ste=True``, the forward that quantisation-aware
fine-tuning trains through: integer operations pass gradients straight through, spikes
through a surrogate.

The integer operations, read in lava-nc 0.10's bit-accurate models:

* ``Sparse`` / ``DelaySparse``: 8-bit weights (mixed signs clipped to [-256, 255] and the
  lowest bit dropped; one sign clipped to 255), an integer sum, then ``<< weight_exp``
  or an arithmetic (floor) ``>> -weight_exp``; graded inputs carry ``FRAC_BITS``
  fractional bits that ``weight_exp = -FRAC_BITS`` drops;
* ``LIFReset``: state cleared at each window's first frame; ``u = a << 6`` (du 4095 plus
  Loihi's offset clears u), wrapped to 24 bits; ``v = trunc(v * (4096 - dv) / 4096) + u +
  bias_mant << bias_exp``, clipped to 24 bits; a spike where ``v > vth << 6``, then v = 0;
* ``ProdNeuron``: ``(a1 * a2) >> exp``, emitted where not zero;
* the host's fixed-point models (``lava_runtime.models``): the time mean
  ``(sum * 2**FRAC_BITS + T // 2) // T``, SSA's ``round(scale * (Q K^T) V * 2**FRAC_BITS)``,
  the readout's synapses and time mean in float32.
"""

from __future__ import annotations

from dataclasses import dataclass

import nir
import numpy as np
import torch
from torch.nn import functional as F

from export.nir_reference import order_by_edges, ssa_attention, synaptic
from export.package_format import (
    ACTIVATION_SHIFT,
    DECAY_ONE,
    FRAC_BITS,
    constant_weight,
    fixed_bias,
    population_key,
    synapse_key,
)
from export.stock_plan import StockPlan, StockProcess, build_stock_plan
from lava_runtime.stock import RELAY_WEIGHT

ONE = float(1 << FRAC_BITS)
UV_LIMIT = float(2**23)  # u and v are 24-bit signed registers
TIMING_ONLY = ("clock", "clock_synapse")


@dataclass
class EmulationResult:
    logits: torch.Tensor  # [B, classes], float32 as the host's readout computes them
    spikes: dict[str, torch.Tensor]  # LIF population -> [B, T, *shape]


# ----------------------------------------------------------------- integer operations
class _StraightThrough(torch.autograd.Function):
    """``fn(x)`` forward, identity backward (rounding, flooring, clipping to a grid)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, fn) -> torch.Tensor:  # noqa: ANN001
        return fn(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # noqa: ANN205
        return grad, None


class _Spike(torch.autograd.Function):
    """``v > threshold`` forward; a sigmoid surrogate of width ``scale`` backward."""

    @staticmethod
    def forward(ctx, v: torch.Tensor, threshold: torch.Tensor, scale: float) -> torch.Tensor:
        ctx.save_for_backward(v, threshold)
        ctx.scale = scale
        return (v > threshold).to(v.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # noqa: ANN205
        v, threshold = ctx.saved_tensors
        sigmoid = torch.sigmoid(4.0 * (v - threshold) / ctx.scale)
        return grad * sigmoid * (1 - sigmoid) * 4.0 / ctx.scale, None, None


def _exact(x: torch.Tensor, fn, ste: bool) -> torch.Tensor:  # noqa: ANN001
    return _StraightThrough.apply(x, fn) if ste else fn(x)


def lava_weights(weights: torch.Tensor, ste: bool = False) -> torch.Tensor:
    """The 8-bit weights Lava's bit-accurate synapses keep of integer ``weights``."""

    def clip(w: torch.Tensor) -> torch.Tensor:
        w = torch.round(w)
        if w.min() >= 0:
            return w.clamp(0, 255)
        if w.max() <= 0:
            return w.clamp(-255, 0)
        return torch.floor(w.clamp(-256, 255) / 2) * 2  # mixed signs: the lowest bit dropped

    return _exact(weights, clip, ste)


# ----------------------------------------------------------------- the emulation
class FixedPointEmulation:
    """A ``--target loihi`` package's stock network in fixed point, batched in PyTorch."""

    def __init__(self, graph: nir.NIRGraph, time_steps: int, placement: list[dict]):
        self.graph, self.T = graph, time_steps
        self.plan: StockPlan = build_stock_plan(graph, time_steps, placement)
        self.order = _process_order(self.plan)
        self.tap_relays = {
            p.name
            for p in self.plan.processes.values()
            if any(self.plan.processes[s].kind == "clock_synapse" for s, _ in p.inputs)
        }

    def run(
        self,
        audio: torch.Tensor,
        video: torch.Tensor,
        arrays: dict[str, torch.Tensor | np.ndarray],
        ste: bool = False,
    ) -> EmulationResult:
        """``[B, T, C, H, W]`` float frames -> logits and every population's spikes. ``arrays``:
        the package's fixed-point parameters (``export.lava_package.quantise``), as numpy or
        as tensors (fine-tuning passes its weights as tensors carrying gradients)."""
        frames = {"audio": audio, "video": video}
        values: dict[str, torch.Tensor] = {}  # process -> [T, B, *shape], integers (float64)
        for name in self.order:
            process = self.plan.processes[name]
            if process.kind in TIMING_ONLY:
                continue
            values[name] = self._process(process, values, frames, arrays, ste)
        spikes = {name: values[name].transpose(0, 1) for name in self.plan.populations}
        logits = values[self.plan.output][-1].flatten(1)
        return EmulationResult(logits=logits, spikes=spikes)

    # ------------------------------------------------------------- one process
    def _inputs(self, process: StockProcess, values: dict[str, torch.Tensor]) -> list[torch.Tensor]:
        return [values[source] for source, _ in process.inputs if self.plan.processes[source].kind not in TIMING_ONLY]

    def _process(self, p: StockProcess, values, frames, arrays, ste: bool) -> torch.Tensor:  # noqa: ANN001
        if p.kind == "source":
            modality = next(m for m, source in self.plan.inputs.items() if source == p.name)
            x = frames[modality].transpose(0, 1).to(torch.float64)
            return _exact(x * ONE, torch.round, ste)
        inputs = self._inputs(p, values)
        if p.kind == "sparse":
            return self._synapse(p, inputs[0], arrays, ste)
        if p.kind == "relay":
            spikes = inputs[0] / RELAY_WEIGHT  # one relay weight in: a spike out (exactly 0 or 1)
            if p.name in self.tap_relays:  # x[t-1], nothing before a window's first frame
                return torch.cat([torch.zeros_like(spikes[:1]), spikes[:-1]])
            return spikes
        if p.kind == "host_delay":  # timing only
            return inputs[0]
        if p.kind == "lif":
            return self._lif(p, sum(inputs), arrays, ste)
        if p.kind == "prod":
            a1, a2 = inputs
            return _exact(a1 * a2 / ONE, torch.floor, ste)  # (a1 * a2) >> FRAC_BITS; zeros emit nothing
        if p.kind == "time_mean":
            (x,) = inputs
            mean = _exact((x.sum(0, keepdim=True) * ONE + self.T // 2) / self.T, torch.floor, ste)
            return mean.expand_as(x)
        if p.kind == "ssa_attention":
            q, k, v = inputs
            counts = ssa_attention(q, k, v, int(p.params["heads"]))
            return _exact(counts * float(p.params["scale"]) * ONE, torch.round, ste)
        if p.kind == "host_synapses":
            node = self.graph.nodes[p.params["node"]]
            x = sum(inputs).to(torch.float32)
            return synaptic(node, x.flatten(0, 1)).unflatten(0, x.shape[:2])
        if p.kind == "readout":
            (x,) = inputs
            mean = (x.to(torch.float64).sum(0, keepdim=True).to(torch.float32) / np.float32(self.T)).expand_as(x)
            return mean
        raise ValueError(f"{p.name}: no fixed-point emulation of kind {p.kind!r}")

    def _synapse(self, p: StockProcess, x: torch.Tensor, arrays, ste: bool) -> torch.Tensor:  # noqa: ANN001
        """The synapse's integer sum and weight exponent, as ``lava_runtime.stock`` sets them."""
        target = p.params["target"]
        kind = self.plan.processes[target].kind
        name = p.params["node"]
        node = None if name is None else self.graph.nodes[name]
        frames = x.flatten(0, 1)
        if kind == "relay":
            out = frames * RELAY_WEIGHT
        elif kind == "prod":  # the token mean: one constant mantissa, a positive exponent
            mantissa, exponent = constant_weight(_coefficient(node) * p.params["scale"])
            out = _pool_sum(node, frames) * float(mantissa) * 2.0**exponent
        elif isinstance(node, nir.Conv2d):
            weight = torch.as_tensor(arrays[synapse_key(target, name, "weight_mant")], dtype=torch.float64)
            out = _conv(node, frames, lava_weights(weight, ste))
        else:  # a spike OR-pool or a direct input: the population's weight for an input of 1
            direct = float(np.asarray(arrays[population_key(target, "direct_weight")]))
            weight = float(lava_weights(torch.tensor(round(direct * _coefficient(node)), dtype=torch.float64)))
            out = (frames if node is None else _pool_sum(node, frames)) * weight
        if p.params["graded"]:
            out = _exact(out / ONE, torch.floor, ste)  # weight_exp = -FRAC_BITS: an arithmetic shift
        return out.unflatten(0, x.shape[:2])

    def _lif(self, p: StockProcess, current: torch.Tensor, arrays, ste: bool) -> torch.Tensor:  # noqa: ANN001
        def scalar(field: str) -> float:
            return float(np.asarray(arrays[population_key(p.name, field)]))

        channels = p.shape[0]
        mantissa, exponent = fixed_bias(_numpy(arrays), p.name, p.params["synapses"], channels)
        bias = torch.as_tensor(mantissa.astype(np.float64) * 2.0**exponent).reshape(-1, *([1] * (len(p.shape) - 1)))
        keep = DECAY_ONE - scalar("dv")
        threshold = torch.tensor(scalar("vth_mant") * 2.0**ACTIVATION_SHIFT, dtype=torch.float64)
        u = _exact(current * 2.0**ACTIVATION_SHIFT, _wrap, ste)  # du = 4095 (+1): no current is kept
        v = torch.zeros_like(current[0])
        spikes = []
        for frame in u:  # the window starts cleared (LIFReset)
            v = _exact(v * keep / DECAY_ONE, torch.trunc, ste) + frame + bias
            v = _exact(v, lambda t: t.clamp(-UV_LIMIT + 1, UV_LIMIT - 1), ste)
            s = _Spike.apply(v, threshold, float(threshold) or 1.0) if ste else (v > threshold).to(v.dtype)
            v = v * (1 - s)
            spikes.append(s)
        return torch.stack(spikes)


# ----------------------------------------------------------------- helpers
def _process_order(plan: StockPlan) -> list[str]:
    """The plan's processes, every one after its inputs."""
    edges = [(source, name) for name, process in plan.processes.items() for source, _ in process.inputs]
    return order_by_edges(list(plan.processes), edges, "the stock plan has a cycle")


def _wrap(u: torch.Tensor) -> torch.Tensor:
    """Lava's 24-bit wrap of the current register."""
    u = torch.where(u > UV_LIMIT, u - 2 * UV_LIMIT, u)
    return torch.where(u <= -UV_LIMIT, u + 2 * UV_LIMIT, u)


def _numpy(arrays: dict) -> dict[str, np.ndarray]:  # noqa: ANN001
    return {k: (v.detach().numpy() if isinstance(v, torch.Tensor) else v) for k, v in arrays.items() if "/bias_" in k}


def _geometry(node: nir.NIRNode, key: str) -> tuple[int, int]:
    return tuple(int(v) for v in np.broadcast_to(getattr(node, key), 2))


def _conv(node: nir.Conv2d, frames: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    return F.conv2d(
        frames.to(torch.float64),
        weight,
        None,
        _geometry(node, "stride"),
        _geometry(node, "padding"),
        _geometry(node, "dilation"),
        int(node.groups),
    )


def _coefficient(node: nir.NIRNode | None) -> float:
    """The one weight of a fixed-kernel synapse: 1 for the identity and a sum pool, 1 / area
    for an average pool (zeros padded, as NIR counts them)."""
    if node is None or isinstance(node, nir.SumPool2d):
        return 1.0
    if isinstance(node, nir.AvgPool2d):
        return 1.0 / float(np.prod(np.asarray(node.kernel_size)))
    raise ValueError(f"no fixed-point emulation of a {type(node).__name__} synapse")


def _pool_sum(node: nir.NIRNode, frames: torch.Tensor) -> torch.Tensor:
    """A pool's window sums (the synapse's unit weights over its inputs), exact in float64."""
    kernel = tuple(int(k) for k in node.kernel_size)
    channels = frames.shape[1]
    ones = torch.ones((channels, 1, *kernel), dtype=torch.float64)
    padding = tuple(int(p) for p in np.broadcast_to(node.padding, 2))
    stride = tuple(int(s) for s in node.stride)
    return F.conv2d(frames.to(torch.float64), ones, None, stride, padding, 1, channels)
