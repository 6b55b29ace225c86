"""The whole SNNergy network as one NIR graph (``snnergy-export --target nir``).

Built from the primitives of ``export.nir_graph`` (BN folded, LIF mapped exactly, spike
max-pool as OR, CMQKA masks and ANDs as fixed convs and threshold units, CMQKA's
``mean_N`` as an ``AvgPool2d`` whose window covers the whole token grid). Three things
NIR has no primitive for go into *extension subgraphs*: ``NIRGraph`` nodes whose metadata
names the operation (``snnergy_op``) and, where the operation has several operands, the
incoming edges in order (``operands``), holding ``Input -> Threshold(NaN) -> Output``.
Stock ``nir.read`` loads them; a consumer that does not know ``snnergy_op`` fails on the
inner ``Threshold`` instead of running them as something else (docs/export-nir.md):

* ``time_mean``: mean over the T timesteps of a sample (CMQKA's ``mean_T(F_t)``, and the
  readout of the per-step logits); its output exists only after the last step, which a
  streaming runtime handles as T steps of pipeline latency;
* ``product``: element-wise product of two real tensors (CMQKA's fusion
  ``mean_N(F_s) * mean_T(F_t)``);
* ``ssa_attention``: ``scale * (Q K^T) V`` per head (cross-modal SSA).

The topology comes from ``snnergy.topology.walk`` (the walk the energy describer takes
too), and every node is named by the module path of what it computes, so a population has
the same name in PyTorch, NIR, the Lava package and the energy reports. Residual streams
are sums of spike trains, some scaled by CMQKA's ``alpha`` (the walk's lists of (spike
train, weight)); a synaptic layer reading one becomes one conv node per distinct scale
(weights times that scale; the bias only on the first), each fed by the sources of its
scale, all into the same neuron (NIR sums incoming edges).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import nir
import numpy as np
import torch
from spikingjelly.activation_based import layer, neuron

from export.nir_graph import (
    conv_node,
    head_broadcast_node,
    head_sum_node,
    lif_node,
    memoryless_threshold,
    spike_or_nodes,
    token_mean_node,
)
from export.package_format import DT
from snnergy.checkpoint import Checkpoint
from snnergy.layers.block import MODALITIES
from snnergy.layers.cmqka import CMQKAttention
from snnergy.layers.projection import ConvBN2d, TokenProjection
from snnergy.layers.ssa import CrossModalSSA
from snnergy.model import SNNergy
from snnergy.topology import Site, Stream, walk

Shape = tuple[int, int, int]


def extension(op: str, shape: tuple[int, ...], **metadata) -> nir.NIRGraph:
    """An operation NIR lacks, as a loadable subgraph named by metadata (``snnergy_op``).

    Inside: ``Input -> Threshold(NaN) -> Output``, a tripwire. Our reference executor and
    Lava runtime read the metadata and never run the inside; a stock consumer that does
    not know ``snnergy_op`` runs the inside instead, and fails loudly: nirtorch 2.6 and
    norse 1.1 map no ``Threshold`` and refuse the graph, and one that did would output
    NaN. An empty ``Input -> Output`` inside would be run as the identity, silently wrong.
    """
    typed = np.array(shape)
    tripwire = nir.Threshold(threshold=np.full(shape, np.nan, dtype=np.float32))
    return nir.NIRGraph(
        nodes={"input": nir.Input(input_type=typed), "unsupported": tripwire, "output": nir.Output(output_type=typed)},
        edges=[("input", "unsupported"), ("unsupported", "output")],
        metadata={"snnergy_op": op, **metadata},
    )


@dataclass
class GraphBuilder:
    """The visitor of ``snnergy.topology.walk`` that writes NIR nodes; every node named by the
    module path of what it computes (a population by its neuron layer's path)."""

    model: SNNergy
    dt: float = DT
    nodes: dict[str, nir.NIRNode] = field(default_factory=dict)
    edges: list[tuple[str, str]] = field(default_factory=list)
    shape_of: dict[str, Shape] = field(default_factory=dict)  # spike train -> its [C, H, W]

    def add(self, name: str, node: nir.NIRNode, *sources: str) -> str:
        if name in self.nodes:
            raise ValueError(f"duplicate NIR node name {name!r}")
        self.nodes[name] = node
        self.edges += [(source, name) for source in sources]
        return name

    def conv_from(
        self, block: ConvBN2d | TokenProjection, stream: Stream, shape: Shape, name: str
    ) -> tuple[list[str], Shape]:
        """The layer reading ``stream``: one conv node per distinct scale of its sources and,
        for a projection with ``taps`` > 1, per tap; tap ``d`` reads each source through a
        NIR ``Delay`` of ``d`` steps (zero before the first step, as the model's causal taps)."""
        names, out_shape = [], shape
        for tap in range(getattr(block, "taps", 1)):
            for index, scale in enumerate(dict.fromkeys(s for _, s in stream)):
                node, out_shape = conv_node(block, shape, tap)
                if scale != 1.0:
                    node.weight = (node.weight * np.float32(scale)).astype(np.float32)
                if index > 0 or tap > 0:
                    node.bias = np.zeros_like(node.bias)
                node_name = name + (f"@tap{tap}" if tap else "") + (f"@scale{index}" if index else "")
                sources = [source for source, s in stream if s == scale]
                if tap:
                    delay = np.full(shape, tap * self.dt, dtype=np.float32)
                    sources = [
                        self.add(f"{node_name}.delay{i}", nir.Delay(delay=delay), source)
                        for i, source in enumerate(sources)
                    ]
                self.add(node_name, node, *sources)
                names.append(node_name)
        return names, out_shape

    def lif(self, name: str, module: neuron.LIFNode, shape: tuple[int, ...], sources: list[str]) -> str:
        self.shape_of[name] = shape
        return self.add(name, lif_node(module, shape), *sources)

    # -- the visitor of snnergy.topology.walk --------------------------------------------
    def spds(self, site: Site, stream: Stream | None) -> str:
        path, module, modality = site.path, site.module, site.modality
        if stream is None:  # a stem: it reads the analog input
            config = self.model.config
            channels = config.audio_channels if modality == "audio" else config.video_channels
            shape = (channels, config.image_size, config.image_size)
            stream = [(self.add(f"input.{modality}", nir.Input(input_type=np.array(shape))), 1.0)]
            self.shape_of[f"input.{modality}"] = shape
        input_shape = shape = self.shape_of[stream[0][0]]
        current = stream
        for index, child in enumerate(module.deep):
            name = f"{path}.deep.{index}"
            if isinstance(child, ConvBN2d):
                sources, shape = self.conv_from(child, current, shape, name)
                deep_sources = sources
            elif isinstance(child, neuron.LIFNode):
                current = [(self.lif(name, child, shape, deep_sources), 1.0)]
            elif isinstance(child, layer.MaxPool2d):
                pool, gate, shape = spike_or_nodes(child, shape)
                self.add(f"{name}.sum", pool, *(s for s, _ in current))
                current = [(self.add(name, gate, f"{name}.sum"), 1.0)]
                self.shape_of[name] = shape
            else:
                raise ValueError(f"module '{name}' ({type(child).__name__}) has no NIR mapping")
        shortcut, _ = self.conv_from(module.shortcut, stream, input_shape, f"{path}.shortcut")
        return self.lif(f"{path}.out_lif", module.out_lif, shape, deep_sources + shortcut)

    def attention(self, site: Site, query: Stream, key: Stream) -> str:
        build = {"cmqka": self.cmqka, "ssa": self.ssa}[site.kind]
        return build(site.module, query, key, self.shape_of[query[0][0]], site.path)

    def mlp(self, site: Site, stream: Stream) -> str:
        path, module = site.path, site.module
        shape = self.shape_of[stream[0][0]]
        fc1, hidden = self.conv_from(module.fc1, stream, shape, f"{path}.fc1")
        lif1 = self.lif(f"{path}.lif1", module.lif1, hidden, fc1)
        fc2, out = self.conv_from(module.fc2, [(lif1, 1.0)], hidden, f"{path}.fc2")
        return self.lif(f"{path}.lif2", module.lif2, out, fc2)

    def head(self, streams: dict[str, Stream]) -> None:
        """Mean over tokens per modality (AvgPool2d to ``[C, 1, 1]``), the linear head split by
        modality as 1x1 convolutions (``[K, 1, 1]``), the mean over T, the ``output`` node. No
        ``Flatten``: stock consumers turn NIR's per-sample ``Flatten(start_dim=0)`` into
        ``torch.nn.Flatten(0)``, which flattens the batch too; a 1x1 convolution means the
        same thing batched or not."""
        shape = self.shape_of[streams[MODALITIES[0]][0][0]]
        channels = shape[0]
        weight = self.model.head.weight.detach().numpy().astype(np.float32)
        bias = self.model.head.bias.detach().numpy().astype(np.float32)
        parts = []
        for index, m in enumerate(MODALITIES):
            for group, scale in enumerate(dict.fromkeys(s for _, s in streams[m])):
                pool = self.add(
                    f"head.{m}.pool@scale{group}",
                    nir.AvgPool2d(
                        kernel_size=np.array(shape[1:]), stride=np.array(shape[1:]), padding=np.array((0, 0))
                    ),
                    *(source for source, s in streams[m] if s == scale),
                )
                w = weight[:, index * channels : (index + 1) * channels] * np.float32(scale)
                b = bias if (index == 0 and group == 0) else np.zeros_like(bias)
                parts.append(self.add(f"head.{m}.linear@scale{group}", _conv1x1(w, b), pool))
        logits = weight.shape[0]
        identity = _conv1x1(np.eye(logits, dtype=np.float32), np.zeros(logits, np.float32))
        summed = self.add("head.logits_per_step", identity, *parts)
        readout = self.add("head.readout", extension("time_mean", (logits, 1, 1)), summed)
        self.add("output", nir.Output(output_type=np.array((logits, 1, 1))), readout)

    # -- attention kinds ------------------------------------------------------------------
    def cmqka(self, attn: CMQKAttention, query: Stream, key: Stream, shape: Shape, prefix: str) -> str:
        channels, heads, grid = shape[0], attn.num_heads, shape[1:]
        features = {}
        for pathway in ("spatial", "temporal"):
            if not hasattr(attn, pathway):
                continue
            qk, p = getattr(attn, pathway), f"{prefix}.{pathway}"
            q = self.lif(f"{p}.q_lif", qk.q_lif, shape, self.conv_from(qk.q_proj, query, shape, f"{p}.q_proj")[0])
            k = self.lif(f"{p}.k_lif", qk.k_lif, shape, self.conv_from(qk.k_proj, key, shape, f"{p}.k_proj")[0])
            channel_sum = self.add(f"{p}_channel_sum", head_sum_node(channels, heads, grid), q)
            mask = self.lif(f"{p}_attn_lif", getattr(attn, f"{pathway}_attn_lif"), (heads, *grid), [channel_sum])
            broadcast = self.add(f"{p}_mask_broadcast", head_broadcast_node(channels, heads, grid), mask)
            features[pathway] = self.add(f"{p}_features", memoryless_threshold(shape, 1.5, "spike_and"), broadcast, k)
        token_mean, restore = token_mean_node(grid)  # mean_N as a standard AvgPool2d, scaled by 1 / restore
        if len(features) == 2:
            spatial = self.add(f"{prefix}.fusion.spatial_mean", token_mean, features["spatial"])
            temporal = self.add(f"{prefix}.fusion.temporal_mean", extension("time_mean", shape), features["temporal"])
            scale = attn.fusion.scale * restore
            product = extension("product", shape, operands=[spatial, temporal], scale=scale)
            fused, gain = self.add(f"{prefix}.fusion.product", product, spatial, temporal), 1.0
        elif "spatial" in features:  # a single pathway keeps its pooling (snnergy.layers.cmqka); gains fold into W_o
            fused = self.add(f"{prefix}.fusion.spatial_mean", token_mean, features["spatial"])
            gain = attn.fusion.scale * restore
        else:
            fused = self.add(f"{prefix}.fusion.temporal_mean", extension("time_mean", shape), features["temporal"])
            gain = attn.fusion.scale
        out = self.conv_from(attn.out_proj, [(fused, gain)], shape, f"{prefix}.out_proj")[0]
        return self.lif(f"{prefix}.out_lif", attn.out_lif, shape, out)

    def ssa(self, attn: CrossModalSSA, query: Stream, key: Stream, shape: Shape, prefix: str) -> str:
        q = self.lif(
            f"{prefix}.q_lif", attn.q_lif, shape, self.conv_from(attn.q_proj, query, shape, f"{prefix}.q_proj")[0]
        )
        k = self.lif(
            f"{prefix}.k_lif", attn.k_lif, shape, self.conv_from(attn.k_proj, key, shape, f"{prefix}.k_proj")[0]
        )
        v = self.lif(
            f"{prefix}.v_lif", attn.v_lif, shape, self.conv_from(attn.v_proj, key, shape, f"{prefix}.v_proj")[0]
        )
        product = extension(
            "ssa_attention",
            shape,
            operands=[q, k, v],
            heads=attn.num_heads,
            scale=float(torch.as_tensor(attn.scale).detach()),
        )
        attended = self.add(f"{prefix}.attention", product, q, k, v)
        self.lif(f"{prefix}.attn_lif", attn.attn_lif, shape, [attended])
        out = self.conv_from(attn.out_proj, [(f"{prefix}.attn_lif", 1.0)], shape, f"{prefix}.out_proj")[0]
        return self.lif(f"{prefix}.out_lif", attn.out_lif, shape, out)


def _conv1x1(weight: np.ndarray, bias: np.ndarray) -> nir.Conv2d:
    """A linear map ``[C_in] -> [C_out]`` on ``[C_in, 1, 1]`` as a 1x1 convolution."""
    return nir.Conv2d(
        input_shape=(1, 1),
        weight=weight.astype(np.float32)[:, :, None, None],
        stride=1,
        padding=0,
        dilation=1,
        groups=1,
        bias=bias.astype(np.float32),
    )


def build_nir_graph(checkpoint: Checkpoint, dt: float = DT) -> nir.NIRGraph:
    """The whole network: two Input nodes (audio, video), one Output (logits per sample)."""
    model = checkpoint.build_model()
    config = model.config
    if not config.is_snnergy:
        raise ValueError(
            f"NIR / Lava export covers the SNNergy architecture; preset {config.preset!r} is a baseline "
            f"(fusion={config.fusion}, modalities={config.modalities}, spiking={config.neuron.spiking}, "
            f"attention={config.attention})"
        )
    builder = GraphBuilder(model, dt=dt)
    walk(model, builder)
    return nir.NIRGraph(
        nodes=builder.nodes,
        edges=builder.edges,
        metadata={
            "producer": "snnergy",
            "dt": dt,
            "time_steps": config.time_steps,
            "model_config": json.dumps(config.to_dict()),
            "class_names": list(checkpoint.class_names),
            "extensions": ["time_mean", "product", "ssa_attention"],
        },
    )


def stage_of(node_name: str) -> str:
    """Report stage of a node (named by module path): the downsampling SPDS belongs to the
    stage after it."""
    parts = node_name.split(".")
    if parts[0] == "stages":
        return f"stage{int(parts[1]) + 1}"
    if parts[0] == "down":
        return f"stage{int(parts[1]) + 2}"
    return {"input": "input", "output": "head"}.get(parts[0], parts[0])


def summarise(graph: nir.NIRGraph) -> dict[str, dict[str, int]]:
    """Nodes, neurons (LIF units, threshold units included) and synapses (conv/affine weights) per stage."""
    summary: dict[str, dict[str, int]] = {}
    for name, node in graph.nodes.items():
        row = summary.setdefault(stage_of(name), {"nodes": 0, "neurons": 0, "synapses": 0, "extensions": 0})
        row["nodes"] += 1
        if isinstance(node, nir.LIF):
            row["neurons"] += int(np.asarray(node.tau).size)
        elif isinstance(node, (nir.Conv2d, nir.Affine)):
            row["synapses"] += int(np.count_nonzero(node.weight))
        elif isinstance(node, nir.NIRGraph):
            row["extensions"] += 1
    return summary


def export_nir(checkpoint: Checkpoint, out_path) -> dict:
    """Write the graph with ``nir.write`` and check that stock ``nir.read`` loads it back."""
    from pathlib import Path

    from snnergy.atomic import staged

    out_path = Path(out_path)
    graph = build_nir_graph(checkpoint)
    with staged(out_path) as staging:  # the previous file stays until the new one is complete and checked
        nir.write(staging, graph)
        loaded = nir.read(staging)
        if set(loaded.nodes) != set(graph.nodes) or len(loaded.edges) != len(graph.edges):
            raise RuntimeError(f"{out_path} does not read back as written")
    return {
        "path": str(out_path),
        "bytes": out_path.stat().st_size,
        "nodes": len(graph.nodes),
        "edges": len(graph.edges),
        "stages": summarise(graph),
    }


def run_nir_export(checkpoint: Checkpoint, args) -> int:

    out = args.out
    print(f"exporting {args.checkpoint} to NIR ...", flush=True)
    summary = export_nir(checkpoint, out)
    print(
        f"wrote {summary['path']}: {summary['nodes']} nodes, {summary['edges']} edges, "
        f"{summary['bytes'] / 2**20:.1f} MiB "
        f"(stock nir.read loads it back)\n"
    )
    print(f"{'stage':<8} {'nodes':>6} {'neurons':>9} {'synapses':>10} {'extensions':>10}")
    for stage, row in summary["stages"].items():
        print(f"{stage:<8} {row['nodes']:>6} {row['neurons']:>9,} {row['synapses']:>10,} {row['extensions']:>10}")
    return 0
