"""Smoke tests: lava-nc runs on this Python 3.11 setup, bit-exactly as documented.

Network: RingBuffer spike source -> Dense -> LIF -> RingBuffer sink, 10 steps on
CPU, in floating point and in fixed point.  Expected spike trains come from a
short numpy re-statement of lava's LIF/CUBA equations (docs/lava.md).  Every
lava run happens in a forked child with a time limit: a misconfigured lava
network (e.g. a float LIF parameter in fixed point) hangs instead of failing.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import lava_runtime  # installs the import hooks before any lava import
from lava_runtime.guard import LavaRunError
from lava_runtime.guard import run_with_timeout as guarded_run

_REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
T = 10  # time steps
TIMEOUT_S = 25.0  # per lava run; a healthy run takes well under 2 s

# Input spikes, (neurons, time).  Column t is sent at time step t + 1.
SPIKES = np.array(
    [
        [1, 0, 1, 1, 0, 0, 1, 0, 0, 0],
        [0, 1, 1, 0, 0, 1, 0, 0, 1, 0],
        [1, 1, 0, 0, 1, 0, 0, 1, 1, 0],
    ],
    dtype=np.int32,
)

# Floating point: dyadic values keep every float operation exact.
FLOAT_W = np.array([[0.5, -0.5, 1.0], [0.25, -0.375, 0.875], [0.0, 0.875, 0.0]])
FLOAT_LIF = {"du": 0.75, "dv": 0.25, "vth": 1.0, "bias_mant": np.array([0.0625, 0.0625, 0.1875])}

# Fixed point: int32 everywhere.  Chosen so that each fixed-point convention
# (mixed-sign weight truncation of the odd 67/61/-27, du + 1, unshifted bias,
# Dense delay) changes the expected spike train if the reference omits it.
FIXED_W = np.array([[67, 61, -10], [-10, -27, 74], [114, 0, -44]], dtype=np.int32)
FIXED_LIF = {
    "du": 3000,
    "dv": 1024,
    "vth": 82,
    "bias_mant": np.array([19, 58, 4], dtype=np.int32),
    "bias_exp": np.array([5, 6, 5], dtype=np.int32),
}


# --------------------------------------------------------------------------
# Hand-written expectations (lava/proc/lif/models.py, lava/proc/dense/models.py)
# --------------------------------------------------------------------------


def _dense_input(w: np.ndarray, spikes: np.ndarray) -> np.ndarray:
    """Synaptic input reaching the LIF at each step, (neurons, time).

    Dense sends the activation it computed in the previous step, so the LIF
    sees W @ s[t-1] at step t and zero at the first step.
    """
    a = np.zeros((w.shape[0], spikes.shape[1]), dtype=w.dtype)
    a[:, 1:] = w @ spikes[:, :-1].astype(w.dtype)
    return a


def expected_float(w: np.ndarray, du: float, dv: float, vth: float, bias_mant: np.ndarray) -> np.ndarray:
    """u = u(1-du) + a;  v = v(1-dv) + u + bias_mant;  spike v > vth;  reset v = 0."""
    u = np.zeros(w.shape[0])
    v = np.zeros(w.shape[0])
    out = np.zeros((w.shape[0], T))
    for t, a in enumerate(_dense_input(w, SPIKES).T):
        u = u * (1 - du) + a
        v = v * (1 - dv) + u + bias_mant
        out[:, t] = v > vth
        v[v > vth] = 0
    return out


def _effective_fixed_weights(w: np.ndarray) -> np.ndarray:
    """8-bit weights; mixed-sign matrices lose their least significant bit (even values only)."""
    mixed = w.min() < 0 < w.max()
    w = np.clip(w, -256 if mixed else 0, 255).astype(np.int64)
    return (w >> 1) << 1 if mixed else w


def _decay(x: np.ndarray, factor: int) -> np.ndarray:
    """x * factor / 4096, truncated toward zero."""
    return np.sign(x) * ((np.abs(x) * factor) >> 12)


def expected_fixed(
    w: np.ndarray, du: int, dv: int, vth: int, bias_mant: np.ndarray, bias_exp: np.ndarray
) -> np.ndarray:
    """Loihi bit-accurate LIF (PyLifModelBitAcc) with 24-bit u/v.

    u = decay(u, 4096 - (du + 1)) + (a << 6), wrapped to 24 bits
    v = decay(v, 4096 - dv) + u + (bias_mant << bias_exp), clipped to +-(2**23 - 1)
    spike v > (vth << 6);  reset v = 0
    """
    limit = 2**23
    u = np.zeros(w.shape[0], dtype=np.int64)
    v = np.zeros(w.shape[0], dtype=np.int64)
    bias = bias_mant.astype(np.int64) << bias_exp
    out = np.zeros((w.shape[0], T), dtype=np.int64)
    for t, a in enumerate(_dense_input(_effective_fixed_weights(w), SPIKES).T):
        u = _decay(u, 4096 - (du + 1)) + (a << 6)
        u = (u + limit) % (2 * limit) - limit
        v = np.clip(_decay(v, 4096 - dv) + u + bias, -limit + 1, limit - 1)
        out[:, t] = v > (vth << 6)
        v[v > (vth << 6)] = 0
    return out


# --------------------------------------------------------------------------
# Running lava under a time limit (lava_runtime.guard)
# --------------------------------------------------------------------------


def run_with_timeout(fn: Callable[..., np.ndarray], *args: Any, timeout: float = TIMEOUT_S) -> np.ndarray:
    """``lava_runtime.guard.run_with_timeout`` reporting a hang or a failure as a test failure."""
    try:
        return guarded_run(fn, *args, timeout=timeout)
    except LavaRunError as error:
        pytest.fail(str(error))


def run_network(tag: str, w: np.ndarray, lif_kwargs: dict[str, Any], data_dtype: type) -> np.ndarray:
    """Source -> Dense -> LIF -> sink for T steps with ``select_tag=tag``; returns the sink buffer."""
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg
    from lava.proc.dense.process import Dense
    from lava.proc.io.sink import RingBuffer as Sink
    from lava.proc.io.source import RingBuffer as Source
    from lava.proc.lif.process import LIF

    n = w.shape[0]
    source = Source(data=SPIKES.astype(data_dtype))
    dense = Dense(weights=w)
    lif = LIF(shape=(n,), **lif_kwargs)
    sink = Sink(shape=(n,), buffer=T)
    source.s_out.connect(dense.s_in)
    dense.a_out.connect(lif.a_in)
    lif.s_out.connect(sink.a_in)
    try:
        sink.run(condition=RunSteps(num_steps=T), run_cfg=Loihi2SimCfg(select_tag=tag))
        return np.asarray(sink.data.get())
    finally:
        sink.stop()


# --------------------------------------------------------------------------
# Tests
# --------------------------------------------------------------------------


def _assert_nontrivial(spikes: np.ndarray) -> None:
    assert 0 < spikes.sum() < spikes.size, "expectation must mix spikes and silence"
    assert not spikes[:, 0].any(), "Dense delays input by one step: nothing can spike at step 1"


def test_lava_imports_after_hook() -> None:
    """The processes and configs SNNergy uses import on Python 3.11 once the hook is installed."""
    import lava.magma.compiler.var_model as var_model
    from lava.magma.core.run_conditions import RunSteps  # noqa: F401
    from lava.magma.core.run_configs import Loihi1SimCfg, Loihi2SimCfg  # noqa: F401
    from lava.proc.conv.process import Conv  # noqa: F401
    from lava.proc.dense.process import Dense  # noqa: F401
    from lava.proc.io.sink import RingBuffer as Sink  # noqa: F401
    from lava.proc.io.source import RingBuffer as Source  # noqa: F401
    from lava.proc.lif.process import LIF  # noqa: F401
    from lava.proc.sparse.process import Sparse  # noqa: F401

    encoders = var_model.CoreEncoder(), var_model.CoreEncoder()
    assert encoders[0] == encoders[1] and encoders[0].x is not encoders[1].x  # fresh defaults

    lava_runtime.ensure_lava_importable()
    lava_runtime.ensure_lava_dl_importable()
    assert len([f for f in sys.meta_path if type(f).__module__ == "lava_runtime.compat"]) == 2  # idempotent


def test_lava_imports_after_start_method_was_resolved() -> None:
    """lava's import-time ``set_start_method('fork')`` must not fail once the method is already fork."""
    code = (
        "import multiprocessing as mp; mp.get_start_method(); import lava_runtime; "
        "from lava.proc.lif.process import LIF; assert mp.get_start_method() == 'fork'"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [_REPO_ROOT, os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=TIMEOUT_S)
    assert done.returncode == 0, done.stderr


def test_float_network_matches_reference() -> None:
    expected = expected_float(FLOAT_W, **FLOAT_LIF)
    _assert_nontrivial(expected)
    got = run_with_timeout(run_network, "floating_pt", FLOAT_W, FLOAT_LIF, float)
    np.testing.assert_array_equal(got, expected)


def test_fixed_network_matches_reference() -> None:
    expected = expected_fixed(FIXED_W, **FIXED_LIF)
    _assert_nontrivial(expected)
    got = run_with_timeout(run_network, "fixed_pt", FIXED_W, FIXED_LIF, np.int32)
    np.testing.assert_array_equal(got, expected)


def test_timeout_guard_catches_float_scalars_in_fixed_point() -> None:
    """Documented trap: a float LIF parameter in fixed point kills its worker and lava waits for
    it forever; the guard turns it into a failure (the dead worker seen, else the timeout)."""
    bad = {**FIXED_LIF, "vth": 82.5}
    with pytest.raises(pytest.fail.Exception, match="did not finish|ended during the run"):
        run_with_timeout(run_network, "fixed_pt", FIXED_W, bad, np.int32, timeout=3)


# --------------------------------------------------------------------------
# lava-dl: slayer (PyTorch) -> hdf5 -> netx -> Lava, without torchvision
# --------------------------------------------------------------------------

# Two CUBA Dense layers 3 -> 4 -> 2; weights on slayer's 1/64 grid (Loihi's weight scale).
SLAYER_W = (
    np.array([[-29, 49, -19], [-29, 30, 56], [22, -36, 47], [-25, 35, 36]]) / 64,
    np.array([[79, 12, 19, -14], [79, -18, -23, 81]]) / 64,
)
SLAYER_NEURON = {"threshold": 1.0, "current_decay": 0.25, "voltage_decay": 0.1, "requires_grad": False}


def slayer_spikes_and_export(path: str) -> np.ndarray:
    """Run the slayer network on SPIKES (PyTorch, CPU), export it to ``path``, return its output spikes."""
    import h5py
    import torch
    from lava.lib.dl import slayer

    blocks = [slayer.block.cuba.Dense(SLAYER_NEURON, w.shape[1], w.shape[0]) for w in SLAYER_W]
    x = torch.tensor(SPIKES, dtype=torch.float32)[None]  # (batch, neurons, time)
    with torch.no_grad():
        for block, w in zip(blocks, SLAYER_W):
            block.synapse.weight.copy_(torch.tensor(w).reshape(block.synapse.weight.shape))
            x = block(x)  # the first forward pass also fixes the neuron shape needed by export
    with h5py.File(path, "w") as h5:
        layers = h5.create_group("layer")
        for i, block in enumerate(blocks):
            block.export_hdf5(layers.create_group(str(i)))
    return x[0].numpy()


def run_netx(path: str) -> np.ndarray:
    """Load ``path`` with netx and run it on SPIKES in Lava fixed point; returns the sink buffer."""
    from lava.lib.dl import netx
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg
    from lava.proc.io.sink import RingBuffer as Sink
    from lava.proc.io.source import RingBuffer as Source

    net = netx.hdf5.Network(net_config=path)
    source = Source(data=SPIKES.astype(np.int32))
    sink = Sink(shape=net.out.shape, buffer=T)
    source.s_out.connect(net.inp)
    net.out.connect(sink.a_in)
    try:
        net.run(condition=RunSteps(num_steps=T), run_cfg=Loihi2SimCfg(select_tag="fixed_pt"))
        return np.asarray(sink.data.get())
    finally:
        net.stop()


def test_netx_reproduces_slayer_bit_exactly(tmp_path: Any) -> None:
    """netx imports without torchvision and its Lava blocks match slayer's CUBA spikes exactly."""
    path = str(tmp_path / "net.h5")
    expected = slayer_spikes_and_export(path)
    assert 0 < expected.sum() < expected.size and all(expected.any(axis=1)), "need spikes and silence"
    np.testing.assert_array_equal(run_with_timeout(run_netx, path), expected)


def test_slayer_object_detection_fails_clearly_without_torchvision() -> None:
    from lava.lib.dl import slayer

    from lava_runtime.compat import OBJECT_DETECTION_DEPS, missing_modules

    if not missing_modules(OBJECT_DETECTION_DEPS):
        pytest.skip("torchvision and cv2 are installed: the real object_detection package is used")
    with pytest.raises(ImportError, match="torchvision"):
        slayer.obd.YOLOBase  # noqa: B018
    with pytest.raises(ModuleNotFoundError, match="unavailable"):
        import lava.lib.dl.slayer.object_detection.boundingbox  # noqa: F401
