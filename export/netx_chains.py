"""lava-dl netx HDF5 files for the straight chains of an exported graph (``--target loihi``).

lava-dl 0.6's ``netx.hdf5.Network`` builds a *sequential* network of ``input`` / ``conv`` /
``dense`` / ``flatten`` layers, each a synapse and a CUBA (Loihi) neuron, in fixed point:
no pooling layer, no fan-in (a layer reads only the previous one), no extension. What of
SNNergy it can hold are the chains in which every population reads exactly one synaptic
node of the previous one: the SPDS stems' deep paths, ``conv -> LIF -> spike OR-pool ->
LIF -> ...`` up to the stem's output neuron, where the shortcut joins (the OR-pool is a
``conv`` whose kernel is ones per channel into a memoryless threshold neuron). Everything
else runs as the stock processes of ``export.stock_plan`` (docs/loihi.md).

Parameters are the package's fixed-point ones (``export.lava_package.quantise``): 8-bit
weights, 12-bit decays, threshold mantissas; netx adds the bias with exponent 6, so a bias
is rounded to weight units. The first layer reads the real-valued frames (clipped to
``LARGEST_INPUT``) as graded spikes of ``input_bits`` fractional bits; its threshold and
bias are scaled by ``2 ** input_bits`` to match, and its weight scale is chosen to balance
weight bits against input bits within the 24-bit membrane and 17-bit threshold.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import h5py
import nir
import numpy as np

from export.package_format import DECAY_ONE, VTH_MAX, population_key, synapse_key

MEMBRANE_LIMIT = 2**23  # 24-bit signed u and v
BIAS_LIMIT = 2**12  # 13-bit signed bias mantissa
MAX_INPUT_BITS = 8
LARGEST_INPUT = 4.0  # frames are clipped to +-4 (avdigits: log-mel within +-3, video in [0, 1])


def straight_chains(graph: nir.NIRGraph) -> dict[str, list[tuple[str, str]]]:
    """For each Input node, the (synaptic node, LIF) pairs of its longest straight chain."""
    sources_of, targets_of = defaultdict(list), defaultdict(list)
    for source, target in graph.edges:
        sources_of[target].append(source)
        targets_of[source].append(target)
    chains = {}
    for name, node in graph.nodes.items():
        if not isinstance(node, nir.Input):
            continue
        chain, current = [], name
        while True:
            steps = [
                (synapse, targets_of[synapse][0])
                for synapse in targets_of[current]
                if isinstance(graph.nodes[synapse], (nir.Conv2d, nir.SumPool2d))
                and sources_of[synapse] == [current]
                and len(targets_of[synapse]) == 1
                and isinstance(graph.nodes[targets_of[synapse][0]], nir.LIF)
                and sources_of[targets_of[synapse][0]] == [synapse]
            ]
            if len(steps) != 1:
                break
            chain.append(steps[0])
            current = steps[0][1]
        if chain:
            chains[name] = chain
    return chains


def _layer_weight(graph: nir.NIRGraph, fixed: dict[str, np.ndarray], synapse: str, population: str) -> np.ndarray:
    node = graph.nodes[synapse]
    if isinstance(node, nir.Conv2d):
        return fixed[synapse_key(population, synapse, "weight_mant")].astype(np.int64)
    kernel = tuple(int(k) for k in np.broadcast_to(node.kernel_size, 2))
    channels = int(np.asarray(graph.nodes[population].tau).shape[0])
    return np.full((channels, 1, *kernel), int(fixed[population_key(population, "direct_weight")]), dtype=np.int64)


def _layer_bias(graph: nir.NIRGraph, fixed: dict[str, np.ndarray], synapse: str, population: str) -> np.ndarray:
    """The bias in weight units (netx shifts it left by 6, as Lava shifts activations)."""
    key = synapse_key(population, synapse, "bias_mant")
    if key not in fixed:
        channels = int(np.asarray(graph.nodes[population].tau).shape[0])
        return np.zeros(channels, dtype=np.int64)
    exponent = int(fixed[synapse_key(population, synapse, "bias_exp")])
    return np.round((fixed[key].astype(np.int64) << exponent) / 64).astype(np.int64)


def input_bits(weight: np.ndarray, threshold: int, bias: np.ndarray, largest_input: float) -> int:
    """Fractional bits of the graded input: the most that keep the first layer's membrane,
    threshold and bias within Loihi's widths for inputs up to ``largest_input``."""
    fan_in = np.abs(weight).reshape(weight.shape[0], -1).sum(axis=1).max()
    largest_bias = np.abs(bias).max(initial=0)
    for bits in range(MAX_INPUT_BITS, -1, -1):
        scale = 2**bits
        membrane = (fan_in * largest_input + largest_bias) * scale * 64
        if membrane < MEMBRANE_LIMIT and threshold * scale <= VTH_MAX and largest_bias * scale < BIAS_LIMIT:
            return bits
    raise ValueError("the first layer's weights leave no room for a graded input within 24 bits")


