"""The NIR nodes of SNNergy's building blocks, which ``export.nir_model`` assembles into the
whole graph.

Conventions, shared by every NIR node this module writes:

* time: SpikingJelly's discrete LIF ``h = v + (x - (v - v_reset)) / tau`` is the Euler
  step (``dt``) of NIR's continuous LIF ``tau_c dv/dt = (v_leak - v) + r I`` with
  ``tau_c = tau * dt``, ``r = 1``, ``v_leak = v_reset``; ``dt`` is stored in the graph's
  metadata. norse runs these nodes like our reference executor (tests/test_nir_consumers.py).
* conv + BN: BN (eval statistics) folded into the conv's weight and bias, exactly
  ``w * g / sqrt(var + eps)``, ``b = beta - mean * g / sqrt(var + eps)``.
* max-pool of spikes = logical OR = ``SumPool2d`` into a memoryless threshold unit. NIR's
  ``Threshold`` is that unit, but norse cannot run it, so we write the equivalent LIF with
  ``tau_c = dt`` (its membrane equals its input every step) and threshold 0.5.
* thresholds: NIR's LIF fires on ``v > v_threshold``, SpikingJelly's on ``v >= threshold``;
  every threshold is written as the float32 just below the model's (``nir_threshold``), so a
  stock consumer's ``>`` fires exactly where the model's ``>=`` does, ties included.
* several edges into one node are summed (NIR semantics): the SPDS branch sum is two
  edges into the output LIF.
"""

from __future__ import annotations

import nir
import numpy as np
import torch
from spikingjelly.activation_based import layer, neuron

from export.package_format import DT
from snnergy.layers.projection import ConvBN2d, TokenProjection


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


def nir_threshold(threshold: float) -> np.float32:
    """The threshold under which NIR's ``v > v_threshold`` fires exactly when SpikingJelly's
    ``v >= threshold`` does: the float32 just below it (no float32 lies between the two, so
    for float32 membranes the two comparisons agree everywhere, ties included)."""
    return np.nextafter(np.float32(threshold), np.float32(-np.inf))


def lif_node(lif: neuron.LIFNode, shape: tuple[int, ...], dt: float = DT) -> nir.LIF:
    """NIR LIF reproducing a SpikingJelly hard-reset, decay-input LIF under Euler steps of ``dt``."""
    if not lif.decay_input or lif.v_reset is None:
        raise ValueError("only decay_input hard-reset LIFs map exactly to NIR's LIF")
    full = lambda value: np.full(shape, value, dtype=np.float32)  # noqa: E731
    return nir.LIF(
        tau=full(lif.tau * dt),
        r=full(1.0),
        v_leak=full(lif.v_reset),
        v_threshold=full(nir_threshold(lif.v_threshold)),
        v_reset=full(lif.v_reset),
    )


def spike_or_nodes(
    pool: layer.MaxPool2d, shape: tuple[int, int, int], dt: float = DT
) -> tuple[nir.SumPool2d, nir.LIF, tuple[int, int, int]]:
    """Max-pool of binary spikes as SumPool2d + memoryless threshold unit (an OR)."""
    kernel, stride = _pair(pool.kernel_size), _pair(pool.stride or pool.kernel_size)
    out_shape = (shape[0], shape[1] // stride[0], shape[2] // stride[1])
    full = lambda value: np.full(out_shape, value, dtype=np.float32)  # noqa: E731
    gate = nir.LIF(tau=full(dt), r=full(1.0), v_leak=full(0.0), v_threshold=full(nir_threshold(0.5)), v_reset=full(0.0))
    gate.metadata["snnergy_op"] = "spike_or"
    return (
        nir.SumPool2d(kernel_size=np.array(kernel), stride=np.array(stride), padding=np.array((0, 0))),
        gate,
        out_shape,
    )


def _pair(value) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else tuple(value)


def memoryless_threshold(shape: tuple[int, ...], threshold: float, op: str, dt: float = DT) -> nir.LIF:
    """A threshold unit (output = input >= threshold, no memory) as a LIF with ``tau_c = dt``."""
    full = lambda value: np.full(shape, value, dtype=np.float32)  # noqa: E731
    node = nir.LIF(
        tau=full(dt), r=full(1.0), v_leak=full(0.0), v_threshold=full(nir_threshold(threshold)), v_reset=full(0.0)
    )
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


def token_mean_node(grid: tuple[int, int]) -> tuple[nir.AvgPool2d, float]:
    """CMQKA's ``mean_N`` (each channel's mean over the token grid, at every token) in standard
    NIR: an ``AvgPool2d`` whose ``2H-1 x 2W-1`` window, zero-padded by ``H-1, W-1``, covers the
    whole grid from every position. It yields the mean times ``N / window``; the returned gain
    ``window / N`` restores the mean and folds into whatever reads it."""
    height, width = grid
    kernel = np.array((2 * height - 1, 2 * width - 1))
    node = nir.AvgPool2d(kernel_size=kernel, stride=np.array((1, 1)), padding=np.array((height - 1, width - 1)))
    node.metadata["snnergy_role"] = "token_mean"  # for runtimes that run it as one process; consumers ignore it
    return node, float(kernel[0] * kernel[1]) / (height * width)
