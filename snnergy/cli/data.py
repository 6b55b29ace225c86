"""The command-line options that select data, shared by every command that reads a dataset."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from snnergy.data.registry import DATASETS, DEFAULT_DATASET


def add_data_arguments(parser: argparse.ArgumentParser) -> argparse._ArgumentGroup:
    group = parser.add_argument_group("data")
    group.add_argument(
        "--dataset", default=DEFAULT_DATASET, choices=DATASETS, help="dataset (default: %(default)s, built offline)"
    )
    group.add_argument(
        "--data-root", type=Path, help="directory holding a real dataset's own files (cremad, ave, us8k)"
    )
    group.add_argument(
        "--cache-dir", type=Path, help="preprocessing cache (default: $SNNERGY_CACHE or ~/.cache/snnergy)"
    )
    group.add_argument(
        "--split-mode",
        help="real datasets' split protocol, e.g. cremad: speaker-independent (default), actor-random, clip-random "
        "(see docs/datasets.md)",
    )
    return group


def dataset_options(args: argparse.Namespace) -> dict[str, Any]:
    """Loader keyword options the data arguments carry (beyond name, root and cache)."""
    return {"split_mode": args.split_mode} if args.split_mode else {}
