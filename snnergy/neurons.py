"""Spiking neurons, built from SpikingJelly and configured from data.

All neurons are SpikingJelly multi-step ``LIFNode``s (input ``[T, ...]``): leaky
integration with ``decay_input``, Heaviside firing, hard reset to ``v_reset``, sigmoid
surrogate gradient and a detached reset, exactly as QKFormer trains them. The only
per-role difference is the threshold: attention-mask neurons use their own (paper: 0.6).
"""

from __future__ import annotations

from spikingjelly.activation_based import neuron, surrogate
from torch import nn

from snnergy.config import NeuronConfig


def _surrogate(config: NeuronConfig) -> surrogate.SurrogateFunctionBase:
    if config.surrogate == "sigmoid":
        return surrogate.Sigmoid(alpha=config.surrogate_alpha)
    raise ValueError(f"unsupported surrogate {config.surrogate!r}")


def make_lif(config: NeuronConfig, v_threshold: float | None = None) -> neuron.LIFNode | nn.ReLU:
    """A multi-step LIF layer; ``v_threshold`` overrides the config's (attention masks).

    With ``config.spiking`` off it is a ReLU (the ANN counterpart keeps every layer and
    replaces only the neuron).
    """
    if not config.spiking:
        return nn.ReLU()
    return neuron.LIFNode(
        tau=config.tau,
        decay_input=config.decay_input,
        v_threshold=config.v_threshold if v_threshold is None else v_threshold,
        v_reset=config.v_reset,
        surrogate_function=_surrogate(config),
        detach_reset=config.detach_reset,
        step_mode="m",
    )
