"""Make ``import lava`` work in this environment without importing our package first.

lava-nc 0.10.0 does not import on Python 3.11 without the hooks of
:mod:`lava_runtime.compat`. ``python -m lava_runtime.startup`` (run by ``make install``)
writes a ``.pth`` file into the environment's site-packages; Python runs its one line at
every interpreter start, which installs those hooks (lazy import finders: nothing of lava
is imported until a program imports it). A user's own Lava script or a lava-dl tutorial
then runs in this environment as it would on Python 3.10.
"""

from __future__ import annotations

import sys
import sysconfig
from pathlib import Path

PTH_NAME = "snnergy_lava_compat.pth"  # sorts after the editable install's own .pth, which makes lava_runtime importable
PTH_LINE = 'import sys; exec("try:\\n import lava_runtime\\nexcept ImportError:\\n pass")\n'


def pth_path() -> Path:
    return Path(sysconfig.get_paths()["purelib"]) / PTH_NAME


def install() -> Path:
    path = pth_path()
    path.write_text(PTH_LINE)
    return path


if __name__ == "__main__":
    print(f"wrote {install()} (lava's Python 3.11 compatibility hooks at interpreter start)", file=sys.stderr)
