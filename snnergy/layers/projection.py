"""Synaptic layers with batch norm, applied to T-first tensors.

Conv/BN act on ``[T*B, ...]`` (SpikingJelly's multi-step layers do the flattening), so a
layer sees every timestep as an independent frame, as on neuromorphic hardware where a
synapse has no memory. BN is kept separate from its conv so export can fold it.

A token projection may also read the ``taps - 1`` previous timesteps (a causal
convolution over time): ``y[t] = BN(sum_d W_d x[t - d])`` with ``x[t - d] = 0`` before the
first step. On hardware each tap ``d`` is the same kind of synapse with a ``d``-step
axonal delay, so it stays event-driven and needs no future input.
"""

from __future__ import annotations

import torch
from spikingjelly.activation_based import layer
from torch import Tensor, nn
from torch.nn import functional as F


class ConvBN2d(nn.Module):
    """2-D convolution then BN on ``[T, B, C, H, W]``."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, padding: int = 0):
        super().__init__()
        self.conv = layer.Conv2d(in_channels, out_channels, kernel_size, stride, padding, bias=False, step_mode="m")
        self.bn = layer.BatchNorm2d(out_channels, step_mode="m")

    def forward(self, x: Tensor) -> Tensor:
        return self.bn(self.conv(x))


def delayed(x: Tensor, steps: int) -> Tensor:
    """``x`` shifted ``steps`` timesteps later along dim 0 (T), zeros before the first step."""
    if steps == 0:
        return x
    padding = [0, 0] * (x.dim() - 1) + [steps, 0]  # F.pad lists the last dimension first
    return F.pad(x, padding)[: x.shape[0]]  # (a pad, not zeros of a traced shape: exports keep a dynamic batch)


class TokenProjection(nn.Module):
    """Per-token linear map (1x1 conv) then BN on ``[T, B, C, N]``; with ``taps > 1`` it
    also reads the ``taps - 1`` previous timesteps (causal; tap ``d`` has weights
    ``conv.weight[:, d*C:(d+1)*C]``). ``batch_norm=False``: a plain linear map with a bias
    (a baseline that has no BN there, S-CMRL's output map)."""

    def __init__(self, in_channels: int, out_channels: int, taps: int = 1, batch_norm: bool = True):
        super().__init__()
        if taps < 1:
            raise ValueError(f"a projection needs at least one tap, got {taps}")
        self.taps = taps
        self.conv = layer.Conv1d(in_channels * taps, out_channels, kernel_size=1, bias=not batch_norm, step_mode="m")
        self.bn = layer.BatchNorm1d(out_channels, step_mode="m") if batch_norm else nn.Identity()

    def tap_weight(self, tap: int) -> Tensor:
        """``W_d``: the ``[out, in]`` weights applied to the input ``tap`` steps back."""
        channels = self.conv.in_channels // self.taps
        return self.conv.weight[:, tap * channels : (tap + 1) * channels, 0]

    def forward(self, x: Tensor) -> Tensor:
        if self.taps > 1:
            x = torch.cat([delayed(x, d) for d in range(self.taps)], dim=2)
        return self.bn(self.conv(x))
