"""Measure a checkpoint's energy and firing rates on real inputs (``snnergy energy``,
``snnergy firing-rates``, the demo and the benchmark).

``energy_report`` and ``firing_rate_table`` load a checkpoint, run real inputs of a
dataset split through it while ``energy.torch_probe`` counts spikes, and return plain
dicts (the JSON documents). A workflow: it joins the model and data (``snnergy``) with the
accounting (``energy``), which itself knows nothing of checkpoints or datasets.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch.utils.data import DataLoader, Dataset, Subset

from energy.accounting import EnergyConventions, NetworkAccount, account
from energy.cost_model import DEFAULT_COST_MODEL, load_cost_model
from energy.firing_rates import firing_rate_table as build_firing_rate_table
from energy.report import (
    build_report,
    plain,
    plot_stages,
    write_json,
    write_markdown,
)
from energy.torch_probe import collect_spike_counts, describe_model
from snnergy.devices import resolve_device

DEFAULT_SAMPLES = 64
DEFAULT_BATCH_SIZE = 16


@dataclass(frozen=True)
class Inputs:
    """The real inputs a measurement runs: the first ``samples`` items of ``split`` of
    ``dataset`` (a registry name, ``snnergy.data.registry``, or a Dataset of ``(audio
    [T,C,S,S], video [T,C,S,S], label)`` items), in batches of ``batch_size`` on ``device``."""

    dataset: str | Dataset = "avdigits"
    samples: int = DEFAULT_SAMPLES
    split: str = "test"
    data_root: str | Path | None = None
    cache_dir: str | Path | None = None
    dataset_options: dict[str, Any] | None = None
    batch_size: int = DEFAULT_BATCH_SIZE
    device: str = "cpu"
    progress: bool = True


def measure(
    checkpoint_path: str | Path, inputs: Inputs, conventions: EnergyConventions | None = None
) -> tuple[NetworkAccount, dict[str, Any]]:
    """Count spikes of ``inputs``; return the account and run metadata."""
    from tqdm import tqdm

    from snnergy.checkpoint import load_checkpoint

    if inputs.samples < 1:
        raise ValueError(f"--samples must be >= 1, got {inputs.samples}")
    if inputs.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {inputs.batch_size}")
    checkpoint = load_checkpoint(checkpoint_path)
    config = checkpoint.model_config
    if isinstance(inputs.dataset, str):
        from snnergy.data.registry import dataset_for_model

        name = inputs.dataset
        data = dataset_for_model(
            name, inputs.split, config, inputs.data_root, inputs.cache_dir, **(inputs.dataset_options or {})
        )
    else:
        name, data = type(inputs.dataset).__name__, inputs.dataset
    if len(data) == 0:
        raise ValueError(f"dataset {name} split {inputs.split} is empty")
    count = min(inputs.samples, len(data))
    model = checkpoint.build_model().to(resolve_device(inputs.device))
    description = describe_model(model)
    loader = DataLoader(Subset(data, range(count)), batch_size=inputs.batch_size, shuffle=False)
    with tqdm(total=count, unit="sample", desc="counting spikes", disable=not inputs.progress) as bar:
        counts = collect_spike_counts(model, description, loader, bar)
    meta = {
        "checkpoint": str(checkpoint_path),
        "dataset": name,
        "split": inputs.split,
        "samples_requested": inputs.samples,
        "model": config.to_dict(),
    }
    return account(description, counts, conventions), meta


def energy_report(
    checkpoint_path: str | Path,
    inputs: Inputs = Inputs(),
    cost_model: str | Path = DEFAULT_COST_MODEL,
    conventions: EnergyConventions | None = None,
    json_path: str | Path | None = None,
    markdown_path: str | Path | None = None,
    png_path: str | Path | None = None,
) -> dict[str, Any]:
    """Energy per stage of a checkpoint on real inputs; writes the requested files; returns the JSON dict."""

    cost = load_cost_model(cost_model)  # fail on a bad cost model before running anything
    network, meta = measure(checkpoint_path, inputs, conventions)
    report = build_report(network, cost, meta)
    data = report.to_dict()
    if json_path is not None:
        write_json(data, json_path)
    if markdown_path is not None:
        write_markdown(report, markdown_path)
    if png_path is not None:
        plot_stages(report, png_path)
    return data


def firing_rate_table(
    checkpoint_path: str | Path, inputs: Inputs = Inputs(), json_path: str | Path | None = None
) -> dict[str, Any]:
    """Firing rates per fusion stage and modality (paper Table 4 format) as a JSON dict."""
    from energy.report import write_json

    network, meta = measure(checkpoint_path, inputs)
    data = {
        "format": "snnergy-firing-rates",
        "format_version": 1,
        "samples": network.samples,
        "time_steps": network.time_steps,
        **plain(build_firing_rate_table(network)),
        "meta": meta,
    }
    if json_path is not None:
        write_json(data, json_path)
    return data
