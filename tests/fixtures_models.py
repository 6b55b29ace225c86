"""Models for tests: seeded random models that actually fire.

A plain random initialisation is silent (no LIF reaches its threshold), which would make
spike parity or modality-mixing checks trivially true. Drawing the BN scales and biases
from a seeded generator makes every stage fire.
"""

from __future__ import annotations

import torch
from torch import nn


def make_lively(model: nn.Module, seed: int = 1, bias: float = 2.5) -> nn.Module:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
                module.bias.copy_(torch.rand(module.bias.shape, generator=generator) * bias)
                module.weight.copy_(0.5 + torch.rand(module.weight.shape, generator=generator))
    return model.eval()
