"""Run a package's lava-dl netx chains (``export.netx_chains``) in Lava fixed point.

Each HDF5 file is loaded by stock ``lava.lib.dl.netx.hdf5.Network`` and fed the frames as
graded spikes (the file's ``input_bits`` fractional bits) from a ``RingBuffer``, one sample
per window of ``T`` steps (``reset_interval=T``; netx lets each layer reset one step after
the one before, as each synapse delays by one step). A ``SpikeProbe`` reads every layer's
neurons. Only the package's files are read; the run happens in a guarded child.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from lava_runtime.guard import announce_stopping, run_with_timeout
from lava_runtime.network import Package, read_spike_record

NETX_MESSAGE_BITS = 24


def _run_netx_in_child(package: Package, steps: int, samples: int, workdir: Path) -> dict[str, Any]:
    from lava.lib.dl import netx
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg
    from lava.proc.io.source import RingBuffer

    from lava_runtime import models as M
    from lava_runtime import processes as P

    started = time.perf_counter()
    T = package.time_steps
    shapes, paths, windows, ports, sources = [], [], [], [], []
    for chain in package.manifest["netx"]:
        network = netx.hdf5.Network(
            net_config=str(package.path / chain["file"]),
            input_message_bits=NETX_MESSAGE_BITS,
            reset_interval=T,
            reset_offset=1,
        )
        source = RingBuffer(data=np.load(workdir / f"{chain['input']}.npy"))
        source.s_out.connect(network.inp)
        sources.append((source, network))
        for depth, (population, layer) in enumerate(zip(chain["populations"], network.layers), start=1):
            shapes.append(layer.neuron.s_out.shape)
            paths.append(str(workdir / f"netx.{population}.bits"))
            windows.append((depth, depth + samples * T))
            ports.append(layer.neuron.s_out)
    probe = P.SpikeProbe(shapes=shapes, paths=paths, windows=windows, name="netx_probe")
    for index, port in enumerate(ports):
        port.connect(getattr(probe, f"in{index}"))
    config = Loihi2SimCfg(select_tag="fixed_pt", exception_proc_model_map={probe: M.spike_probe_model(len(ports))})
    anchor = sources[0][0]
    try:
        anchor.run(condition=RunSteps(num_steps=steps), run_cfg=config)
        finished = time.perf_counter()
    finally:
        announce_stopping()
        anchor.stop()
    return {"seconds": finished - started}


def run_netx(package: Package, inputs: dict[str, np.ndarray], timeout: float | None = None) -> dict[str, np.ndarray]:
    """Every netx population's spikes, ``[samples, T, C, H, W]``, for ``inputs`` (modality ->
    ``[samples, T, C, H, W]`` frames)."""
    chains = package.manifest.get("netx", [])
    if not chains:
        return {}
    T = package.time_steps
    samples = len(next(iter(inputs.values())))
    steps = samples * T + max(len(chain["populations"]) for chain in chains) + 1
    with tempfile.TemporaryDirectory(prefix="snnergy-netx-") as tmp:
        work = Path(tmp)
        for chain in chains:
            frames = np.clip(inputs[chain["input"].split(".", 1)[1]], -chain["largest_input"], chain["largest_input"])
            graded = np.round(frames * 2 ** chain["input_bits"]).astype(np.int32)
            sequence = graded.reshape(samples * T, *graded.shape[2:]).transpose(0, 3, 2, 1)  # [t, W, H, C]
            data = np.zeros((*sequence.shape[1:], steps), dtype=np.int32)
            data[..., : samples * T] = np.moveaxis(sequence, 0, -1)
            np.save(work / f"{chain['input']}.npy", data)
        run_with_timeout(_run_netx_in_child, package, steps, samples, work, timeout=timeout or 600)
        spikes = {}
        for chain in chains:
            for population, shape in zip(chain["populations"], chain["shapes"]):
                lava_shape = tuple(shape[::-1])  # netx's neurons are [W, H, C]
                rows = read_spike_record(work / f"netx.{population}.bits", lava_shape).transpose(0, 3, 2, 1)
                spikes[population] = rows.reshape(samples, T, *shape)
    return spikes
