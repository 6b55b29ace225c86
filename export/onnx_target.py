"""``--target onnx``: the model unrolled over T, for conventional hardware.

SpikingJelly runs a multi-step LIF as one custom op (``sj_lif``) that ONNX cannot
express. The export therefore works on a copy of the model in which every ``LIFNode`` is
replaced by :class:`UnrolledLIF`: the same update written as plain tensor ops over an
explicit membrane tensor, one step per timestep (T is fixed by the checkpoint, so the
trace unrolls the loop). The arithmetic is SpikingJelly's, in the same order, so spikes
are bit-identical in float32:

    h = v + (x_t - (v - v_reset)) / tau        (decay_input; else v - (v - v_reset) / tau + x_t)
    s = (h >= v_threshold)
    v = s * v_reset + (1 - s) * h               (hard reset)

Everything else (convs, BN in eval mode, max-pool, linear, the attention products) is
exported as is. The file carries the model config, class names and T in its metadata, and
onnxruntime reproduces the PyTorch logits (checked on every export).
"""

from __future__ import annotations

import argparse
import copy
import json
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from spikingjelly.activation_based import layer, neuron
from spikingjelly.activation_based.base import MemoryModule
from torch import nn

from snnergy import __version__
from snnergy.checkpoint import Checkpoint
from snnergy.layers.cmqka import FactorFusion
from snnergy.model import SNNergy

OPSET = 17
# leaf modules whose ONNX export is plain tensor ops (after the LIF swap)
SUPPORTED_LEAVES = (
    nn.Conv1d,
    nn.Conv2d,
    nn.BatchNorm1d,
    nn.BatchNorm2d,
    nn.MaxPool2d,
    nn.Linear,
    nn.ParameterDict,
    layer.Conv1d,
    layer.Conv2d,
    layer.BatchNorm1d,
    layer.BatchNorm2d,
    layer.MaxPool2d,
    FactorFusion,
)


class UnsupportedModuleError(ValueError):
    """The model holds a module this exporter cannot express in ONNX."""


class UnrolledLIF(nn.Module):
    """SpikingJelly's hard-reset LIF, multi-step, with its membrane as an explicit tensor."""

    def __init__(self, source: neuron.LIFNode):
        super().__init__()
        if source.v_reset is None:
            raise UnsupportedModuleError("soft-reset LIF (v_reset=None) is not exported")
        self.tau, self.decay_input = float(source.tau), bool(source.decay_input)
        self.v_threshold, self.v_reset = float(source.v_threshold), float(source.v_reset)

    def forward(self, x_seq: torch.Tensor) -> torch.Tensor:
        v = x_seq[0] * 0.0 + self.v_reset  # from the input, so the traced shape keeps a dynamic batch
        spikes = []
        for x in x_seq.unbind(0):
            if self.decay_input:
                h = v + (x - (v - self.v_reset)) / self.tau
            else:
                h = v - (v - self.v_reset) / self.tau + x
            spike = (h >= self.v_threshold).to(x.dtype)
            v = spike * self.v_reset + (1 - spike) * h
            spikes.append(spike)
        return torch.stack(spikes)


class FrameWise(nn.Module):
    """A stateless layer applied to every frame of ``[T, B, ...]``, batch left dynamic.

    SpikingJelly's multi-step layers reshape with the traced batch size, which would fix
    the batch of the ONNX graph; here the layer runs single-step on ``[T*B, ...]`` and the
    result is unflattened with ``-1`` for the batch.
    """

    def __init__(self, inner: nn.Module):
        super().__init__()
        inner.step_mode = "s"
        self.inner = inner

    def forward(self, x_seq: torch.Tensor) -> torch.Tensor:
        y = self.inner(x_seq.flatten(0, 1))
        return y.reshape(x_seq.shape[0], -1, *y.shape[1:])


def check_supported(model: nn.Module) -> None:
    """Every leaf must be a LIF or a supported stateless layer; name the first that is not."""
    lif_prefixes: list[str] = []
    for name, module in model.named_modules():
        if isinstance(module, neuron.LIFNode):
            if module.v_reset is None:
                raise UnsupportedModuleError(
                    f"module '{name}' (LIFNode) uses soft reset (v_reset=None), which is not exported"
                )
            lif_prefixes.append(name + ".")
            continue
        if any(name.startswith(prefix) for prefix in lif_prefixes):  # the LIF's surrogate: training only
            continue
        if isinstance(module, MemoryModule):
            raise UnsupportedModuleError(
                f"module '{name}' ({type(module).__name__}) keeps state the ONNX export cannot unroll"
            )
        if not list(module.children()) and not isinstance(module, SUPPORTED_LEAVES):
            raise UnsupportedModuleError(f"module '{name}' ({type(module).__name__}) has no ONNX export in SNNergy")


