"""``snnergy energy`` and ``snnergy firing-rates``: their arguments, and the calls into
:mod:`snnergy.measure`."""

from __future__ import annotations

import argparse
from pathlib import Path

from energy.accounting import CHARGES, ONCE, EnergyConventions
from energy.cost_model import DEFAULT_COST_MODEL, builtin_cost_models
from energy.report import EnergyReport, format_firing_rates, format_terminal, read_firing_rate_table
from snnergy.cli.data import add_data_arguments, dataset_options
from snnergy.measure import DEFAULT_BATCH_SIZE, DEFAULT_SAMPLES, Inputs, energy_report, firing_rate_table
from snnergy.outputs import check_output


def _add_run_options(parser: argparse.ArgumentParser) -> None:
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


def _inputs(args: argparse.Namespace) -> Inputs:
    return Inputs(
        dataset=args.dataset,
        samples=args.samples,
        data_root=args.data_root,
        cache_dir=args.cache_dir,
        split=args.split,
        batch_size=args.batch_size,
        device=args.device,
        progress=not args.no_progress,
        dataset_options=dataset_options(args) or None,
    )


def cmd_energy(args: argparse.Namespace) -> int:

    for path in (args.json, args.markdown, args.png):
        check_output(path, "report", [args.checkpoint])

    data = energy_report(
        args.checkpoint,
        cost_model=args.cost_model,
        conventions=EnergyConventions.named(args.static_input),
        json_path=args.json,
        markdown_path=args.markdown,
        png_path=args.png,
        inputs=_inputs(args),
    )
    print(format_terminal(EnergyReport.from_dict(data)))
    for path in (args.json, args.markdown, args.png):
        if path is not None:
            print(f"wrote {path}")
    return 0


def cmd_firing_rates(args: argparse.Namespace) -> int:

    check_output(args.json, "report", [args.checkpoint])
    data = firing_rate_table(args.checkpoint, _inputs(args), json_path=args.json)
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
        "--static-input",
        choices=CHARGES,
        default=ONCE,
        help="how layers whose input repeats one frame over T are charged: the ANN counterpart and the SNN's "
        "encoding layers run once per inference (default, as Spikformer / QKFormer count), or at every timestep "
        "(for comparison with estimates that charge every step alike); docs/energy.md",
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
