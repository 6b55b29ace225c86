"""``snnergy-export CKPT --target {nir,lava,loihi,onnx} --out PATH`` (also ``snnergy export``).

Parses arguments, validates the checkpoint, and dispatches to the target's exporter.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

TARGETS = ("nir", "lava", "loihi", "onnx")
SUFFIXES = {"nir": ".nir", "lava": ".lava", "loihi": ".loihi", "onnx": ".onnx"}  # default: the checkpoint's name
# the kind of output (snnergy.outputs)
WRITES = {"nir": "nir", "lava": "lava package", "loihi": "lava package", "onnx": "onnx"}


def _onnx(checkpoint, args: argparse.Namespace) -> int:
    from export.onnx_target import UnsupportedModuleError, run_onnx_export

    try:
        return run_onnx_export(checkpoint, args)
    except UnsupportedModuleError as error:
        print(f"snnergy-export: error: {error}", file=sys.stderr)
        return 2


def _nir(checkpoint, args: argparse.Namespace) -> int:
    from export.nir_model import run_nir_export

    return run_nir_export(checkpoint, args)


def _lava(checkpoint, args: argparse.Namespace) -> int:
    from export.lava_package import run_lava_export

    return run_lava_export(checkpoint, args)


# target -> exporter(checkpoint, args) -> exit code
EXPORTERS: dict[str, Callable[..., int]] = {"onnx": _onnx, "nir": _nir, "lava": _lava, "loihi": _lava}


def add_export_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", type=Path, help="SNNergy checkpoint (from `snnergy init` or `snnergy train`)")
    parser.add_argument(
        "--target",
        required=True,
        choices=TARGETS,
        help="what to write: NIR graph; Lava package run by our neuron-core processes (lava) or by stock Lava "
        "processes as Loihi compiles them (loihi, docs/loihi.md); ONNX model",
    )
    parser.add_argument("--out", type=Path, help="output path (file for nir/onnx, directory for lava/loihi)")
    parser.add_argument(
        "--fixed-point",
        action="store_true",
        help="lava, loihi: also write Loihi fixed-point (quantised) parameters, for snnergy simulate --mode fixed",
    )
    parser.add_argument(
        "--force", action="store_true", help="replace an existing --out that is not an export of this target"
    )


def run_export(args: argparse.Namespace) -> int:
    from snnergy.checkpoint import CheckpointError, load_checkpoint
    from snnergy.outputs import OutputError, check_output

    if args.target in SUFFIXES:
        args.out = args.out or Path(args.checkpoint).with_suffix(SUFFIXES[args.target])
    try:
        check_output(args.out, WRITES.get(args.target, "report"), [args.checkpoint], getattr(args, "force", False))
        checkpoint = load_checkpoint(args.checkpoint)
    except (CheckpointError, OutputError) as error:
        print(f"snnergy-export: error: {error}", file=sys.stderr)
        return 2
    exporter = EXPORTERS.get(args.target)
    if exporter is None:
        print(
            f"snnergy-export: error: the '{args.target}' exporter is not available in this version "
            f"(checkpoint {args.checkpoint} is valid: preset {checkpoint.model_config.preset})",
            file=sys.stderr,
        )
        return 2
    return exporter(checkpoint, args)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="snnergy-export",
        description="Export a trained SNNergy checkpoint to NIR, a Lava package (our processes or stock Loihi-form "
        "processes), or ONNX.",
    )
    add_export_arguments(parser)
    parser.add_argument("--debug", action="store_true", help="show the full traceback when the export fails")
    from snnergy.errors import run_reporting_errors

    return run_reporting_errors("snnergy-export", run_export, parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
