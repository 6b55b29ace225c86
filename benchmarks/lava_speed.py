"""Lava simulation vs PyTorch CPU inference of the same model, side by side.

    python benchmarks/lava_speed.py runs/demo/best.pt --samples 64 --lanes 16 --out benchmarks/results/lava_speed.json

Exports the checkpoint as a Lava package, then per repeat runs the same test samples
through (a) the PyTorch model on CPU in batches of ``--lanes`` and (b) the Lava process
graph (``lava_runtime``, float mode) under each ``--groupings`` (one Lava process per block
and modality, or per population), interleaved. Lava's compile-and-start time is reported
apart from its run time; the ratio compares run times. Also recorded: the process counts,
the memory of the whole Lava process group (PSS, at the end of the run, when every
process holds its state), the run's pipeline latency. A stop signal ends the run with the
Lava processes and their shared memory cleaned up, in one line.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

import lava_runtime  # noqa: F401  (lava import hooks)
from export.lava_package import write_lava_package
from lava_runtime.network import load_package, simulate
from lava_runtime.plan import GROUPINGS
from snnergy.checkpoint import load_checkpoint
from snnergy.errors import run_reporting_errors
from snnergy.simulate import load_inputs


def torch_seconds(model: torch.nn.Module, audio, video, batch: int) -> float:
    started = time.perf_counter()
    with torch.no_grad():
        for start in range(0, len(audio), batch):
            model(
                torch.from_numpy(audio[start : start + batch]).float(),
                torch.from_numpy(video[start : start + batch]).float(),
            )
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--dataset", default="avdigits")
    parser.add_argument("--samples", type=int, default=64)
    parser.add_argument("--lanes", type=int, default=16, help="Lava lanes = PyTorch batch size")
    parser.add_argument("--mode", choices=("float", "fixed"), default="float")
    parser.add_argument(
        "--groupings",
        nargs="+",
        choices=GROUPINGS,
        default=list(GROUPINGS),
        help="Lava process groupings to time side by side (default: all)",
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, help="JSON file for every repeat and the medians")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    args = parser.parse_args(argv)
    return run_reporting_errors("lava_speed", run, args)


def run(args: argparse.Namespace) -> int:
    checkpoint = load_checkpoint(args.checkpoint)
    model = checkpoint.build_model().eval()
    time_steps = checkpoint.model_config.time_steps
    with tempfile.TemporaryDirectory() as tmp:
        write_lava_package(checkpoint, Path(tmp) / "pkg.lava", fixed_point=args.mode == "fixed")
        package = load_package(Path(tmp) / "pkg.lava")
        audio, video, _ = load_inputs(package.manifest, args.dataset, "test", args.samples)
        torch_seconds(model, audio[: args.lanes], video[: args.lanes], args.lanes)  # warm-up
        repeats = []
        for repeat in range(args.repeats):
            row = {"pytorch_s": torch_seconds(model, audio, video, args.lanes)}
            for grouping in args.groupings:
                result = simulate(package, audio, video, mode=args.mode, lanes=args.lanes, grouping=grouping)
                row[grouping] = {
                    "lava_run_s": result.run_seconds,
                    "lava_compile_s": result.compile_seconds,
                    "steps": result.steps,
                    "memory_mib": result.memory_mib,
                    "lava_processes": result.lava_processes,
                    "os_processes": result.os_processes,
                }
            repeats.append(row)
            print(
                f"repeat {repeat + 1}/{args.repeats}: PyTorch {row['pytorch_s']:.3f} s, Lava "
                + ", ".join(
                    f"{g} {row[g]['lava_run_s']:.2f} s (+{row[g]['lava_compile_s']:.1f} s compile)"
                    for g in args.groupings
                ),
                flush=True,
            )
    samples = len(audio)
    torch_s = statistics.median(r["pytorch_s"] for r in repeats)
    summary = {
        "checkpoint": str(args.checkpoint),
        "preset_config": checkpoint.model_config.to_dict(),
        "mode": args.mode,
        "samples": samples,
        "lanes": result.lanes,
        "time_steps": time_steps,
        "steps_simulated": result.steps,
        "pipeline_latency_steps": result.latency,
        "network_processes": result.processes,
        "process_counts": result.process_counts,
        "pytorch_s": torch_s,
        "pytorch_samples_per_s": samples / torch_s,
        "torch_threads": torch.get_num_threads(),
        "groupings": {},
        "repeats": repeats,
    }
    print(
        f"\n{samples} samples, T={time_steps}, {result.lanes} lanes, {result.steps} steps, {result.processes} "
        "network processes; "
        f"PyTorch {torch_s:.3f} s ({samples / torch_s:.1f} samples/s)"
    )
    for grouping in args.groupings:
        lava_s = statistics.median(r[grouping]["lava_run_s"] for r in repeats)
        summary["groupings"][grouping] = {
            "lava_processes": repeats[-1][grouping]["lava_processes"],
            "os_processes": repeats[-1][grouping]["os_processes"],
            "lava_memory_mib": statistics.median(r[grouping]["memory_mib"] for r in repeats),
            "lava_compile_s": statistics.median(r[grouping]["lava_compile_s"] for r in repeats),
            "lava_run_s": lava_s,
            "lava_steps_per_s": result.steps / lava_s,
            "lava_samples_per_s": samples / lava_s,
            "lava_over_pytorch_time": lava_s / torch_s,
        }
        g = summary["groupings"][grouping]
        print(
            f"Lava, grouping {grouping:10s}: {g['lava_processes']:4d} Lava processes ({g['os_processes']} OS "
            "processes, "
            f"{g['lava_memory_mib']:.0f} MiB PSS), run {lava_s:.2f} s, compile {g['lava_compile_s']:.1f} s: "
            f"{g['lava_over_pytorch_time']:.1f}x PyTorch"
        )
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(summary, indent=2))
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
