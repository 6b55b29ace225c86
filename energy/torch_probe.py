"""The PyTorch side of the accounting: describe an ``SNNergy`` and count its spikes.

* ``describe_model`` walks the model's structure (``snnergy.topology.walk``, the same walk
  the NIR exporter takes) and lists its neuron populations and synaptic layers with their
  presynaptic sources. Sizes come from a shape trace (one all-zero forward); which spike
  trains a layer reads comes from the structure alone, never from tensor values. The
  residual streams are tracked as lists of constituents: a stage starts with its SPDS
  output, and each block appends its attention output ``P`` and MLP output ``M``.
* ``SpikeProbe`` registers forward hooks that sum, per timestep, the spikes of every
  population during real inference; ``collect_spike_counts`` runs batches through it.

Everything downstream (``energy.accounting``) sees only the description and the counts.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch
from spikingjelly.activation_based import neuron
from torch import Tensor, nn

from energy.accounting import LayerInput, NetworkDescription, Population, SpikeCounts, SynapticLayer
from snnergy.layers.projection import ConvBN2d
from snnergy.model import SNNergy
from snnergy.topology import Site, Stream, walk

_TRACED = (nn.Conv1d, nn.Conv2d, nn.MaxPool2d, neuron.BaseNode, nn.ReLU, nn.Linear)
_UNITS = (neuron.BaseNode, nn.ReLU)  # spiking neurons, or the ANN counterpart's ReLUs


def _size(shape: tuple[int, ...]) -> int:
    return math.prod(shape)


def _trains(stream: Stream) -> list[str]:
    """The spike trains of a stream (their weights fold into the synapses: no effect on counts)."""
    return [name for name, _ in stream]


def trace_shapes(model: SNNergy) -> dict[str, tuple[tuple[int, ...], tuple[int, ...]]]:
    """Module name -> (input shape, output shape) per sample and timestep, from a zero input."""
    shapes: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {}
    handles = []
    for name, module in model.named_modules():
        if isinstance(module, _TRACED):

            def hook(mod: nn.Module, args: tuple, out: Tensor, name: str = name) -> None:
                shapes[name] = (tuple(args[0].shape[2:]), tuple(out.shape[2:]))  # drop [T, B]

            handles.append(module.register_forward_hook(hook))
    device = next(model.parameters()).device
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(
                torch.zeros(model.expected_shape("audio", 1), device=device),  # type: ignore[arg-type]
                torch.zeros(model.expected_shape("video", 1), device=device),  # type: ignore[arg-type]
            )
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    return shapes


class _Builder:
    """Accumulates populations and layers while walking the model."""

    def __init__(self, model: SNNergy, shapes: dict[str, tuple[tuple[int, ...], tuple[int, ...]]]):
        self.modules = dict(model.named_modules())
        self.shapes = shapes
        self.time_steps = model.config.time_steps
        self.populations: list[Population] = []
        self.layers: list[SynapticLayer] = []
        # which input modalities reach each population and its largest delay from them; the layer added
        # last (the population that follows a layer is its output)
        self.upstream_of: dict[str, tuple[str, ...]] = {}
        self.depth_of: dict[str, int] = {}
        self.last_upstream: tuple[str, ...] = ()
        self.last_depth = 0

    def _upstream(self, sources: Iterable[str]) -> tuple[str, ...]:
        return tuple(sorted({m for source in sources for m in self.upstream_of[source]}))

    def _depth(self, sources: Iterable[str]) -> int:
        return max((self.depth_of[source] for source in sources), default=0)

    def _add(self, layer: SynapticLayer) -> None:
        self.layers.append(layer)
        self.last_upstream, self.last_depth = layer.upstream, layer.time_depth

    def population(self, name: str, stage: str, role: str, modality: str | None, **extra: Any) -> str:
        neurons = extra.pop("neurons", None) or _size(self.shapes[name][1])
        population = Population(name, stage, neurons, role, modality, **extra)
        self.populations.append(population)
        sources = population.computed_from
        self.upstream_of[name] = self._upstream(sources) if sources else self.last_upstream
        self.depth_of[name] = self._depth(sources) if sources else self.last_depth
        return name

    def _real_valued(
        self, name: str, stage: str, kind: str, modality: str, dense: int, reads: str, reads_input: bool
    ) -> SynapticLayer:
        """A layer fed by real values: the raw input of ``modality`` itself, or values of the layer before."""
        upstream = (modality,) if reads_input else self.last_upstream
        return SynapticLayer(
            name,
            stage,
            kind,
            dense,
            real_valued=True,
            modality=modality,
            reads=reads,
            upstream=upstream,
            stateless=reads_input,
            time_depth=0 if reads_input else self.last_depth,
        )

    def synaptic(
        self,
        name: str,
        stage: str,
        modality: str,
        sources: list[str] | None,
        reads: str = "",
        reads_input: bool = False,
    ) -> None:
        """A conv (``ConvBN2d``) or token projection (``TokenProjection``) at module path ``name``."""
        conv_name = f"{name}.conv"
        conv = self.modules[conv_name]
        in_shape, out_shape = self.shapes[conv_name]
        dense = _size(out_shape) * (conv.in_channels // conv.groups) * math.prod(conv.kernel_size)
        kind = "conv" if isinstance(self.modules[name], ConvBN2d) else "linear"
        if sources is None:
            self._add(self._real_valued(name, stage, kind, modality, dense, reads, reads_input))
        else:
            # a projection with causal taps reads its input once per tap, tap d delayed by d steps
            taps = getattr(self.modules[name], "taps", 1)
            positions = _size(in_shape) // taps
            fan_out = dense / taps / positions
            inputs = tuple(LayerInput(tuple(sources), fan_out, positions, delay) for delay in range(taps))
            depth = self._depth(sources) + taps - 1
            self._add(
                SynapticLayer(
                    name,
                    stage,
                    kind,
                    dense,
                    inputs,
                    modality=modality,
                    upstream=self._upstream(sources),
                    time_depth=depth,
                )
            )

    def analytic(
        self, name: str, stage: str, kind: str, modality: str, dense: int, *inputs: LayerInput, reads: str = ""
    ) -> None:
        if inputs:
            sources = [s for layer_input in inputs for s in layer_input.sources]
            upstream, depth = self._upstream(sources), self._depth(sources)
            self._add(
                SynapticLayer(
                    name, stage, kind, dense, tuple(inputs), modality=modality, upstream=upstream, time_depth=depth
                )
            )
        else:
            self._add(self._real_valued(name, stage, kind, modality, dense, reads, reads_input=False))

    # ------------------------------------------------------------------ SPDS
    # ------------------------------------------------------------------ the visitor of snnergy.topology.walk
    def spds(self, site: Site, stream: Stream | None) -> str:
        """Stem / downsampling SPDS; ``stream`` None means it reads the analog input."""
        spds, prefix, stage, modality = site.module, site.path, site.stage, site.modality
        reads = f"{modality} input (real-valued)"
        stream = None if stream is None else _trains(stream)
        current = stream
        for index, child in enumerate(spds.deep):
            name = f"{prefix}.deep.{index}"
            if isinstance(child, ConvBN2d):
                self.synaptic(name, stage, modality, current, reads, reads_input=current is None)
            elif isinstance(child, _UNITS):
                current = [self.population(name, stage, "spds_hidden", modality)]
            elif isinstance(child, nn.MaxPool2d):
                # max-pool of spikes = OR: each input spike reaches one sum-pool unit
                positions = _size(self.shapes[name][0])
                assert current is not None, "SPDS pools spikes, after a LIF"
                self.analytic(name, stage, "pool", modality, positions, LayerInput(tuple(current), 1.0, positions))
                current = [self.population(name, stage, "pool", modality)]
            else:
                raise TypeError(f"{name}: unexpected SPDS part {type(child).__name__}")
        self.synaptic(f"{prefix}.shortcut", stage, modality, stream, reads, reads_input=stream is None)
        return self.population(f"{prefix}.out_lif", stage, "spds", modality)

    # ------------------------------------------------------------------ attention
    def attention(self, site: Site, query: Stream, key: Stream) -> str:
        build = {"cmqka": self.cmqka, "ssa": self.ssa, "scmrl": self.scmrl}[site.kind]
        return build(site.path, site.stage, site.modality, site.block, _trains(query), _trains(key))

    def mlp(self, site: Site, stream: Stream) -> str:
        path, stage, modality, block = site.path, site.stage, site.modality, site.block
        self.synaptic(f"{path}.fc1", stage, modality, _trains(stream))
        hidden = self.population(f"{path}.lif1", stage, "mlp1", modality, block=block)
        self.synaptic(f"{path}.fc2", stage, modality, [hidden])
        return self.population(f"{path}.lif2", stage, "mlp2", modality, block=block)

    # ------------------------------------------------------------------ attention kinds
    def cmqka(self, base: str, stage: str, modality: str, block: int, query: list[str], key: list[str]) -> str:
        attn = self.modules[base]
        heads = attn.num_heads
        features = []
        for pathway in ("spatial", "temporal"):
            if not hasattr(attn, pathway):
                continue
            tags = dict(block=block, pathway=pathway)
            self.synaptic(f"{base}.{pathway}.q_proj", stage, modality, query)
            q = self.population(f"{base}.{pathway}.q_lif", stage, "q", modality, **tags)
            self.synaptic(f"{base}.{pathway}.k_proj", stage, modality, key)
            k = self.population(f"{base}.{pathway}.k_lif", stage, "k", modality, **tags)
            channels, tokens = self.shapes[q][1]
            size = channels * tokens
            # token mask: each Q spike adds 1 to the mask neuron of its head and token
            self.analytic(
                f"{base}.{pathway}_channel_sum", stage, "channel_sum", modality, size, LayerInput((q,), 1.0, size)
            )
            mask = self.population(f"{base}.{pathway}_attn_lif", stage, "attn", modality, **tags)
            # F = A AND K: an AND unit per (channel, token) receives its K spike and the mask spike of its head
            feature = self.population(
                f"{base}.{pathway}_features", stage, "and", modality, neurons=size, computed_from=(k, mask), **tags
            )
            self.analytic(
                f"{base}.{pathway}_mask_and",
                stage,
                "mask_and",
                modality,
                size,
                LayerInput((k,), 1.0, size),
                LayerInput((mask,), channels / heads, heads * tokens),
            )
            features.append(feature)
        if len(features) == 2:
            # mean_N(F_s) and mean_T(F_t): one accumulate per feature spike (the 1/N, 1/T scales fold into W_o)
            self.analytic(
                f"{base}.fusion_sum",
                stage,
                "fusion_sum",
                modality,
                2 * size,
                LayerInput((features[0],), 1.0, size),
                LayerInput((features[1],), 1.0, size),
            )
            product = "mean_N(F_s) x mean_T(F_t) (real x real)"
            self.last_depth = self.depth_of[features[0]]  # mean_T(F_t) is one value for every step
            self.analytic(f"{base}.fusion_product", stage, "fusion_product", modality, size, reads=product)
            self.synaptic(f"{base}.out_proj", stage, modality, None, reads="fused features (real-valued)")
        else:
            # mean_N(F_s) or mean_T(F_t) alone: one accumulate per feature spike, then W_o reads real values
            self.analytic(
                f"{base}.fusion_sum", stage, "fusion_sum", modality, size, LayerInput((features[0],), 1.0, size)
            )
            if not hasattr(attn, "spatial"):
                self.last_depth = 0  # mean_T(F_t) alone: one value for every step
            self.synaptic(f"{base}.out_proj", stage, modality, None, reads="pooled features (real-valued)")
        return self.population(f"{base}.out_lif", stage, "attn_out", modality, block=block)

    def ssa(
        self,
        base: str,
        stage: str,
        modality: str,
        block: int,
        query: list[str],
        key: list[str],
        out_role: str = "attn_out",
        **tags: Any,
    ) -> str:
        tags = dict(block=block, **tags)
        self.synaptic(f"{base}.q_proj", stage, modality, query)
        q = self.population(f"{base}.q_lif", stage, "q", modality, **tags)
        self.synaptic(f"{base}.k_proj", stage, modality, key)
        self.population(f"{base}.k_lif", stage, "k", modality, **tags)
        self.synaptic(f"{base}.v_proj", stage, modality, key)
        v = self.population(f"{base}.v_lif", stage, "v", modality, **tags)
        channels, tokens = self.shapes[q][1]
        # the sequence attended over: the N tokens of a timestep, or the T timesteps of a token
        length = tokens if self.modules[base].over == "tokens" else self.time_steps
        size, dense = channels * tokens, tokens * length * channels
        # Q K^T: K^T acts as binary weights; each Q spike adds k[m, c] to the scores of all L keys m
        self.analytic(f"{base}.qk_product", stage, "qk_product", modality, dense, LayerInput((q,), float(length), size))
        # (Q K^T) V: each V spike at (m, c) adds the integer score[n, m] to out[n, c] for all L queries
        self.analytic(f"{base}.av_product", stage, "av_product", modality, dense, LayerInput((v,), float(length), size))
        attended = self.population(f"{base}.attn_lif", stage, "attn", modality, **tags)
        self.synaptic(f"{base}.out_proj", stage, modality, [attended])
        return self.population(f"{base}.out_lif", stage, out_role, modality, **tags)

    def scmrl(self, base: str, stage: str, modality: str, block: int, query: list[str], key: list[str]) -> str:
        """S-CMRL: spatial and temporal SSA, ``mean_N(S) x mean_T(T)``, a linear map, LIF."""
        parts = [
            self.ssa(f"{base}.{pathway}", stage, modality, block, query, key, "attn_part", pathway=pathway)
            for pathway in ("spatial", "temporal")
        ]
        channels, tokens = self.shapes[f"{base}.spatial.out_lif"][1]
        size = channels * tokens
        inputs = (LayerInput((parts[0],), 1.0, size), LayerInput((parts[1],), 1.0, size))
        self.analytic(f"{base}.fusion_sum", stage, "fusion_sum", modality, 2 * size, *inputs)
        product = "mean_N(S) x mean_T(T) (real x real)"
        self.last_depth = self.depth_of[parts[0]]  # mean_T(T) is one value for every step
        self.analytic(f"{base}.fusion_product", stage, "fusion_product", modality, size, reads=product)
        self.synaptic(f"{base}.out_proj", stage, modality, None, reads="fused features (real-valued)")
        return self.population(f"{base}.out_lif", stage, "attn_out", modality, block=block)

    def head(self, streams: dict[str, Stream]) -> None:
        streams = {m: _trains(stream) for m, stream in streams.items()}
        for modality in streams:
            size = self.populations_size(streams[modality][0])
            # global average pooling: one accumulate per spike of each constituent (1/N folds into the head)
            pooled = LayerInput(tuple(streams[modality]), 1.0, size)
            self.analytic(f"head.pool.{modality}", "head", "avg_pool", modality, size, pooled)
        # the head's linear layers read real-valued means: their MACs, whatever the fusion
        dense = sum(m.in_features * m.out_features for m in self.modules["head"].modules() if isinstance(m, nn.Linear))
        pooled = [s for stream in streams.values() for s in stream]
        self.last_upstream, self.last_depth = self._upstream(pooled), self._depth(pooled)
        self.analytic("head", "head", "head", "both", dense, reads="pooled features (real-valued means)")

    def populations_size(self, name: str) -> int:
        return next(p.neurons for p in self.populations if p.name == name)


def describe_model(model: SNNergy) -> NetworkDescription:
    """Populations and synaptic layers of ``model`` with the sources of every layer."""
    config = model.config
    builder = _Builder(model, trace_shapes(model))
    walk(model, builder)
    description = NetworkDescription(
        config.time_steps,
        tuple(builder.populations),
        tuple(builder.layers),
        stage_kinds=tuple(config.stage_attention),
        meta={"model_config": config.to_dict()},
    )
    _check_coverage(model, description)
    return description if config.neuron.spiking else as_ann(description)


def as_ann(description: NetworkDescription) -> NetworkDescription:
    """The ANN counterpart's accounting: no spikes, every layer a dense MAC layer."""
    from dataclasses import replace

    layers = tuple(
        SynapticLayer(
            layer.name,
            layer.stage,
            layer.kind,
            layer.dense_ops,
            real_valued=True,
            modality=layer.modality,
            reads="ReLU activations",
            upstream=layer.upstream,
            stateless=bool(layer.upstream),  # no neuron state anywhere: constant when its inputs are
            time_depth=layer.time_depth,
        )
        for layer in description.layers
    )
    return replace(description, populations=(), layers=layers, spiking=False)