def unrolled_copy(model: SNNergy) -> SNNergy:
    """A deep copy in eval mode: LIFNodes unrolled, SpikingJelly multi-step layers frame-wise."""
    check_supported(model)
    twin = copy.deepcopy(model).eval()
    multi_step = (layer.Conv1d, layer.Conv2d, layer.BatchNorm1d, layer.BatchNorm2d, layer.MaxPool2d)
    for name, module in list(twin.named_modules()):
        replacement = None
        if isinstance(module, neuron.LIFNode):
            replacement = UnrolledLIF(module)
        elif isinstance(module, multi_step):
            replacement = FrameWise(module)
        if replacement is not None:
            parent_name, _, child = name.rpartition(".")
            parent = twin.get_submodule(parent_name) if parent_name else twin
            setattr(parent, child, replacement)
    return twin


def example_inputs(model: SNNergy, batch: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs strong enough to make the network spike, so the parity check means something."""
    generator = torch.Generator().manual_seed(seed)
    audio_shape, video_shape = (model.expected_shape(m, batch) for m in ("audio", "video"))
    return torch.rand(*audio_shape, generator=generator) * 3, torch.rand(*video_shape, generator=generator) * 3


def onnx_logits(path: Path, audio: torch.Tensor, video: torch.Tensor) -> np.ndarray:
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(["logits"], {"audio": audio.numpy(), "video": video.numpy()})[0]


def _add_metadata(path: Path, checkpoint: Checkpoint) -> None:
    import onnx

    model = onnx.load(str(path))
    config = checkpoint.model_config
    entries = {
        "snnergy_version": __version__,
        "model_config": json.dumps(config.to_dict()),
        "class_names": json.dumps(checkpoint.class_names),
        "time_steps": str(config.time_steps),
        "inputs": json.dumps(
            {
                m: ["batch", config.time_steps, channels, config.image_size, config.image_size]
                for m, channels in (("audio", config.audio_channels), ("video", config.video_channels))
            }
        ),
    }
    for key, value in entries.items():
        prop = model.metadata_props.add()
        prop.key, prop.value = key, value
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def export_onnx(
    checkpoint: Checkpoint, out_path: str | Path, opset: int = OPSET, check_batch: int = 2
) -> dict[str, Any]:
    """Write the ONNX file, validate it with onnx.checker, compare onnxruntime with PyTorch."""
    from snnergy.atomic import staged

    with staged(out_path) as staging:  # the previous file stays until the new one passed the checks
        summary = _export_onnx_to(checkpoint, staging, opset, check_batch)
    return {**summary, "path": str(out_path)}


def _export_onnx_to(checkpoint: Checkpoint, out_path: Path, opset: int, check_batch: int) -> dict[str, Any]:
    import onnx

    model = checkpoint.build_model()
    twin = unrolled_copy(model)
    audio, video = example_inputs(model, check_batch)
    start = time.perf_counter()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer notes on the model's own shape checks
        torch.onnx.export(
            twin,
            (audio, video),
            str(out_path),
            dynamo=False,
            opset_version=opset,
            input_names=["audio", "video"],
            output_names=["logits"],
            dynamic_axes={"audio": {0: "batch"}, "video": {0: "batch"}, "logits": {0: "batch"}},
        )
    _add_metadata(out_path, checkpoint)
    seconds = time.perf_counter() - start
    with torch.no_grad():
        expected = model(audio, video).numpy()
    graph = onnx.load(str(out_path)).graph
    return {
        "path": str(out_path),
        "bytes": out_path.stat().st_size,
        "nodes": len(graph.node),
        "inputs": [i.name for i in graph.input],
        "outputs": [o.name for o in graph.output],
        "opset": opset,
        "export_seconds": seconds,
        "check_batch": check_batch,
        "max_abs_logit_diff": float(np.abs(onnx_logits(out_path, audio, video) - expected).max()),
    }


def run_onnx_export(checkpoint: Checkpoint, args: argparse.Namespace) -> int:
    out = args.out
    print(f"exporting {args.checkpoint} to ONNX (unrolled over T={checkpoint.model_config.time_steps}) ...", flush=True)
    summary = export_onnx(checkpoint, out)
    print(
        f"wrote {summary['path']}: {summary['nodes']} nodes, {summary['bytes'] / 2**20:.1f} MiB, opset "
        f"{summary['opset']}, "
        f"inputs {summary['inputs']} -> {summary['outputs']}\n"
        f"onnx.checker passed; onnxruntime vs PyTorch max |logit difference| {summary['max_abs_logit_diff']:.2e} "
        f"on a batch of {summary['check_batch']}"
    )
    return 0
