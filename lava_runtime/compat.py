"""Import-time compatibility hooks for lava-nc 0.10.0 / lava-dl 0.6.0 on Python 3.11.

Nothing here edits site-packages or writes bytecode there: the hooks act on the
module objects while they are imported, so they work on a fresh install and
vanish with this module.  They are idempotent and installed by
``import lava_runtime``, which must happen before the first lava import.

1. ``lava.magma.compiler.var_model`` (:func:`ensure_lava_importable`)
---------------------------------------------------------------------
Why: lava-nc 0.10.0 declares ``Requires-Python <3.11`` and this module indeed
fails on 3.11.  It declares dataclass fields whose default is an *instance of
another dataclass*::

    @dataclass
    class CoreEncoder:
        x: ByteEncoder = ByteEncoder()

Since 3.11 ``dataclasses`` rejects any unhashable default (a dataclass with
``eq=True`` has ``__hash__ = None``): ``ValueError: mutable default ... use
default_factory``.  Nearly every lava import (``Dense``, ``LIF``, ``RunSteps``,
``Loihi2SimCfg``, ...) goes through the compiler, so all of lava fails.

What: a meta-path finder answers for exactly this module, loads its unmodified
source, rewrites the syntax tree and compiles it (never cached).  Inside a
``@dataclass`` body, a field whose default calls a class this module declares as
a ``@dataclass`` (``x: ByteEncoder = ByteEncoder()``) becomes
``x: ByteEncoder = dataclasses.field(default_factory=lambda: ByteEncoder())``.
The only semantic change is the one ``default_factory`` exists for: each
instance gets a fresh default instead of all sharing one mutable object.

2. ``lava.magma.runtime.message_infrastructure.multiprocessing`` (same hook)
----------------------------------------------------------------------------
Why: this module runs ``mp.set_start_method('fork')`` at import (lava's
runtime needs fork).  That raises ``RuntimeError: context has already been
set`` whenever the process already resolved its start method -- e.g. after any
``multiprocessing.get_start_method()``, ``Pool`` or torch ``DataLoader`` with
workers -- even when it resolved to ``'fork'``.  Every ``LIF``/``Dense`` import
reaches this module.

What: the call becomes ``mp.set_start_method('fork',
force=mp.get_start_method(allow_none=True) == 'fork')``: a no-op re-set when
the method already is fork; unchanged (set, or the genuine ``RuntimeError``
when another method such as spawn was chosen) otherwise.

If a future lava release fixes either source, the rewrite finds nothing to do.

3. ``lava.lib.dl.slayer.object_detection`` (:func:`ensure_lava_dl_importable`)
------------------------------------------------------------------------------
Replaced by a placeholder while torchvision/OpenCV are missing, so that slayer
and netx import; see that function.
"""

from __future__ import annotations

import ast
import importlib.abc
import importlib.machinery
import importlib.util
import sys
import types
from collections.abc import Callable, Sequence

#: lava's compiler module with dataclass-instance defaults (fails on Python >= 3.11).
VAR_MODEL = "lava.magma.compiler.var_model"

#: lava's runtime module that calls ``mp.set_start_method('fork')`` at import.
MP_INFRA = "lava.magma.runtime.message_infrastructure.multiprocessing"

_DC_ALIAS = "_snnergy_compat_dataclasses"


def _is_dataclass_decorator(node: ast.expr) -> bool:
    """True for ``@dataclass``, ``@dataclass(...)`` and ``@dataclasses.dataclass``."""
    if isinstance(node, ast.Call):
        node = node.func
    if isinstance(node, ast.Name):
        return node.id == "dataclass"
    return isinstance(node, ast.Attribute) and node.attr == "dataclass"


def _dataclass_defs(tree: ast.Module) -> list[ast.ClassDef]:
    """Top-level classes of the module decorated as dataclasses."""
    return [
        node
        for node in tree.body
        if isinstance(node, ast.ClassDef) and any(_is_dataclass_decorator(d) for d in node.decorator_list)
    ]


