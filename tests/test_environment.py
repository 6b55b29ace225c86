"""The pinned toolchain imports together: torch 2.13 CPU, SpikingJelly, NIR, nirtorch, norse, ONNX, Lava."""

from __future__ import annotations

from importlib import metadata

import pytest

PINNED = {
    "torch": "2.13.0",
    "spikingjelly": "2.0.0",
    "nir": "1.0.8",
    "nirtorch": "2.6",
    "norse": "1.1.0",
    "lava-nc": "0.10.0",
    "lava-dl": "0.6.0",
}


@pytest.mark.parametrize("package, version", sorted(PINNED.items()))
def test_pinned_versions(package, version):
    assert metadata.version(package).split("+")[0] == version


def test_numpy_stays_below_2_for_lava():
    import numpy

    assert int(numpy.__version__.split(".")[0]) == 1


def test_toolchain_imports_together():
    import nir
    import nirtorch
    import norse.torch
    import onnx
    import onnxruntime
    import torch
    from lava.lib.dl import netx
    from lava.proc.dense.process import Dense
    from lava.proc.lif.process import LIF

    import lava_runtime  # noqa: F401  (hooks first)

    assert callable(norse.torch.from_nir) and hasattr(nir, "read") and hasattr(nirtorch, "nir_to_torch")
    assert onnxruntime.get_available_providers() and onnx.__version__
    assert torch.__version__.startswith("2.13.0")
    assert Dense and LIF and netx.hdf5.Network
