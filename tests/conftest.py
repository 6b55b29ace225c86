"""Shared test setup.

* ``lava_runtime`` is imported first so its Python 3.11 compatibility hooks are in place
  before any test imports lava (see docs/lava.md).
* The fixture builders (``fixtures_media``) sit next to the tests.
* One default avdigits build per session, in a cache of its own, for tests that go
  through the CLI (which reads the default build).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

import lava_runtime  # noqa: F401  (installs the lava import hooks)

sys.path.insert(0, str(Path(__file__).resolve().parent))


@pytest.fixture(scope="session")
def avdigits_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from snnergy.data.avdigits import build_avdigits

    cache = tmp_path_factory.mktemp("avdigits-cache")
    build_avdigits(cache_dir=cache, progress=False)
    return cache