def _factory_default(value: ast.expr) -> ast.expr:
    """``<value>`` -> ``dataclasses.field(default_factory=lambda: <value>)``."""
    no_args = ast.arguments(
        posonlyargs=[], args=[], vararg=None, kwonlyargs=[], kw_defaults=[], kwarg=None, defaults=[]
    )
    call = ast.Call(
        func=ast.Attribute(value=ast.Name(id=_DC_ALIAS, ctx=ast.Load()), attr="field", ctx=ast.Load()),
        args=[],
        keywords=[ast.keyword(arg="default_factory", value=ast.Lambda(args=no_args, body=value))],
    )
    return ast.fix_missing_locations(ast.copy_location(call, value))


def _insert_import(tree: ast.Module) -> None:
    """Add ``import dataclasses as <alias>`` after the docstring/__future__ imports."""
    for pos, node in enumerate(tree.body):
        is_doc = pos == 0 and isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
        is_future = isinstance(node, ast.ImportFrom) and node.module == "__future__"
        if not (is_doc or is_future):
            break
    else:
        pos = len(tree.body)
    imp = ast.Import(names=[ast.alias(name="dataclasses", asname=_DC_ALIAS)])
    tree.body.insert(pos, ast.fix_missing_locations(ast.copy_location(imp, tree.body[0])))


def rewrite_dataclass_defaults(tree: ast.Module) -> int:
    """Turn dataclass-instance field defaults into ``default_factory`` in place.

    Returns the number of rewritten fields (0 means the tree is unchanged).
    """
    classes = _dataclass_defs(tree)
    names = {cls.name for cls in classes}
    count = 0
    for cls in classes:
        for stmt in cls.body:
            value = stmt.value if isinstance(stmt, ast.AnnAssign) else None
            if isinstance(value, ast.Call) and isinstance(value.func, ast.Name) and value.func.id in names:
                stmt.value = _factory_default(value)
                count += 1
    if count:
        _insert_import(tree)
    return count


def _is_set_fork_call(node: ast.AST) -> bool:
    """True for ``<name>.set_start_method('fork')`` without keywords."""
    return (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "set_start_method"
        and isinstance(node.func.value, ast.Name)
        and len(node.args) == 1
        and isinstance(node.args[0], ast.Constant)
        and node.args[0].value == "fork"
        and not node.keywords
    )


def rewrite_fork_start_method(tree: ast.Module) -> int:
    """Add ``force=<mp>.get_start_method(allow_none=True) == 'fork'`` to ``set_start_method('fork')``.

    Returns the number of rewritten calls (0 means the tree is unchanged).
    """
    count = 0
    for node in ast.walk(tree):
        if not _is_set_fork_call(node):
            continue
        mp_name = node.func.value.id  # type: ignore[attr-defined]
        current = ast.Call(
            func=ast.Attribute(value=ast.Name(id=mp_name, ctx=ast.Load()), attr="get_start_method", ctx=ast.Load()),
            args=[],
            keywords=[ast.keyword(arg="allow_none", value=ast.Constant(value=True))],
        )
        already_fork = ast.Compare(left=current, ops=[ast.Eq()], comparators=[ast.Constant(value="fork")])
        node.keywords.append(ast.keyword(arg="force", value=ast.copy_location(already_fork, node)))
        count += 1
    ast.fix_missing_locations(tree)
    return count


#: Module name -> in-place AST rewrite applied while that module is imported.
_REWRITES: dict[str, Callable[[ast.Module], int]] = {
    VAR_MODEL: rewrite_dataclass_defaults,
    MP_INFRA: rewrite_fork_start_method,
}


class _RewritingSourceLoader(importlib.machinery.SourceFileLoader):
    """Source loader that rewrites the AST and never reads or writes bytecode caches."""

    def get_code(self, fullname: str) -> types.CodeType:
        path = self.get_filename(fullname)
        tree = ast.parse(self.get_data(path), filename=path)
        _REWRITES[fullname](tree)
        return compile(tree, path, "exec", dont_inherit=True)


