"""Synaptic layers with batch norm, applied to T-first tensors.

Conv/BN act on ``[T*B, ...]`` (SpikingJelly's multi-step layers do the flattening), so a
layer sees every timestep as an independent frame, as on neuromorphic hardware where a
synapse has no memory. BN is kept separate from its conv so export can fold it.
"""

from __future__ import annotations

from torch import Tensor, nn
from spikingjelly.activation_based import layer


class ConvBN2d(nn.Module):
    """2-D convolution then BN on ``[T, B, C, H, W]``."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, padding: int = 0):
        super().__init__()
        self.conv = layer.Conv2d(in_channels, out_channels, kernel_size, stride, padding, bias=False, step_mode="m")
        self.bn = layer.BatchNorm2d(out_channels, step_mode="m")

    def forward(self, x: Tensor) -> Tensor:
        return self.bn(self.conv(x))


class TokenProjection(nn.Module):
    """Per-token linear map (1x1 conv) then BN on ``[T, B, C, N]``."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv = layer.Conv1d(in_channels, out_channels, kernel_size=1, bias=False, step_mode="m")
        self.bn = layer.BatchNorm1d(out_channels, step_mode="m")

    def forward(self, x: Tensor) -> Tensor:
        return self.bn(self.conv(x))
