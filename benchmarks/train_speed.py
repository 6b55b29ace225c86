"""Training throughput of a preset: samples/s of full optimisation steps, per device, side by side.

    python benchmarks/train_speed.py --preset tiny --devices cpu [cuda] --out benchmarks/results/train_speed.json

Each repeat times ``--steps`` AdamW steps (forward, backward, clip, update) on a fixed
random batch after warm-up steps; devices are interleaved per repeat so a busy machine
affects all of them alike. Reports medians, IQRs and, with two devices, the speed ratio.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
from torch import nn

from snnergy.config import load_preset
from snnergy.devices import resolve_device
from snnergy.model import build_model


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def make_step(preset: str, batch: int, device: torch.device, amp: bool):
    """A closure running one optimisation step on a fixed batch; returns its sample count."""
    config = load_preset(preset)
    model = build_model(config).to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(0)
    size, steps = config.image_size, config.time_steps
    audio = torch.randn(batch, steps, config.audio_channels, size, size, generator=generator).to(device)
    video = torch.rand(batch, steps, config.video_channels, size, size, generator=generator).to(device)
    labels = torch.randint(0, config.num_classes, (batch,), generator=generator).to(device)
    use_amp = amp and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)

    def step() -> int:
        with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=use_amp):
            loss = nn.functional.cross_entropy(model(audio, video).float(), labels)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        scaler.step(optimizer)
        scaler.update()
        return batch

    return step


def quartiles(values: list[float]) -> tuple[float, float]:
    q = statistics.quantiles(values, n=4) if len(values) > 1 else [values[0]] * 3
    return q[0], q[2]


def benchmark(preset: str, devices: list[str], batch: int, steps: int, repeats: int, warmup: int, amp: bool) -> dict:
    resolved = [resolve_device(d) for d in devices]
    runners = {str(d): (d, make_step(preset, batch, d, amp)) for d in resolved}
    for device, step in runners.values():
        for _ in range(warmup):
            step()
        _sync(device)
    rates: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(repeats):
        for name, (device, step) in runners.items():
            _sync(device)
            start = time.perf_counter()
            samples = sum(step() for _ in range(steps))
            _sync(device)
            rates[name].append(samples / (time.perf_counter() - start))
    summary = {}
    for name, values in rates.items():
        low, high = quartiles(values)
        summary[name] = {"median_samples_per_s": statistics.median(values), "iqr": [low, high], "repeats": values}
    result = {
        "preset": preset,
        "batch_size": batch,
        "steps_per_repeat": steps,
        "threads": torch.get_num_threads(),
        "amp_on_cuda": amp,
        "devices": summary,
    }
    if len(summary) == 2:
        (a, sa), (b, sb) = summary.items()
        result["ratio"] = {f"{b}/{a}": sb["median_samples_per_s"] / sa["median_samples_per_s"]}
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--devices", nargs="+", default=["cpu"], help="e.g. cpu cuda")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=5, help="optimisation steps per timed repeat")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--no-amp", action="store_true", help="no mixed precision on CUDA")
    parser.add_argument("--out", type=Path, help="write the result as JSON")
    args = parser.parse_args(argv)
    result = benchmark(
        args.preset, args.devices, args.batch_size, args.steps, args.repeats, args.warmup, not args.no_amp
    )
    for name, stats in result["devices"].items():
        low, high = stats["iqr"]
        print(
            f"{args.preset} on {name}: {stats['median_samples_per_s']:.1f} samples/s (IQR {low:.1f}-{high:.1f}), "
            f"batch {args.batch_size}"
        )
    for label, ratio in result.get("ratio", {}).items():
        print(f"speed ratio {label}: {ratio:.1f}x")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2))
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
