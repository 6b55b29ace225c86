"""SPDS: Spiking Patch Downsampling with Shortcut (stem and between stages).

``out = SN(deep(x) + shortcut(x))`` with, for a reduction ``r = 2**k``:

* deep branch: ``k`` times [3x3 conv, BN, LIF, 2x2 max-pool], then a 3x3 conv + BN;
* shortcut: a ``r x r`` conv with stride ``r`` + BN (the "aligned strided transformation"
  matching the reduction and the channel change);
* the two real-valued currents are summed and drive one LIF.

Neuromorphic mapping of every operation (the export issue relies on this list):

* conv + BN: BN folds exactly into the conv's weights and bias -> one synaptic layer;
* LIF: a native neuron;
* max-pool is applied to *spikes*, after the LIF, where it is a logical OR (sum-pool, then
  a threshold at 1) and maps exactly. QKFormer pools the real-valued conv output before
  the LIF; max-pool on real-valued membrane inputs has no neuromorphic primitive, so we
  choose the deployable order, which the paper's description (conv, BN, LIF, max-pool)
  allows;
* the branch sum is two synaptic inputs into the same neuron (NIR sums incoming edges);
* the only layers fed by real values are the stem's first conv and its shortcut (they
  read the encoded analog input): they cost MACs, every other layer is spike-driven.
"""

from __future__ import annotations

import math

from spikingjelly.activation_based import layer
from torch import Tensor, nn

from snnergy.config import NeuronConfig
from snnergy.layers.projection import ConvBN2d
from snnergy.neurons import make_lif


class SPDS(nn.Module):
    """Downsample ``[T, B, C_in, H, W]`` by ``reduction`` to ``[T, B, C_out, H/r, W/r]`` spikes."""

    def __init__(self, in_channels: int, out_channels: int, reduction: int, neuron: NeuronConfig):
        super().__init__()
        steps = int(math.log2(reduction))
        if 2**steps != reduction or steps < 1:
            raise ValueError(f"SPDS reduction must be a power of two >= 2, got {reduction}")
        widths = [out_channels // 2 ** (steps - 1 - i) for i in range(steps)]
        stages: list[nn.Module] = []
        channels = in_channels
        for width in widths:
            stages += [
                ConvBN2d(channels, width, kernel_size=3, padding=1),
                make_lif(neuron),
                layer.MaxPool2d(kernel_size=2, stride=2, step_mode="m"),
            ]
            channels = width
        stages.append(ConvBN2d(channels, out_channels, kernel_size=3, padding=1))
        self.deep = nn.Sequential(*stages)
        self.shortcut = ConvBN2d(in_channels, out_channels, kernel_size=reduction, stride=reduction)
        self.out_lif = make_lif(neuron)
        self.reduction = reduction

    def forward(self, x: Tensor) -> Tensor:
        return self.out_lif(self.deep(x) + self.shortcut(x))
