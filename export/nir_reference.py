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
        spikes = (v > self.v_threshold).to(x.dtype)  # NIR's semantics (the export shifts thresholds)
        return spikes, spikes * self.v_reset + (1 - spikes) * v


def topological_order(graph: nir.NIRGraph) -> list[str]:
    return order_by_edges(
        list(graph.nodes), graph.edges, "the graph has a cycle; the reference executor runs feed-forward graphs only"
    )


def order_by_edges(names: list[str], edges, cycle_message: str = "the edges form a cycle") -> list[str]:  # noqa: ANN001
    """``names``, every one after the sources of its incoming ``(source, target)`` edges."""
    incoming = defaultdict(int)
    targets = defaultdict(list)
    for source, target in edges:
        incoming[target] += 1
        targets[source].append(target)
    ready = deque(name for name in names if incoming[name] == 0)
    order = []
    while ready:
        name = ready.popleft()
        order.append(name)
        for target in targets[name]:
            incoming[target] -= 1
            if incoming[target] == 0:
                ready.append(target)
    if len(order) != len(names):
        raise ValueError(cycle_message)
    return order


def _frames(fn, x: torch.Tensor) -> torch.Tensor:
    """Apply a per-frame op to ``[T, B, ...]``."""
    y = fn(x.flatten(0, 1))
    return y.unflatten(0, x.shape[:2])


def synaptic(node: nir.NIRNode, frames: torch.Tensor) -> torch.Tensor:
    """A synaptic NIR node applied to a batch of frames ``[B, ...]``, in the frames' dtype.

    The one implementation of these nodes' semantics: the reference executor runs it frame
    by frame, the Lava runtime's cores run it on their lanes every step (in float64 on the
    integer weights of fixed point, where every sum is exact)."""

    def param(array) -> torch.Tensor:
        return torch.from_numpy(np.asarray(array)).to(frames.dtype)

    if isinstance(node, nir.Conv2d):
        stride, padding, dilation = (
            tuple(int(v) for v in np.broadcast_to(getattr(node, key), 2)) for key in ("stride", "padding", "dilation")
        )
        bias = param(node.bias) if node.bias is not None and np.any(node.bias) else None
        return F.conv2d(frames, param(node.weight), bias, stride, padding, dilation, int(node.groups))
    if isinstance(node, (nir.SumPool2d, nir.AvgPool2d)):
        kernel, stride = tuple(int(k) for k in node.kernel_size), tuple(int(s) for s in node.stride)
        padding = tuple(int(p) for p in np.broadcast_to(node.padding, 2))
        pooled = F.avg_pool2d(frames, kernel, stride, padding, count_include_pad=True)  # zeros padded, as NIR
        return pooled * (kernel[0] * kernel[1]) if isinstance(node, nir.SumPool2d) else pooled
    if isinstance(node, nir.Flatten):
        return frames.flatten(1 + int(node.start_dim))
    if isinstance(node, nir.Affine):
        return frames @ param(node.weight).T + param(node.bias)
    raise ValueError(f"no reference semantics for NIR node type {type(node).__name__}")


def token_mean_divisor(node: nir.NIRNode, grid: tuple[int, int]) -> int | None:
    """The window area of an ``AvgPool2d`` that sums the whole ``grid`` at every position
    (kernel ``2H-1 x 2W-1``, padding ``H-1, W-1``, stride 1: each output is the grid's sum
    over that area, i.e. the token mean times ``N / area``) and that SNNergy marked as CMQKA's
    ``mean_N`` (``metadata["snnergy_role"]``); None for any other node. The Lava runtime runs
    it as one ``TokenMean`` process; every other consumer runs the standard AvgPool2d."""
    if not isinstance(node, nir.AvgPool2d) or node.metadata.get("snnergy_role") != "token_mean":
        return None  # (on a 1x1 grid any 1x1 pool would match the shape test below)
    height, width = (int(v) for v in grid)
    kernel, stride, padding = (
        tuple(int(v) for v in np.broadcast_to(a, 2)) for a in (node.kernel_size, node.stride, node.padding)
    )
    if kernel != (2 * height - 1, 2 * width - 1) or stride != (1, 1) or padding != (height - 1, width - 1):
        return None
    return kernel[0] * kernel[1]


def _synaptic(node: nir.NIRNode, x: torch.Tensor) -> torch.Tensor:
    return _frames(lambda frames: synaptic(node, frames), x)


def ssa_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int, scale: float = 1.0) -> torch.Tensor:
    """``scale * (Q K^T) V`` per head over the token grid, on ``[..., C, H, W]`` (any leading
    axes): the ``ssa_attention`` extension, shared by the reference executor and the Lava
    runtime. The model's ``CrossModalSSA`` computes the same on its token layout; it stays
    its own because the model package may not import export, and the parity tests hold the
    two together."""
    channels = q.shape[-3]

    def split(x: torch.Tensor) -> torch.Tensor:  # [..., C, H, W] -> [..., heads, N, C/heads]
        return x.flatten(-2).unflatten(-2, (heads, channels // heads)).transpose(-1, -2)

    attended = (split(q) @ split(k).transpose(-1, -2)) @ split(v)
    if scale != 1.0:
        attended = attended * scale
    return attended.transpose(-1, -2).flatten(-3, -2).unflatten(-1, q.shape[-2:])


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


def extension_op(node: nir.NIRNode) -> str | None:
    """The operation an extension subgraph names (``snnergy_op``); None for any other node."""
    return node.metadata.get("snnergy_op") if isinstance(node, nir.NIRGraph) else None


def _extension(node: nir.NIRGraph, name: str, sources: dict[str, torch.Tensor]) -> torch.Tensor:
    op = node.metadata["snnergy_op"]
    names = node.metadata.get("operands", list(sources))
    operands = [sources[n.decode() if isinstance(n, bytes) else str(n)] for n in names]  # HDF5 gives bytes
    if op == "time_mean":
        (x,) = operands
        return x.mean(dim=0, keepdim=True).expand_as(x)
    if op == "product":
        return operands[0] * float(node.metadata.get("scale", 1.0)) * operands[1]
    if op == "ssa_attention":
        return ssa_attention(*operands, int(node.metadata["heads"]), float(node.metadata["scale"]))
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
    return values["output"][-1].flatten(1)  # the graph's logits are [classes, 1, 1] per sample


def node_shapes(graph: nir.NIRGraph) -> dict[str, tuple[int, ...]]:
    """Per-sample output shape of every node, from one zero frame through the reference executor."""
    inputs = {
        name: torch.zeros((1, 1, *(int(d) for d in node.input_type["input"])))
        for name, node in graph.nodes.items()
        if isinstance(node, nir.Input)
    }
    values = run_graph(graph, inputs)
    return {name: tuple(value.shape[2:]) for name, value in values.items()}