def _check_coverage(model: SNNergy, description: NetworkDescription) -> None:
    """Every spiking module is a population and every weight layer is described, exactly once."""
    spiking = {n for n, m in model.named_modules() if isinstance(m, (*_UNITS, nn.MaxPool2d))}
    described = {p.name for p in description.populations if not p.computed_from}
    weights = {
        n.removesuffix(".conv") for n, m in model.named_modules() if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Linear))
    }
    weights = {n for n in weights if not n.startswith("head.")}  # a fusion head's layers are accounted as one, "head"
    layers = {layer.name for layer in description.layers}
    if spiking != described or not weights <= layers:
        raise RuntimeError(
            "energy description out of step with the model: "
            f"undescribed neurons {sorted(spiking - described)[:5]}, unknown {sorted(described - spiking)[:5]}, "
            f"undescribed layers {sorted(weights - layers)[:5]}"
        )


class SpikeProbe:
    """Forward hooks summing the spikes of every population per timestep.

    Use as a context manager around forwards of ``model``; AND populations (``computed_from``
    a key population and a mask population) are counted as ``mask AND key`` from the
    tensors of the same forward.
    """

    def __init__(self, model: SNNergy, description: NetworkDescription, keep_trains: bool = False):
        self.model = model
        self.description = description
        self.time_steps = description.time_steps
        self.totals: dict[str, Tensor] = {}
        self.keep_trains = keep_trains
        self.trains: dict[str, list[Tensor]] = {}  # population -> [T, B, ...] bool per forward
        self.samples = 0
        self.static: dict[str, bool] = {}  # input modality -> every input seen was the same at every timestep
        self._stash: dict[str, Tensor] = {}
        self._handles: list[Any] = []

    def __enter__(self) -> SpikeProbe:
        modules = dict(self.model.named_modules())
        derived: dict[str, list[tuple[str, str]]] = {}  # mask population -> [(AND population, key population)]
        for population in self.description.populations:
            if population.computed_from:
                key, mask = population.computed_from
                derived.setdefault(mask, []).append((population.name, key))
        stashed = {key for pairs in derived.values() for _, key in pairs}
        for population in self.description.populations:
            if not population.computed_from:
                hook = self._hook(population.name, population.name in stashed, derived.get(population.name, []))
                self._handles.append(modules[population.name].register_forward_hook(hook))
        first_stem = f"stem.{self.model.config.active_modalities[0]}"
        self._handles.append(modules[first_stem].register_forward_pre_hook(self._count_samples))
        for modality in self.model.config.active_modalities:
            self._handles.append(modules[f"stem.{modality}"].register_forward_pre_hook(self._watch_input(modality)))
        return self

    def __exit__(self, *exc: object) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self._stash.clear()

    def _count_samples(self, module: nn.Module, args: tuple) -> None:
        self.samples += int(args[0].shape[1])  # [T, B, C, H, W]

    def _watch_input(self, modality: str):
        """Record whether the modality's input repeats one frame over T (direct encoding)."""

        def watch(module: nn.Module, args: tuple) -> None:
            frames = args[0]  # [T, B, C, H, W]
            static = bool((frames == frames[:1]).all())
            self.static[modality] = self.static.get(modality, True) and static

        return watch

    def _add(self, name: str, spikes: Tensor) -> None:
        if self.keep_trains:
            self.trains.setdefault(name, []).append(spikes.detach().bool().cpu())
        per_step = spikes.detach().reshape(spikes.shape[0], -1).sum(dim=1).double().cpu()
        self.totals[name] = self.totals[name] + per_step if name in self.totals else per_step

    def _hook(self, name: str, stash: bool, ands: list[tuple[str, str]]):
        def hook(module: nn.Module, args: tuple, out: Tensor) -> None:
            self._add(name, out)
            if stash:
                self._stash[name] = out.detach()
            for and_name, key_name in ands:
                key = self._stash.pop(key_name)  # [T, B, C, N]
                t, b, c, n = key.shape
                heads = out.shape[2]  # mask [T, B, H, 1, N]
                self._add(and_name, key.reshape(t, b, heads, c // heads, n) * out)

        return hook

    def spike_trains(self) -> dict[str, Tensor]:
        """Population -> ``[samples, T, ...]`` bool spike trains of every forward (``keep_trains``)."""
        if not self.keep_trains:
            raise ValueError("the probe was not asked to keep spike trains")
        return {name: torch.cat(parts, dim=1).transpose(0, 1) for name, parts in self.trains.items()}

    def spike_counts(self) -> SpikeCounts:
        if not self.samples:
            raise ValueError("no forward pass went through the probe")
        counts = {p.name: tuple(float(v) for v in self.totals[p.name]) for p in self.description.populations}
        static = tuple(sorted(m for m, constant in self.static.items() if constant))
        return SpikeCounts(self.samples, self.time_steps, counts, static)


def collect_spike_counts(
    model: SNNergy,
    description: NetworkDescription,
    batches: Iterable[Any],
    progress: Any = None,
) -> SpikeCounts:
    """Run ``(audio, video, ...)`` batches through ``model`` in eval mode and count spikes.

    ``progress`` is an optional tqdm-like bar advanced by the batch size.
    """
    device = next(model.parameters()).device
    model.eval()
    with SpikeProbe(model, description) as probe, torch.no_grad():
        for batch in batches:
            audio, video = batch[0].to(device), batch[1].to(device)
            model(audio, video)
            if progress is not None:
                progress.update(int(audio.shape[0]))
    return probe.spike_counts()
