"""Reference executor of an exported SNNergy NIR graph, extensions included.

Runs the graph layer by layer over whole sequences ``[T, B, ...]`` in topological order:
LIF nodes integrate NIR's equation with Euler steps of the graph's ``dt``
(:class:`NIRLIF`), synaptic nodes act frame by frame, incoming edges are
summed (NIR semantics) except into the extension nodes, which apply their documented
operation. It needs only the ``.nir`` file, never the PyTorch model: it is how the export
is checked end to end against PyTorch, and the semantics a Lava runtime must match.
"""

from __future__ import annotations

from collections import defaultdict, deque

import nir
import numpy as np
import torch
from torch.nn import functional as F

from export.package_format import DT


class NIRLIF(torch.nn.Module):
    """NIR's LIF integrated with Euler steps of ``dt``: the reference semantics under which
    nirtorch (which ships no neuron models) runs our graphs. Stateful in nirtorch's sense:
    ``forward(x, state) -> (spikes, state)``."""

    def __init__(self, node: nir.LIF, dt: float = DT):
        super().__init__()
        for key in ("tau", "r", "v_leak", "v_threshold", "v_reset"):
            self.register_buffer(key, torch.from_numpy(np.asarray(getattr(node, key), dtype=np.float32)))
        self.dt = dt

    def forward(self, x: torch.Tensor, state: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        v = self.v_reset.expand_as(x) if state is None else state
        v = v + self.dt / self.tau * ((self.v_leak - v) + self.r * x)
        spikes = (v >= self.v_threshold).to(x.dtype)
        return spikes, spikes * self.v_reset + (1 - spikes) * v


def topological_order(graph: nir.NIRGraph) -> list[str]:
    incoming = defaultdict(int)
    targets = defaultdict(list)
    for source, target in graph.edges:
        incoming[target] += 1
        targets[source].append(target)
    ready = deque(name for name in graph.nodes if incoming[name] == 0)
    order = []
    while ready:
        name = ready.popleft()
        order.append(name)
        for target in targets[name]:
            incoming[target] -= 1
            if incoming[target] == 0:
                ready.append(target)
    if len(order) != len(graph.nodes):
        raise ValueError("the graph has a cycle; the reference executor runs feed-forward graphs only")
    return order


def _frames(fn, x: torch.Tensor) -> torch.Tensor:
    """Apply a per-frame op to ``[T, B, ...]``."""
    y = fn(x.flatten(0, 1))
    return y.unflatten(0, x.shape[:2])


def _tensor(array) -> torch.Tensor:
    return torch.from_numpy(np.asarray(array, dtype=np.float32))


def _synaptic(node: nir.NIRNode, x: torch.Tensor) -> torch.Tensor:
    if isinstance(node, nir.Conv2d):
        weight, bias = _tensor(node.weight), _tensor(node.bias)
        return _frames(
            lambda f: F.conv2d(
                f, weight, bias, tuple(node.stride), tuple(node.padding), tuple(node.dilation), node.groups
            ),
            x,
        )
    if isinstance(node, nir.SumPool2d):
        kernel, stride = tuple(int(k) for k in node.kernel_size), tuple(int(s) for s in node.stride)
        return _frames(lambda f: F.avg_pool2d(f, kernel, stride) * (kernel[0] * kernel[1]), x)
    if isinstance(node, nir.AvgPool2d):
        kernel, stride = tuple(int(k) for k in node.kernel_size), tuple(int(s) for s in node.stride)
        return _frames(lambda f: F.avg_pool2d(f, kernel, stride), x)
    if isinstance(node, nir.Flatten):
        return x.flatten(2 + node.start_dim)
    if isinstance(node, nir.Affine):
        return x @ _tensor(node.weight).T + _tensor(node.bias)
    raise ValueError(f"no reference semantics for NIR node type {type(node).__name__}")


def delay_steps(node: nir.Delay, dt: float) -> int:
    """A NIR ``Delay`` in whole timesteps (SNNergy writes one delay for all its neurons)."""
    steps = np.unique(np.round(np.asarray(node.delay, dtype=np.float64) / dt).astype(int))
    if len(steps) != 1 or steps[0] < 0:
        raise ValueError(f"Delay node with delays {steps.tolist()} steps: one non-negative delay per node expected")
    return int(steps[0])


def _delay(node: nir.Delay, x: torch.Tensor, dt: float) -> torch.Tensor:
    """``y[t] = x[t - d]``, zero for the first ``d`` steps of the sequence (causal, per sample)."""
    steps = delay_steps(node, dt)
    if steps == 0:
        return x
    return torch.cat([torch.zeros_like(x[:steps]), x[:-steps]])


def _lif(node: nir.LIF, x: torch.Tensor, dt: float) -> torch.Tensor:
    neuron, state, spikes = NIRLIF(node, dt), None, []
    for frame in x:
        out, state = neuron(frame, state)
        spikes.append(out)
    return torch.stack(spikes)


def _ssa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int, scale: float) -> torch.Tensor:
    def split(x: torch.Tensor) -> torch.Tensor:  # [T,B,C,H,W] -> [T,B,heads,N,C/heads]
        return x.flatten(3).unflatten(2, (heads, x.shape[2] // heads)).transpose(-1, -2)

    attended = (split(q) @ split(k).transpose(-1, -2)) @ split(v) * scale
    return attended.transpose(-1, -2).flatten(2, 3).unflatten(3, q.shape[3:])


def _extension(node: nir.NIRGraph, name: str, sources: dict[str, torch.Tensor]) -> torch.Tensor:
    op = node.metadata["snnergy_op"]
    names = node.metadata.get("operands", list(sources))
    operands = [sources[n.decode() if isinstance(n, bytes) else str(n)] for n in names]  # HDF5 gives bytes
    if op == "token_mean":
        (x,) = operands
        return x.mean(dim=(-2, -1), keepdim=True).expand_as(x)
    if op == "time_mean":
        (x,) = operands
        return x.mean(dim=0, keepdim=True).expand_as(x)
    if op == "product":
        return operands[0] * float(node.metadata.get("scale", 1.0)) * operands[1]
    if op == "ssa_attention":
        return _ssa(*operands, int(node.metadata["heads"]), float(node.metadata["scale"]))
    raise ValueError(f"node {name!r}: unknown extension operation {op!r}")


def run_graph(graph: nir.NIRGraph, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Every node's output for ``inputs`` (Input node name -> ``[T, B, ...]``)."""
    dt = float(graph.metadata.get("dt", DT))
    sources_of = defaultdict(list)
    for source, target in graph.edges:
        sources_of[target].append(source)
    values: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        for name in topological_order(graph):
            node = graph.nodes[name]
            if isinstance(node, nir.Input):
                values[name] = inputs[name]
                continue
            incoming = {source: values[source] for source in sources_of[name]}
            if isinstance(node, nir.NIRGraph):
                values[name] = _extension(node, name, incoming)
                continue
            x = sum(incoming.values())
            if isinstance(node, nir.Output):
                values[name] = x
            elif isinstance(node, nir.LIF):
                values[name] = _lif(node, x, dt)
            elif isinstance(node, nir.Delay):
                values[name] = _delay(node, x, dt)
            else:
                values[name] = _synaptic(node, x)
    return values


def logits(graph: nir.NIRGraph, audio: torch.Tensor, video: torch.Tensor) -> torch.Tensor:
    """Model-style call: ``[B, T, ...]`` inputs -> ``[B, classes]`` (the readout is a mean over T)."""
    values = run_graph(graph, {"input.audio": audio.transpose(0, 1), "input.video": video.transpose(0, 1)})
    return values["output"][-1]
