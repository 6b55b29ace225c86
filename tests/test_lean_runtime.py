"""The Lava runtime stays lean: its workers are forked from a process that holds only the
package's arrays and what the process models need, never the PyTorch model's code,
SpikingJelly or the dataset code (issue 16: every forked worker slowly copied that heap)."""

from __future__ import annotations

import subprocess
import sys

from lava_runtime.guard import run_with_timeout

FORBIDDEN = ("snnergy", "spikingjelly", "energy")  # the model/data/training code, its neuron library, accounting
RUNTIME_MODULES = (
    "lava_runtime.network",
    "lava_runtime.plan",
    "lava_runtime.processes",
    "lava_runtime.models",
    "lava_runtime.guard",
)


def _forbidden(modules: list[str]) -> list[str]:
    return sorted(m for m in modules if m.split(".")[0] in FORBIDDEN)


def test_runtime_modules_import_no_model_code_in_a_fresh_interpreter():
    code = f"import sys\nimport {', '.join(RUNTIME_MODULES)}\nprint('\\n'.join(sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    modules = result.stdout.split()
    assert "lava_runtime.models" in modules and "lava.magma.core.process.process" in modules
    assert _forbidden(modules) == []
    # of export, only the package format and the reference executor the plan takes its shapes from
    assert sorted(m for m in modules if m.startswith("export.")) == ["export.nir_reference", "export.package_format"]


def test_the_guarded_child_does_not_inherit_the_callers_modules():
    import snnergy.model  # noqa: F401  (the caller holds model code; the child must not)

    assert _forbidden(list(sys.modules))
    child_modules = run_with_timeout(eval, "sorted(__import__('sys').modules)", timeout=120)
    assert "lava_runtime.guard" in child_modules
    assert _forbidden(child_modules) == []
