"""The import direction of the four packages, read from the source (no import runs).

Layers, each importing only from itself and the layers before it:

    core      snnergy's model, layers, neurons, data, training, checkpoints
    energy    accounting from spike counts and layer descriptions (knows no export, no Lava)
    export    NIR / Lava package / ONNX writers (may describe energy for the package)
    runtime   lava_runtime: reads packages only, so only export's format, reference executor and stock plan
    workflows snnergy.measure, simulate, demo, benchmark, interop, loihi_finetune: join the others
    cli       snnergy.cli: parses and calls; nothing imports it

A package's ``__main__`` module (``torchrun -m snnergy.train`` runs
``snnergy/train/__main__.py``, which hands its arguments to the CLI) belongs to the command
line layer: nothing imports it. An import under ``if __name__ == "__main__":`` is left out
for the same reason.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("snnergy", "export", "energy", "lava_runtime")
WORKFLOWS = {
    "snnergy.measure",
    "snnergy.simulate",
    "snnergy.demo",
    "snnergy.benchmark",
    "snnergy.interop",
    "snnergy.loihi_finetune",
}
ORDER = ("core", "energy", "export", "runtime", "workflows", "cli")
RUNTIME_MAY_IMPORT = {"export.package_format", "export.nir_reference", "export.stock_plan"}


def layer(module: str) -> str:
    top = module.split(".")[0]
    if module == "snnergy.cli" or module.startswith("snnergy.cli.") or module.endswith(".__main__"):
        return "cli"  # a package's __main__ is a command line entry point (``-m snnergy.train``)
    if module in WORKFLOWS:
        return "workflows"
    return {"snnergy": "core", "energy": "energy", "export": "export", "lava_runtime": "runtime"}[top]


def modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imports_of(path: Path, known: dict[str, Path]) -> set[str]:
    """Our modules ``path`` imports, at module level or inside functions."""
    tree = ast.parse(path.read_text())
    main_blocks = {
        id(sub)
        for node in ast.walk(tree)
        if isinstance(node, ast.If)
        and isinstance(node.test, ast.Compare)
        and getattr(node.test.left, "id", "") == "__name__"
        for sub in ast.walk(node)
    }
    found = set()
    for node in ast.walk(tree):
        if id(node) in main_blocks:
            continue
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return {name for name in found if name in known}


def test_every_import_points_down_the_layers():
    known = modules()
    assert "snnergy.cli" in known and "lava_runtime.network" in known and "snnergy.measure" in known
    wrong = []
    for module, path in sorted(known.items()):
        for target in sorted(imports_of(path, known)):
            here, there = layer(module), layer(target)
            if ORDER.index(there) > ORDER.index(here):
                wrong.append(f"{module} ({here}) imports {target} ({there})")
            elif here == "runtime" and there != "runtime" and target not in RUNTIME_MAY_IMPORT:
                wrong.append(f"{module} (runtime) imports {target}: the runtime reads packages, not the model")
    assert wrong == []


def test_no_import_cycles_between_modules():
    known = modules()
    graph = {module: imports_of(path, known) - {module} for module, path in known.items()}
    cycles = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in sorted(graph[module]):
            if state.get(target) == 1:
                cycles.append(path[path.index(target) :] + [target])
            elif target not in state:
                visit(target, [*path, target])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert cycles == []


def test_the_checker_sees_an_upward_import(tmp_path):
    """The rule is not vacuous: an energy module importing export is caught."""
    known = {"energy.bad": tmp_path / "bad.py", "export.nir_model": tmp_path / "x.py"}
    known["energy.bad"].write_text("def f():\n    from export.nir_model import build_nir_graph\n")
    assert imports_of(known["energy.bad"], known) == {"export.nir_model"}
    assert ORDER.index(layer("export.nir_model")) > ORDER.index(layer("energy.bad"))
