"""Lava runtime helpers.

Importing this package installs the import hooks of :mod:`lava_runtime.compat`,
so that lava-nc (Python 3.11) and lava-dl's netx (no torchvision) import.
"""

from lava_runtime.compat import ensure_lava_dl_importable, ensure_lava_importable

ensure_lava_importable()
ensure_lava_dl_importable()

__all__ = ["ensure_lava_dl_importable", "ensure_lava_importable"]