class _LavaRewriteFinder:
    """Meta-path finder answering only for the modules in :data:`_REWRITES`."""

    @staticmethod
    def find_spec(
        fullname: str, path: Sequence[str] | None, target: types.ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in _REWRITES:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or not isinstance(spec.loader, importlib.machinery.SourceFileLoader):
            return spec  # not a plain .py install: leave it to the normal machinery
        spec.loader = _RewritingSourceLoader(fullname, spec.origin)
        return spec

    @staticmethod
    def invalidate_caches() -> None:
        """Nothing cached here; required by importlib's finder protocol."""


def ensure_lava_importable() -> None:
    """Install the lava-nc source-rewrite hook once (idempotent); see the module docstring.

    Must run before the first lava import; ``import lava_runtime`` does it.
    Harmless on Python < 3.11, where the rewritten modules behave the same.
    """
    if not any(isinstance(f, _LavaRewriteFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _LavaRewriteFinder())


# --------------------------------------------------------------------------
# lava-dl: slayer's optional object-detection subpackage
# --------------------------------------------------------------------------

#: lava-dl's YOLO/object-detection subpackage; the only importer of cv2/torchvision.
OBJECT_DETECTION = "lava.lib.dl.slayer.object_detection"

#: Imported (unconditionally) by :data:`OBJECT_DETECTION` and nowhere else in lava-dl.
OBJECT_DETECTION_DEPS = ("torchvision", "cv2")


def missing_modules(modules: Sequence[str]) -> list[str]:
    """Top-level modules of ``modules`` that cannot be found."""
    return [m for m in modules if importlib.util.find_spec(m) is None]


def _unavailable_message(name: str, missing: Sequence[str]) -> str:
    return (
        f"{name} is unavailable: lava-dl's object-detection code needs "
        f"{', '.join(missing)} (no torchvision build exists for this torch); see docs/lava.md"
    )


class _UnavailableModule(types.ModuleType):
    """Placeholder whose every public attribute raises the ImportError it stands for."""

    _snnergy_missing: Sequence[str] = ()

    def __getattr__(self, attr: str) -> object:
        if attr.startswith("__"):  # keep import machinery and hasattr() working
            raise AttributeError(attr)
        raise ImportError(_unavailable_message(f"{self.__name__}.{attr}", self._snnergy_missing))


class _UnavailableLoader(importlib.abc.Loader):
    """Creates an :class:`_UnavailableModule` instead of executing the real package."""

    def __init__(self, missing: Sequence[str]) -> None:
        self._missing = missing

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        module = _UnavailableModule(spec.name)
        module._snnergy_missing = self._missing
        return module

    def exec_module(self, module: types.ModuleType) -> None:
        """Nothing to execute: the placeholder has no content."""


class _ObjectDetectionFinder:
    """Meta-path finder that stubs :data:`OBJECT_DETECTION` while its deps are missing."""

    @staticmethod
    def find_spec(
        fullname: str, path: Sequence[str] | None, target: types.ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != OBJECT_DETECTION and not fullname.startswith(OBJECT_DETECTION + "."):
            return None
        missing = missing_modules(OBJECT_DETECTION_DEPS)
        if not missing:
            return None  # deps installed: import the real package
        if fullname != OBJECT_DETECTION:  # explicit submodule import: fail loudly and clearly
            raise ModuleNotFoundError(_unavailable_message(fullname, missing), name=fullname)
        return importlib.machinery.ModuleSpec(fullname, _UnavailableLoader(missing), is_package=True)

    @staticmethod
    def invalidate_caches() -> None:
        """Nothing cached here; required by importlib's finder protocol."""


def ensure_lava_dl_importable() -> None:
    """Let ``lava.lib.dl.slayer`` / ``netx`` import without torchvision and OpenCV (idempotent).

    Why: ``lava/lib/dl/slayer/__init__.py`` ends with ``from . import
    object_detection as obd``, and that YOLO subpackage imports ``cv2`` and
    ``torchvision`` at module level.  ``netx.hdf5`` imports
    ``slayer.neuron.rf``, which runs slayer's ``__init__``, so netx dies on an
    import it never uses.  torchvision has no build for torch 2.13 CPU.

    What: while any of :data:`OBJECT_DETECTION_DEPS` is missing, the single
    module :data:`OBJECT_DETECTION` is replaced by an empty placeholder whose
    public attributes raise ``ImportError`` naming the missing packages.  The
    rest of slayer (neurons, blocks, hdf5 export) and all of netx are the real,
    unmodified code.  Once both packages are installed the hook steps aside.
    """
    if not any(isinstance(f, _ObjectDetectionFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _ObjectDetectionFinder())
