"""Lava simulation vs PyTorch CPU inference of the same model, side by side.

    python benchmarks/lava_speed.py runs/demo/best.pt --samples 64 --lanes 16 --out benchmarks/results/lava_speed.json

Exports the checkpoint as a Lava package, then per repeat runs the same test samples
through (a) the Lava process graph (``lava_runtime``, float mode) and (b) the PyTorch
model on CPU in batches of ``--lanes``, interleaved. Lava's compile-and-start time is
reported apart from its run time; the ratio compares run times. Also recorded: the process
count, the memory of the whole Lava process group (PSS), the run's pipeline latency.
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
from snnergy.checkpoint import load_checkpoint
from snnergy.simulate import load_inputs


def torch_seconds(model: torch.nn.Module, audio, video, batch: int) -> float:
    started = time.perf_counter()
    with torch.no_grad():
        for start in range(0, len(audio), batch):
            model(torch.from_numpy(audio[start : start + batch]).float(), torch.from_numpy(video[start : start + batch]).float())
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--dataset", default="avdigits")
    parser.add_argument("--samples", type=int, default=64)
    parser.add_argument("--lanes", type=int, default=16, help="Lava lanes = PyTorch batch size")
    parser.add_argument("--mode", choices=("float", "fixed"), default="float")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, help="JSON file for every repeat and the medians")
    args = parser.parse_args(argv)

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
            result = simulate(package, audio, video, mode=args.mode, lanes=args.lanes)
            pytorch = torch_seconds(model, audio, video, args.lanes)
            repeats.append({"lava_run_s": result.run_seconds, "lava_compile_s": result.compile_seconds, "pytorch_s": pytorch,
                            "steps": result.steps, "memory_mib": result.memory_mib})  # fmt: skip
            print(f"repeat {repeat + 1}/{args.repeats}: Lava {result.run_seconds:.2f} s (+{result.compile_seconds:.1f} s compile), "
                  f"PyTorch {pytorch:.3f} s", flush=True)  # fmt: skip
    samples = len(audio)
    lava_s = statistics.median(r["lava_run_s"] for r in repeats)
    torch_s = statistics.median(r["pytorch_s"] for r in repeats)
    summary = {
        "checkpoint": str(args.checkpoint), "preset_config": checkpoint.model_config.to_dict(), "mode": args.mode,
        "samples": samples, "lanes": result.lanes, "time_steps": time_steps, "steps_simulated": result.steps,
        "pipeline_latency_steps": result.latency, "lava_processes": result.processes, "os_processes": result.os_processes,
        "process_counts": result.process_counts, "lava_memory_mib": statistics.median(r["memory_mib"] for r in repeats),
        "lava_compile_s": statistics.median(r["lava_compile_s"] for r in repeats),
        "lava_run_s": lava_s, "pytorch_s": torch_s,
        "lava_steps_per_s": result.steps / lava_s, "lava_samples_per_s": samples / lava_s,
        "pytorch_timesteps_per_s": samples * time_steps / torch_s, "pytorch_samples_per_s": samples / torch_s,
        "lava_over_pytorch_time": lava_s / torch_s, "torch_threads": torch.get_num_threads(), "repeats": repeats,
    }  # fmt: skip
    print(f"\n{samples} samples, T={time_steps}, {result.lanes} lanes, {result.processes} Lava processes "
          f"({result.os_processes} OS processes, {summary['lava_memory_mib']:.0f} MiB PSS)\n"
          f"Lava    {summary['lava_steps_per_s']:.1f} steps/s, {summary['lava_samples_per_s']:.1f} samples/s (run {lava_s:.2f} s, "
          f"compile {summary['lava_compile_s']:.1f} s)\n"
          f"PyTorch {summary['pytorch_timesteps_per_s']:.1f} timesteps/s, {summary['pytorch_samples_per_s']:.1f} samples/s ({torch_s:.3f} s)\n"
          f"Lava / PyTorch time: {summary['lava_over_pytorch_time']:.1f}x")  # fmt: skip
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(summary, indent=2))
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
