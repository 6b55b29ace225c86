"""Turning analog inputs into the ``[T, C, H, W]`` sequences the spiking model consumes.

QKFormer and S-CMRL use *direct* (repeat) encoding: the same analog frame is presented
at every time step and the first spiking layer turns it into spikes. Inputs that already
have frames (video clips) keep them, so one function serves both.
"""

from __future__ import annotations

import torch


def encode_time(x: torch.Tensor, time_steps: int) -> torch.Tensor:
    """Return ``[T, C, H, W]`` for a static ``[C, H, W]`` frame or a ``[F, C, H, W]`` clip.

    * ``[C, H, W]``: direct encoding, the frame repeated ``time_steps`` times.
    * ``[F, C, H, W]`` with ``F == time_steps``: returned unchanged.
    * ``[F, C, H, W]`` with another ``F``: ``time_steps`` frames taken at evenly spaced
      positions (nearest frame), so a clip of any length maps onto the model's T.

    The result is a new contiguous tensor for static input (safe to modify in place).
    """
    if time_steps < 1:
        raise ValueError(f"time_steps must be >= 1, got {time_steps}")
    if x.dim() == 3:
        return x.unsqueeze(0).repeat(time_steps, 1, 1, 1)
    if x.dim() == 4:
        frames = x.shape[0]
        if frames == time_steps:
            return x
        index = torch.linspace(0, frames - 1, time_steps).round().long()
        return x.index_select(0, index)
    raise ValueError(f"expected [C, H, W] or [F, C, H, W], got shape {tuple(x.shape)}")
