"""Building NIR graphs from SNNergy modules (work in progress: SPDS blocks so far).

Conventions, shared by every NIR node this module writes:

* time: SpikingJelly's discrete LIF ``h = v + (x - (v - v_reset)) / tau`` is the Euler
  step (``dt``) of NIR's continuous LIF ``tau_c dv/dt = (v_leak - v) + r I`` with
  ``tau_c = tau * dt``, ``r = 1``, ``v_leak = v_reset``; ``dt`` is stored in the graph's
  metadata. Exact: norse runs these nodes spike-for-spike like SpikingJelly (tested).
* conv + BN: BN (eval statistics) folded into the conv's weight and bias, exactly
  ``w * g / sqrt(var + eps)``, ``b = beta - mean * g / sqrt(var + eps)``.
* max-pool of spikes = logical OR = ``SumPool2d`` into a memoryless threshold unit. NIR's
  ``Threshold`` is that unit, but norse cannot run it, so we write the equivalent LIF with
  ``tau_c = dt`` (its membrane equals its input every step) and threshold 0.5.
* several edges into one node are summed (NIR semantics): the SPDS branch sum is two
  edges into the output LIF.

Status: not yet wired to ``snnergy-export --target nir``; written so far: SPDS blocks and
spiking MLPs. Verified: BN folding, stock ``nir.write``/``nir.read`` round trip, norse
reproducing fan-in-free chains (conv -> LIF -> spike-OR, the MLP) spike for spike, and
nirtorch's interpreter reproducing whole SPDS blocks (with the branch-sum fan-in) spike
for spike. Found: norse 1.1's graph executor does not sum several incoming edges (a node
with fan-in receives one branch only), so blocks with fan-in are validated in nirtorch,
which does sum them; nirtorch accepts one graph input only, so two-role subgraphs (CMQKA's
query and key streams) are validated with one stream in both roles. Written and verified
too: a CMQKA pathway up to its AND. Next: the fusion product and mean over time
(extension subgraphs), SSA, residual streams with alpha, the head, the CLI target.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import nir
import numpy as np
import torch
from spikingjelly.activation_based import layer, neuron

from export.nir_reference import NIRLIF
from export.package_format import DT
from snnergy.layers.block import SpikingMLP
from snnergy.layers.projection import ConvBN2d, TokenProjection
from snnergy.layers.spds import SPDS


@dataclass
class Subgraph:
    """Nodes and edges of a part of the network, with its entry and exit node names."""

    nodes: dict[str, nir.NIRNode] = field(default_factory=dict)
    edges: list[tuple[str, str]] = field(default_factory=list)
    entries: dict[str, list[str]] = field(default_factory=dict)  # input role -> nodes reading it
    exit: str = ""
    output_shape: tuple[int, ...] = ()


def fold_conv_bn(block: ConvBN2d | TokenProjection) -> tuple[np.ndarray, np.ndarray]:
    """Weight and bias of the conv with its eval-mode BN folded in.

    A token projection (1x1 Conv1d over tokens) becomes a 1x1 Conv2d over the token grid.
    """
    conv, bn = block.conv, block.bn
    scale = bn.weight.detach() / torch.sqrt(bn.running_var + bn.eps)
    kernel = conv.weight.detach()
    if kernel.dim() == 3:
        kernel = kernel.unsqueeze(-1)
    weight = kernel * scale[:, None, None, None]
    bias = bn.bias.detach() - bn.running_mean * scale
    if conv.bias is not None:
        bias = bias + conv.bias.detach() * scale
    return weight.double().numpy().astype(np.float32), bias.double().numpy().astype(np.float32)


def conv_node(
    block: ConvBN2d | TokenProjection, input_shape: tuple[int, int, int], tap: int = 0
) -> tuple[nir.Conv2d, tuple[int, int, int]]:
    """A NIR Conv2d (BN folded) for a ``[C, H, W]`` input; returns it with its output shape.

    For a projection with several causal taps, ``tap`` selects the weights of the input
    ``tap`` steps back (``TokenProjection.tap_weight``); the caller delays its input."""
    weight, bias = fold_conv_bn(block)
    taps = getattr(block, "taps", 1)
    if taps > 1:
        channels = weight.shape[1] // taps
        weight = np.ascontiguousarray(weight[:, tap * channels : (tap + 1) * channels])
    conv = block.conv
    kernel, stride, padding, dilation = (
        _pair(v[0] if len(v) == 1 else v) for v in (conv.kernel_size, conv.stride, conv.padding, conv.dilation)
    )
    node = nir.Conv2d(
        input_shape=input_shape[1:],
        weight=weight,
        stride=stride,
        padding=padding,
        dilation=dilation,
        groups=conv.groups,
        bias=bias,
    )
    height, width = (
        (size + 2 * p - d * (k - 1) - 1) // st + 1
        for size, p, d, k, st in zip(input_shape[1:], padding, dilation, kernel, stride)
    )
    return node, (weight.shape[0], height, width)


def lif_node(lif: neuron.LIFNode, shape: tuple[int, ...], dt: float = DT) -> nir.LIF:
    """NIR LIF reproducing a SpikingJelly hard-reset, decay-input LIF under Euler steps of ``dt``."""
    if not lif.decay_input or lif.v_reset is None:
        raise ValueError("only decay_input hard-reset LIFs map exactly to NIR's LIF")
    full = lambda value: np.full(shape, value, dtype=np.float32)  # noqa: E731
    return nir.LIF(
        tau=full(lif.tau * dt),
        r=full(1.0),
        v_leak=full(lif.v_reset),
        v_threshold=full(lif.v_threshold),
        v_reset=full(lif.v_reset),
    )


def spike_or_nodes(
    pool: layer.MaxPool2d, shape: tuple[int, int, int], dt: float = DT
) -> tuple[nir.SumPool2d, nir.LIF, tuple[int, int, int]]:
    """Max-pool of binary spikes as SumPool2d + memoryless threshold unit (an OR)."""
    kernel, stride = _pair(pool.kernel_size), _pair(pool.stride or pool.kernel_size)
    out_shape = (shape[0], shape[1] // stride[0], shape[2] // stride[1])
    full = lambda value: np.full(out_shape, value, dtype=np.float32)  # noqa: E731
    gate = nir.LIF(tau=full(dt), r=full(1.0), v_leak=full(0.0), v_threshold=full(0.5), v_reset=full(0.0))
    gate.metadata["snnergy_op"] = "spike_or"
    return (
        nir.SumPool2d(kernel_size=np.array(kernel), stride=np.array(stride), padding=np.array((0, 0))),
        gate,
        out_shape,
    )


def _pair(value) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else tuple(value)


def spds_subgraph(spds: SPDS, input_shape: tuple[int, int, int], prefix: str) -> Subgraph:
    """The SPDS block: deep branch and strided shortcut summed into the output LIF."""
    sub = Subgraph()
    previous, shape = None, input_shape
    for index, module in enumerate(spds.deep):
        name = f"{prefix}.deep.{index}"
        if isinstance(module, ConvBN2d):
            node, shape = conv_node(module, shape)
            sub.nodes[name] = node
        elif isinstance(module, neuron.LIFNode):
            sub.nodes[name] = lif_node(module, shape)
        elif isinstance(module, layer.MaxPool2d):
            pool, gate, shape = spike_or_nodes(module, shape)
            sub.nodes[f"{name}.sum"], sub.nodes[name] = pool, gate
            sub.edges.append((f"{name}.sum", name))
            if previous is not None:
                sub.edges.append((previous, f"{name}.sum"))
            previous = name
            continue
        else:
            raise ValueError(f"SPDS module '{name}' ({type(module).__name__}) has no NIR mapping")
        if previous is None:
            sub.entries.setdefault("in", []).append(name)
        else:
            sub.edges.append((previous, name))
        previous = name
    shortcut, _ = conv_node(spds.shortcut, input_shape)
    sub.nodes[f"{prefix}.shortcut"] = shortcut
    sub.entries.setdefault("in", []).append(f"{prefix}.shortcut")
    sub.nodes[f"{prefix}.out_lif"] = lif_node(spds.out_lif, shape)
    sub.edges += [(previous, f"{prefix}.out_lif"), (f"{prefix}.shortcut", f"{prefix}.out_lif")]
    sub.exit, sub.output_shape = f"{prefix}.out_lif", shape
    return sub


def mlp_subgraph(mlp: SpikingMLP, grid_shape: tuple[int, int, int], prefix: str) -> Subgraph:
    """The spiking MLP on a ``[C, H, W]`` token grid: two BN-folded 1x1 convs and their LIFs."""
    fc1, hidden = conv_node(mlp.fc1, grid_shape)
    fc2, out = conv_node(mlp.fc2, hidden)
    names = [f"{prefix}.fc1", f"{prefix}.lif1", f"{prefix}.fc2", f"{prefix}.lif2"]
    nodes = dict(zip(names, (fc1, lif_node(mlp.lif1, hidden), fc2, lif_node(mlp.lif2, out))))
    return Subgraph(nodes, list(zip(names, names[1:])), {"in": [names[0]]}, names[-1], out)


def memoryless_threshold(shape: tuple[int, ...], threshold: float, op: str, dt: float = DT) -> nir.LIF:
    """A threshold unit (output = input >= threshold, no memory) as a LIF with ``tau_c = dt``."""
    full = lambda value: np.full(shape, value, dtype=np.float32)  # noqa: E731
    node = nir.LIF(tau=full(dt), r=full(1.0), v_leak=full(0.0), v_threshold=full(threshold), v_reset=full(0.0))
    node.metadata["snnergy_op"] = op
    return node


def head_sum_node(channels: int, heads: int, grid: tuple[int, int]) -> nir.Conv2d:
    """Per-token sum of each head's channels: a fixed 0/1 1x1 conv, ``C -> H``."""
    weight = np.zeros((heads, channels, 1, 1), dtype=np.float32)
    for channel in range(channels):
        weight[channel // (channels // heads), channel] = 1.0
    return nir.Conv2d(
        input_shape=grid, weight=weight, stride=1, padding=0, dilation=1, groups=1, bias=np.zeros(heads, np.float32)
    )


def head_broadcast_node(channels: int, heads: int, grid: tuple[int, int]) -> nir.Conv2d:
    """A head's mask copied to each of its channels: the transposed 0/1 map, ``H -> C``."""
    summed = head_sum_node(channels, heads, grid)
    weight = summed.weight.transpose(1, 0, 2, 3).copy()
    return nir.Conv2d(
        input_shape=grid, weight=weight, stride=1, padding=0, dilation=1, groups=1, bias=np.zeros(channels, np.float32)
    )


def cmqka_pathway_subgraph(attn, pathway: str, grid_shape: tuple[int, int, int], prefix: str) -> Subgraph:
    """One CMQKA pathway up to its AND: ``F = SN_attn(sum_head Q) AND K``, all NIR primitives.

    Roles: ``query`` (the stream of the querying modality) and ``key`` (the other one).
    The mask neuron is the attention LIF (its own threshold); the broadcast of a head's
    mask to its channels is a fixed 1x1 conv; the AND of two binary inputs is a
    memoryless unit with threshold 1.5 fed by both (their sum is 2 only when both fire).
    """
    qk = getattr(attn, pathway)
    mask_lif = getattr(attn, f"{pathway}_attn_lif")
    channels, heads, grid = grid_shape[0], attn.num_heads, grid_shape[1:]
    q_conv, shape = conv_node(qk.q_proj, grid_shape)
    k_conv, _ = conv_node(qk.k_proj, grid_shape)
    p = f"{prefix}.{pathway}"
    nodes = {
        f"{p}.q_proj": q_conv,
        f"{p}.q_lif": lif_node(qk.q_lif, shape),
        f"{p}.k_proj": k_conv,
        f"{p}.k_lif": lif_node(qk.k_lif, shape),
        f"{p}.head_sum": head_sum_node(channels, heads, grid),
        f"{p}.attn_lif": lif_node(mask_lif, (heads, *grid)),
        f"{p}.mask_broadcast": head_broadcast_node(channels, heads, grid),
        f"{p}.and": memoryless_threshold(shape, 1.5, "spike_and"),
    }
    edges = [
        (f"{p}.q_proj", f"{p}.q_lif"),
        (f"{p}.q_lif", f"{p}.head_sum"),
        (f"{p}.head_sum", f"{p}.attn_lif"),
        (f"{p}.attn_lif", f"{p}.mask_broadcast"),
        (f"{p}.mask_broadcast", f"{p}.and"),
        (f"{p}.k_proj", f"{p}.k_lif"),
        (f"{p}.k_lif", f"{p}.and"),
    ]
    return Subgraph(nodes, edges, {"query": [f"{p}.q_proj"], "key": [f"{p}.k_proj"]}, f"{p}.and", shape)


def to_nirtorch(graph: nir.NIRGraph) -> torch.nn.Module:
    """Load a graph with nirtorch's interpreter; LIF nodes run as :class:`NIRLIF`."""
    import nirtorch

    dt = float(graph.metadata.get("dt", DT))
    return nirtorch.nir_to_torch(graph, node_map={nir.LIF: lambda node: NIRLIF(node, dt)})


def run_steps(module: torch.nn.Module, frames: torch.Tensor) -> torch.Tensor:
    """Run a stateful NIR-derived module (norse or nirtorch) over ``[T, ...]`` frames."""
    state, outputs = None, []
    for frame in frames:
        out, state = module(frame, state)
        outputs.append(out)
    return torch.stack(outputs)


def standalone_graph(sub: Subgraph, input_shape: tuple[int, ...], dt: float = DT) -> nir.NIRGraph:
    """``sub`` between one Input and one Output node: a graph stock NIR consumers can run."""
    nodes = {
        "input": nir.Input(input_type=np.array(input_shape)),
        **sub.nodes,
        "output": nir.Output(output_type=np.array(sub.output_shape)),
    }
    entries = [entry for names in sub.entries.values() for entry in names]  # every role reads the one input
    edges = [("input", entry) for entry in entries] + sub.edges + [(sub.exit, "output")]
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata={"dt": dt, "producer": "snnergy"})
