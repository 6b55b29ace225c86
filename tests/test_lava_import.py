"""`import lava` works in this environment as users expect: in a fresh interpreter that never
imports our package, lava-nc's own Dense -> LIF example runs and lava-dl's netx imports."""

from __future__ import annotations

import subprocess
import sys

PLAIN_LAVA = """
import sys
import numpy as np
from lava.magma.core.run_conditions import RunSteps
from lava.magma.core.run_configs import Loihi2SimCfg
from lava.proc.dense.process import Dense
from lava.proc.io.source import RingBuffer
from lava.proc.lif.process import LIF
import lava.lib.dl.netx  # noqa: F401

spikes = np.zeros((2, 8))
spikes[:, ::2] = 1
source = RingBuffer(data=spikes)
dense = Dense(weights=np.array([[2.0, 1.0], [1.0, 3.0]]))
lif = LIF(shape=(2,), du=1.0, dv=0.0, vth=100.0)
source.s_out.connect(dense.s_in)
dense.a_out.connect(lif.a_in)
lif.run(condition=RunSteps(num_steps=8), run_cfg=Loihi2SimCfg(select_tag="floating_pt"))
v = lif.v.get()
lif.stop()
print("v", v.tolist())
print("ours imported:", any(m == "snnergy" or m.startswith(("snnergy.", "export.")) for m in sys.modules))
"""


def test_plain_lava_example_runs_without_importing_snnergy(tmp_path):
    result = subprocess.run(
        [sys.executable, "-c", PLAIN_LAVA], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]
    # spikes on steps 1, 3, 5, 7 reach the LIF (through Dense's one-step delay) on steps 2, 4, 6, 8;
    # with du=1, dv=0 and a threshold out of reach, v sums the weighted spikes: 4 x (2+1) and 4 x (1+3)
    assert "v [12.0, 16.0]" in result.stdout, result.stdout
    assert "ours imported: False" in result.stdout