def graded_first_layer(
    graph: nir.NIRGraph, fixed: dict[str, np.ndarray], synapse: str, population: str, largest_input: float
) -> tuple[np.ndarray, np.ndarray, int, int]:
    """Weight, bias, threshold and input bits of the layer reading real values.

    Its membrane resolution is shared between weight bits and input bits (threshold times
    ``2 ** bits`` stays within 17 bits): the population's scale is lowered by powers of two
    until weight and input bits are balanced, instead of spending every bit on weights."""
    node = graph.nodes[synapse]
    tau = float(np.asarray(graph.nodes[population].tau).flat[0]) / float(graph.metadata["dt"])
    threshold = float(np.asarray(graph.nodes[population].v_threshold).flat[0])
    weight = np.asarray(node.weight, dtype=np.float64) / tau
    bias = np.asarray(node.bias, dtype=np.float64) / tau
    scale = float(fixed[population_key(population, "scale")])
    best = None
    for shift in range(12):
        s = scale / 2**shift
        w, b, v = np.round(weight * s).astype(np.int64), np.round(bias * s).astype(np.int64), round(threshold * s)
        if not np.any(w) or v < 1:
            break
        bits = input_bits(w, v, b, largest_input)
        balance = min(np.log2(np.abs(w).max()), bits)
        if best is None or balance > best[0]:
            best = (balance, w, b, v, bits)
    _, w, b, v, bits = best
    return w, b << bits, v << bits, bits


def write_netx(
    graph: nir.NIRGraph,
    fixed: dict[str, np.ndarray],
    input_node: str,
    chain: list[tuple[str, str]],
    path: Path,
    largest_input: float = LARGEST_INPUT,
) -> dict:
    """One chain as a netx HDF5 file; returns what the runtime needs to feed and read it."""
    shapes = {input_node: tuple(int(d) for d in graph.nodes[input_node].input_type["input"])}
    for _, population in chain:
        shapes[population] = tuple(np.asarray(graph.nodes[population].tau).shape)
    bits = 0
    with h5py.File(path, "w") as handle:
        layers = handle.create_group("layer")
        first = layers.create_group("0")
        first.create_dataset("type", data=np.bytes_("input"))
        first.create_dataset("shape", data=np.array(shapes[input_node]))
        for index, (synapse, population) in enumerate(chain, start=1):
            node = graph.nodes[synapse]
            if index == 1:  # graded input with ``bits`` fractional bits: threshold and bias scaled alike
                weight, bias, threshold, bits = graded_first_layer(graph, fixed, synapse, population, largest_input)
            else:
                weight = _layer_weight(graph, fixed, synapse, population)
                bias = _layer_bias(graph, fixed, synapse, population)
                threshold = int(fixed[population_key(population, "vth_mant")])
            layer = layers.create_group(str(index))
            layer.create_dataset("type", data=np.bytes_("conv"))
            layer.create_dataset("shape", data=np.array(shapes[population]))
            layer.create_dataset("weight", data=weight)
            layer.create_dataset("bias", data=bias)
            for key in ("stride", "padding"):
                layer.create_dataset(key, data=np.broadcast_to(np.asarray(getattr(node, key)), 2).astype(int))
            dilation = np.broadcast_to(np.asarray(getattr(node, "dilation", 1)), 2).astype(int)
            layer.create_dataset("dilation", data=dilation)
            groups = int(node.groups) if isinstance(node, nir.Conv2d) else shapes[population][0]
            layer.create_dataset("groups", data=groups)
            neuron = layer.create_group("neuron")
            neuron.create_dataset("type", data=np.bytes_("CUBA"))
            neuron.create_dataset("iDecay", data=DECAY_ONE)  # du = iDecay - 1: the current is cleared each step
            neuron.create_dataset("vDecay", data=int(fixed[population_key(population, "dv")]))
            neuron.create_dataset("vThMant", data=threshold)
            neuron.create_dataset("refDelay", data=1)
            neuron.create_dataset("gradedSpike", data=False)
    return {
        "file": path.name,
        "input": input_node,
        "populations": [population for _, population in chain],
        "shapes": [list(shapes[population]) for _, population in chain],
        "input_bits": bits,
        "largest_input": largest_input,
    }
