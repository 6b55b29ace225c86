"""``snnergy energy`` and ``snnergy firing-rates``: plain functions plus their argparse wiring.

``energy_report`` and ``firing_rate_table`` load a checkpoint, run real inputs of a
dataset split through it while ``energy.torch_probe`` counts spikes, and return plain
dicts (the JSON documents). ``add_energy_commands(subparsers)`` registers both commands
on the ``snnergy`` parser; ``python -m energy.commands`` runs them standalone.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from torch.utils.data import DataLoader, Dataset, Subset

from energy.accounting import NetworkAccount, account
from energy.cost_model import DEFAULT_COST_MODEL, builtin_cost_models, load_cost_model
from energy.firing_rates import firing_rate_table as build_firing_rate_table
from energy.report import (
    EnergyReport,
    build_report,
    format_firing_rates,
    format_terminal,
    plain,
    plot_stages,
    read_firing_rate_table,
    write_json,
    write_markdown,
)
from energy.torch_probe import collect_spike_counts, describe_model
from snnergy.data.options import dataset_options as options_from_args
from snnergy.devices import resolve_device
from snnergy.outputs import check_output

DEFAULT_SAMPLES = 64
DEFAULT_BATCH_SIZE = 16


def measure(
    checkpoint_path: str | Path,
    dataset: str | Dataset,
    samples: int,
    data_root: str | Path | None = None,
    cache_dir: str | Path | None = None,
    split: str = "test",
    batch_size: int = DEFAULT_BATCH_SIZE,
    device: str = "cpu",
    progress: bool = True,
    dataset_options: dict[str, Any] | None = None,
) -> tuple[NetworkAccount, dict[str, Any]]:
    """Count spikes of the first ``samples`` items of a split; return the account and run metadata.

    ``dataset`` is a registry name (``snnergy.data.registry``) or a Dataset of
    ``(audio [T,C,S,S], video [T,C,S,S], label)`` items.
    """
    from tqdm import tqdm

    from snnergy.checkpoint import load_checkpoint

    if samples < 1:
        raise ValueError(f"--samples must be >= 1, got {samples}")
    if batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {batch_size}")
    checkpoint = load_checkpoint(checkpoint_path)
    config = checkpoint.model_config
    if isinstance(dataset, str):
        from snnergy.data.registry import dataset_for_model

        name = dataset
        data = dataset_for_model(dataset, split, config, data_root, cache_dir, **(dataset_options or {}))
    else:
        name, data = type(dataset).__name__, dataset
    if len(data) == 0:
        raise ValueError(f"dataset {name} split {split} is empty")
    count = min(samples, len(data))
    model = checkpoint.build_model().to(resolve_device(device))
    description = describe_model(model)
    loader = DataLoader(Subset(data, range(count)), batch_size=batch_size, shuffle=False)
    with tqdm(total=count, unit="sample", desc="counting spikes", disable=not progress) as bar:
        counts = collect_spike_counts(model, description, loader, bar)
    meta = {
        "checkpoint": str(checkpoint_path),
        "dataset": name,
        "split": split,
        "samples_requested": samples,
        "model": config.to_dict(),
    }
    return account(description, counts), meta


def energy_report(
    checkpoint_path: str | Path,
    dataset: str | Dataset = "avdigits",
    samples: int = DEFAULT_SAMPLES,
    cost_model: str | Path = DEFAULT_COST_MODEL,
    json_path: str | Path | None = None,
    markdown_path: str | Path | None = None,
    png_path: str | Path | None = None,
    data_root: str | Path | None = None,
    cache_dir: str | Path | None = None,
    split: str = "test",
    batch_size: int = DEFAULT_BATCH_SIZE,
    device: str = "cpu",
    progress: bool = True,
    dataset_options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Energy per stage of a checkpoint on real inputs; writes the requested files; returns the JSON dict."""

    cost = load_cost_model(cost_model)  # fail on a bad cost model before running anything
    network, meta = measure(
        checkpoint_path, dataset, samples, data_root, cache_dir, split, batch_size, device, progress, dataset_options
    )
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
    checkpoint_path: str | Path,
    dataset: str | Dataset = "avdigits",
    samples: int = DEFAULT_SAMPLES,
    json_path: str | Path | None = None,
    data_root: str | Path | None = None,
    cache_dir: str | Path | None = None,
    split: str = "test",
    batch_size: int = DEFAULT_BATCH_SIZE,
    device: str = "cpu",
    progress: bool = True,
    dataset_options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Firing rates per fusion stage and modality (paper Table 4 format) as a JSON dict."""
    from energy.report import write_json

    network, meta = measure(
        checkpoint_path, dataset, samples, data_root, cache_dir, split, batch_size, device, progress, dataset_options
    )
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


# ---------------------------------------------------------------------------- CLI


def _add_run_options(parser: argparse.ArgumentParser) -> None:
    from snnergy.data.options import add_data_arguments
    from snnergy.devices import DEVICES

    parser.add_argument("checkpoint", type=Path, help="SNNergy checkpoint (from `snnergy init` or `snnergy train`)")
    group = add_data_arguments(parser)
    group.add_argument("--split", default="test", help="split whose first samples are run (default: %(default)s)")
    group.add_argument(
        "--samples", type=int, default=DEFAULT_SAMPLES, help="number of samples to run (default: %(default)s)"
    )
    group.add_argument(
        "--batch-size", type=int, default=DEFAULT_BATCH_SIZE, help="samples per forward (default: %(default)s)"
    )
    group.add_argument("--device", default="cpu", choices=DEVICES, help="where to run (default: %(default)s)")
    group.add_argument("--no-progress", action="store_true", help="no progress bar")


def _run_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    return dict(
        dataset=args.dataset,
        samples=args.samples,
        data_root=args.data_root,
        cache_dir=args.cache_dir,
        split=args.split,
        batch_size=args.batch_size,
        device=args.device,
        progress=not args.no_progress,
        dataset_options=options_from_args(args) or None,
    )


def cmd_energy(args: argparse.Namespace) -> int:

    for path in (args.json, args.markdown, args.png):
        check_output(path, "report", [args.checkpoint])

    data = energy_report(
        args.checkpoint,
        cost_model=args.cost_model,
        json_path=args.json,
        markdown_path=args.markdown,
        png_path=args.png,
        **_run_kwargs(args),
    )
    print(format_terminal(EnergyReport.from_dict(data)))
    for path in (args.json, args.markdown, args.png):
        if path is not None:
            print(f"wrote {path}")
    return 0


def cmd_firing_rates(args: argparse.Namespace) -> int:

    check_output(args.json, "report", [args.checkpoint])
    data = firing_rate_table(args.checkpoint, json_path=args.json, **_run_kwargs(args))
    print(f"Firing rates: {data['samples']} samples, T={data['time_steps']} (paper Table 4 format)\n")
    print(format_firing_rates(read_firing_rate_table(data)))
    if args.json is not None:
        print(f"wrote {args.json}")
    return 0


def add_energy_commands(subparsers: argparse._SubParsersAction) -> None:
    """Register ``energy`` and ``firing-rates`` on the ``snnergy`` command's subparsers."""
    energy = subparsers.add_parser(
        "energy",
        help="energy per stage from real spike counts (SOPs, MACs, pJ/uJ, ANN ratio) under a cost model",
        description="Run the first --samples items of a dataset split through a checkpoint, count the spikes "
        "arriving at every synaptic layer, and report SOPs, MACs and energy per inference for stem, stage1-3 "
        "and head, with the ANN-equivalent energy. Conventions: docs/energy.md.",
    )
    _add_run_options(energy)
    out = energy.add_argument_group("cost model and outputs")
    out.add_argument(
        "--cost-model",
        default=DEFAULT_COST_MODEL,
        help=f"built-in cost model ({', '.join(builtin_cost_models())}) or the path of a YAML/JSON cost model file "
        "(default: %(default)s)",
    )
    out.add_argument(
        "--json", type=Path, help="write the report as JSON (stages, total, layers, populations, firing rates)"
    )
    out.add_argument("--markdown", type=Path, help="write the report as Markdown")
    out.add_argument("--png", type=Path, help="write a bar chart of energy and firing rate per stage")
    energy.set_defaults(func=cmd_energy)

    rates = subparsers.add_parser(
        "firing-rates",
        help="firing rates per fusion stage and modality: Q, K, Attn, MLP layer 1/2 (paper Table 4 format)",
        description="Run the first --samples items of a dataset split through a checkpoint and print the firing "
        "rates of the Q, K (V for SSA), attention-mask and MLP neurons per fusion stage and modality, averaged "
        "over the blocks of a stage and over CMQKA's spatial and temporal pathways.",
    )
    _add_run_options(rates)
    rates.add_argument("--json", type=Path, help="write the table as JSON")
    rates.set_defaults(func=cmd_firing_rates)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m energy.commands", description="SNNergy energy accounting")
    add_energy_commands(parser.add_subparsers(dest="command", required=True, metavar="COMMAND"))
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except ValueError as error:
        print(f"{args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
