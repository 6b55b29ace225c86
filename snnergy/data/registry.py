"""Dataset names -> loaders, so every command selects data the same way.

``make_dataset(name, split, image_size, time_steps, data_root=...)`` returns a Dataset of
``(audio [T,1,S,S], video [T,3,S,S], label)`` with ``class_names``. ``avdigits`` (the
embedded benchmark, built offline) is the default wherever a dataset is optional; the
real datasets need ``data_root``, the directory holding the dataset's own layout.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch.utils.data import Dataset

DEFAULT_DATASET = "avdigits"
DATASETS = ("avdigits", "cremad", "ave", "us8k")


def make_dataset(
    name: str,
    split: str,
    image_size: int,
    time_steps: int,
    data_root: str | Path | None = None,
    cache_dir: str | Path | None = None,
    **options: Any,
) -> Dataset:
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    if name == "avdigits":
        from snnergy.data.avdigits import AVDigits

        return AVDigits(split, image_size, time_steps, cache_dir=cache_dir, **options)
    if data_root is None:
        raise ValueError(f"dataset {name!r} is read from disk: pass --data-root, the directory holding its files")
    return _real_dataset(name, split, image_size, time_steps, Path(data_root), cache_dir, **options)


def dataset_for_model(
    name: str,
    split: str,
    model_config: Any,
    data_root: str | Path | None = None,
    cache_dir: str | Path | None = None,
    **options: Any,
) -> Dataset:
    """A dataset split encoded at the model's resolution and timesteps (what eval, parity,
    energy and the demo feed a checkpoint)."""
    return make_dataset(name, split, model_config.image_size, model_config.time_steps, data_root, cache_dir, **options)


def _real_dataset(
    name: str, split: str, image_size: int, time_steps: int, root: Path, cache_dir, **options: Any
) -> Dataset:
    if name == "cremad":
        from snnergy.data.cremad import CremaD as loader
    elif name == "ave":
        from snnergy.data.ave import AVE as loader
    else:
        from snnergy.data.us8k import UrbanSound8KAV as loader
    return loader(root, split, image_size, time_steps, cache_dir=cache_dir, **options)


def validation_split(dataset: Dataset) -> str:
    """``val`` where the split protocol has one; ``test`` for train/test-only protocols.

    CREMA-D's clip-random 6698/744 protocol of OGM-GE / S-CMRL has no validation split;
    those works select on the test split, and so must we to reproduce them.
    """
    info = getattr(dataset, "split_info", None)
    if info is not None and "val" not in info["splits"]:
        return "test"
    return "val"
