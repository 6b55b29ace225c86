"""CMQKA vs quadratic cross-modal SSA: cost of ONE bidirectional fusion block as N grows.

    python benchmarks/fusion_scaling.py --device cpu            # the paper's Figures 4-6
    python benchmarks/fusion_scaling.py --device cuda           # same script on a GPU
    python benchmarks/fusion_scaling.py --quick                 # smoke run

Both blocks (``snnergy.layers.block.CrossModalBlock`` of kind ``cmqka`` and ``ssa``) get
the same spike inputs ``[T, B, D, N]`` at D=96, 8 heads, for token grids of growing side.
Per size and method, measured side by side (methods interleaved in every repeat, so load
on the machine affects both alike):

* FLOPs: analytic (Table 5: ``N D^2`` vs ``N^2 D``) and counted by
  ``torch.utils.flop_counter.FlopCounterMode`` on a forward pass (matmuls and convs);
* wall time of a forward (eval, no grad) and of a forward + backward (train): medians and
  IQR over repeats after a warm-up;
* memory: on CPU, the bytes autograd saves for backward (training memory) and the peak
  bytes of live tensors created during a no-grad forward (tracked per storage through a
  dispatch mode); on CUDA, ``torch.cuda.max_memory_allocated`` for both passes;
* SSA/CMQKA ratios per size and the growth exponent of every metric in N (least-squares
  slope of log metric on log N, over sizes with N >= ``--fit-min-tokens``).

``--part attention`` measures only the two attention directions (what differs between
the methods; the projections and MLP around them are the same O(N D^2) in both).

Outputs: ``<out>/fusion_scaling_<part>_<device>.json`` (raw repeats and summary), ``.md`` (table)
and ``.png`` (log-log plots).
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import statistics
import time
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

from energy.complexity import cmqka_ops, ssa_ops
from snnergy.config import load_preset
from snnergy.layers.block import CrossModalBlock

METHODS = ("cmqka", "ssa")
PARTS = ("block", "attention")
ANALYTIC = {"cmqka": cmqka_ops, "ssa": ssa_ops}


class LiveBytes(TorchDispatchMode):
    """Peak bytes of storages created by ops and still alive (CPU memory of a forward)."""

    def __init__(self) -> None:
        super().__init__()
        self.live: dict[int, int] = {}
        self.current = 0
        self.peak = 0

    def _release(self, key: int) -> None:
        self.current -= self.live.pop(key, 0)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for tensor in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(tensor, torch.Tensor):
                storage = tensor.untyped_storage()
                key = storage.data_ptr()
                if key and key not in self.live:
                    self.live[key] = storage.nbytes()
                    self.current += storage.nbytes()
                    weakref.finalize(tensor, self._release, key)
        self.peak = max(self.peak, self.current)
        return out


class BidirectionalAttention(torch.nn.Module):
    """Only the two attention directions of a block (no residuals, no MLP)."""

    def __init__(self, block: CrossModalBlock):
        super().__init__()
        self.attn = block.attn

    def forward(self, audio: torch.Tensor, video: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.attn["audio"](audio, video), self.attn["video"](video, audio)


def saved_bytes(block: CrossModalBlock, audio: torch.Tensor, video: torch.Tensor) -> int:
    """Bytes autograd keeps for backward during a training forward."""
    total = 0

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        nonlocal total
        total += tensor.numel() * tensor.element_size()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        block(audio, video)
    return total


def counted_flops(block: CrossModalBlock, audio: torch.Tensor, video: torch.Tensor) -> int:
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        block(audio, video)
    return int(counter.get_total_flops())


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn: Callable[[], Any], device: torch.device) -> float:
    _sync(device)
    start = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - start


def _forward(block: CrossModalBlock, audio: torch.Tensor, video: torch.Tensor) -> None:
    block.eval()
    with torch.no_grad():
        block(audio, video)


def _forward_backward(block: CrossModalBlock, audio: torch.Tensor, video: torch.Tensor) -> None:
    block.train()
    a, v = block(audio, video)
    (a.sum() + v.sum()).backward()
    block.zero_grad(set_to_none=True)


def _reset(block: CrossModalBlock) -> None:
    from spikingjelly.activation_based import functional

    functional.reset_net(block)


def memory(block: CrossModalBlock, audio: torch.Tensor, video: torch.Tensor, device: torch.device) -> dict[str, int]:
    if device.type == "cuda":
        result = {}
        for name, fn in (("forward_peak_bytes", _forward), ("train_peak_bytes", _forward_backward)):
            _reset(block)
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)
            base = torch.cuda.memory_allocated(device)
            fn(block, audio, video)
            _sync(device)
            result[name] = torch.cuda.max_memory_allocated(device) - base
        return result
    _reset(block)
    block.eval()
    tracker = LiveBytes()
    with torch.no_grad(), tracker:
        block(audio, video)
    _reset(block)
    block.train()
    return {"forward_peak_bytes": tracker.peak, "train_saved_bytes": saved_bytes(block, audio, video)}


def spikes(shape: tuple[int, ...], rate: float, seed: int, device: torch.device) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return (torch.rand(shape, generator=generator) < rate).float().to(device)


def ssa_fits(tokens: int, time_steps: int, batch: int, heads: int, limit_bytes: float) -> bool:
    """Whether SSA's N x N score tensors (a few live at once in training) fit the limit."""
    return 4 * time_steps * batch * heads * tokens * tokens * 4 <= limit_bytes


def fit_exponent(tokens: list[int], values: list[float]) -> float | None:
    points = [(math.log(n), math.log(v)) for n, v in zip(tokens, values) if v > 0]
    if len(points) < 2:
        return None
    mean_x = sum(x for x, _ in points) / len(points)
    mean_y = sum(y for _, y in points) / len(points)
    num = sum((x - mean_x) * (y - mean_y) for x, y in points)
    den = sum((x - mean_x) ** 2 for x, _ in points)
    return num / den


def _stats(values: list[float]) -> dict[str, Any]:
    q = statistics.quantiles(values, n=4) if len(values) > 1 else [values[0]] * 3
    return {"median": statistics.median(values), "iqr": [q[0], q[2]], "repeats": values}


def run(
    sides: list[int],
    dim: int,
    time_steps: int,
    batch: int,
    repeats: int,
    device_name: str,
    memory_limit_gib: float,
    rate: float = 0.15,
    progress: bool = True,
    part: str = "block",
) -> dict[str, Any]:
    """Measure every method at every size; returns the JSON-ready result."""
    from tqdm import tqdm

    device = torch.device(device_name)
    config = load_preset("s", embed_dim=dim, time_steps=time_steps)
    torch.manual_seed(0)
    blocks = {m: CrossModalBlock(dim, m, config).to(device) for m in METHODS}
    if part == "attention":
        blocks = {m: BidirectionalAttention(block) for m, block in blocks.items()}
    rows: list[dict[str, Any]] = []
    skipped: list[str] = []
    for side in tqdm(sides, desc="token grids", disable=not progress):
        tokens = side * side
        shape = (time_steps, batch, dim, tokens)
        audio, video = spikes(shape, rate, 1, device), spikes(shape, rate, 2, device)
        methods = [
            m
            for m in METHODS
            if m != "ssa" or ssa_fits(tokens, time_steps, batch, config.num_heads, memory_limit_gib * 2**30)
        ]
        if "ssa" not in methods:
            skipped.append(f"ssa at {side}x{side}: its N x N scores exceed --memory-limit-gib {memory_limit_gib}")
        row: dict[str, Any] = {"side": side, "tokens": tokens}
        for method in methods:
            block = blocks[method]
            row[method] = {
                "analytic_ops": ANALYTIC[method](tokens, dim),
                "counted_flops": counted_flops(block, audio, video),
                **memory(block, audio, video, device),
            }
            for fn in (_forward, _forward_backward):  # warm-up
                _reset(block)
                fn(block, audio, video)
        times: dict[str, dict[str, list[float]]] = {m: {"forward_s": [], "train_s": []} for m in methods}
        for _ in range(repeats):
            for method in methods:
                for key, fn in (("forward_s", _forward), ("train_s", _forward_backward)):
                    _reset(blocks[method])
                    run = functools.partial(fn, blocks[method], audio, video)
                    times[method][key].append(_timed(run, device))
        for method in methods:
            row[method].update({key: _stats(values) for key, values in times[method].items()})
        rows.append(row)
    return {
        "device": str(device),
        "part": part,
        "dim": dim,
        "heads": config.num_heads,
        "time_steps": time_steps,
        "batch": batch,
        "spike_rate": rate,
        "repeats": repeats,
        "threads": torch.get_num_threads(),
        "rows": rows,
        "skipped": skipped,
    }


METRICS = {
    "time forward": lambda r: r["forward_s"]["median"],
    "time fwd+bwd": lambda r: r["train_s"]["median"],
    "counted FLOPs": lambda r: r["counted_flops"],
}


def summarise(result: dict[str, Any], fit_min_tokens: int) -> dict[str, Any]:
    memory_keys = [
        k for k in ("forward_peak_bytes", "train_saved_bytes", "train_peak_bytes") if k in result["rows"][0]["cmqka"]
    ]
    metrics = dict(METRICS, **{k: (lambda r, k=k: r[k]) for k in memory_keys})
    exponents: dict[str, dict[str, float | None]] = {}
    for method in METHODS:
        rows = [r for r in result["rows"] if method in r and r["tokens"] >= fit_min_tokens]
        exponents[method] = {
            name: fit_exponent([r["tokens"] for r in rows], [get(r[method]) for r in rows])
            for name, get in metrics.items()
        }
    ratios = []
    for r in result["rows"]:
        if "ssa" in r:
            ratios.append(
                {"side": r["side"], **{name: get(r["ssa"]) / get(r["cmqka"]) for name, get in metrics.items()}}
            )
    largest = max((r for r in ratios), key=lambda r: r["side"], default=None)
    targets = {
        "cmqka_time_exponent_le_1.1": (exponents["cmqka"]["time fwd+bwd"] or 99) <= 1.1,
        "cmqka_memory_exponent_le_1.1": all((exponents["cmqka"][k] or 99) <= 1.1 for k in memory_keys),
        "largest_grid": f"{largest['side']}x{largest['side']}" if largest else None,
        "ssa_over_cmqka_time_at_largest_ge_10": bool(largest and largest["time fwd+bwd"] >= 10),
        "ssa_over_cmqka_memory_at_largest_ge_10": bool(largest and all(largest[k] >= 10 for k in memory_keys)),
    }
    return {
        "fit_min_tokens": fit_min_tokens,
        "exponents": exponents,
        "ratios_ssa_over_cmqka": ratios,
        "targets": targets,
    }


def _fmt_bytes(n: float) -> str:
    return f"{n / 2**20:.1f} MiB" if n >= 2**20 else f"{n / 2**10:.0f} KiB"


def markdown(result: dict[str, Any], summary: dict[str, Any]) -> str:
    mem_key = "train_saved_bytes" if "train_saved_bytes" in result["rows"][0]["cmqka"] else "train_peak_bytes"
    lines = [
        ("One bidirectional fusion block" if result["part"] == "block" else "Both attention directions of a block")
        + f", D={result['dim']}, {result['heads']} heads, T={result['time_steps']}, "
        f"batch {result['batch']}, {result['device']} ({result['threads']} threads), median of {result['repeats']} "
        "repeats.",
        "",
        "| grid | N | CMQKA fwd+bwd | SSA fwd+bwd | time ratio | CMQKA train mem | SSA train mem | mem ratio | "
        "CMQKA FLOPs | SSA FLOPs |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        c = r["cmqka"]
        s = r.get("ssa")
        ssa_cells = (
            [
                f"{s['train_s']['median'] * 1e3:.1f} ms",
                f"{s['train_s']['median'] / c['train_s']['median']:.1f}x",
                _fmt_bytes(c[mem_key]),
                _fmt_bytes(s[mem_key]),
                f"{s[mem_key] / c[mem_key]:.1f}x",
                f"{c['counted_flops'] / 1e6:.1f}M",
                f"{s['counted_flops'] / 1e6:.1f}M",
            ]
            if s
            else ["skipped", "-", _fmt_bytes(c[mem_key]), "-", "-", f"{c['counted_flops'] / 1e6:.1f}M", "-"]
        )
        lines.append(
            f"| {r['side']}x{r['side']} | {r['tokens']} | {c['train_s']['median'] * 1e3:.1f} ms | "
            + " | ".join(ssa_cells)
            + " |"
        )
    lines += [
        "",
        f"Growth exponent in N (fit over N >= {summary['fit_min_tokens']}):",
        "",
        "| metric | CMQKA | SSA |",
        "|---|---|---|",
    ]
    for name in summary["exponents"]["cmqka"]:
        c, s = summary["exponents"]["cmqka"][name], summary["exponents"]["ssa"][name]
        lines.append(
            f"| {name} | {c:.2f} | {s:.2f} |" if c is not None and s is not None else f"| {name} | {c} | {s} |"
        )
    lines += ["", "Targets: " + ", ".join(f"{k}: {v}" for k, v in summary["targets"].items())]
    lines += [f"Skipped: {s}" for s in result["skipped"]]
    return "\n".join(lines)


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    mem_key = "train_saved_bytes" if "train_saved_bytes" in result["rows"][0]["cmqka"] else "train_peak_bytes"
    panels = [
        ("fwd+bwd time (s)", lambda r: r["train_s"]["median"]),
        (f"{mem_key.replace('_', ' ')}", lambda r: r[mem_key]),
        ("counted forward FLOPs", lambda r: r["counted_flops"]),
    ]
    fig, axes = plt.subplots(1, 3, figsize=(13, 4))
    for ax, (title, get) in zip(axes, panels):
        for method, marker in (("cmqka", "o"), ("ssa", "s")):
            rows = [r for r in result["rows"] if method in r]
            ax.loglog([r["tokens"] for r in rows], [get(r[method]) for r in rows], marker=marker, label=method.upper())
        ax.set_xlabel("tokens N")
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    what = "One bidirectional fusion block" if result["part"] == "block" else "Both attention directions of a block"
    fig.suptitle(f"{what}, D={result['dim']}, T={result['time_steps']}, {result['device']}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument(
        "--sides", type=int, nargs="+", default=[8, 16, 32, 48, 64], help="token-grid sides (N = side^2)"
    )
    parser.add_argument("--dim", type=int, default=96)
    parser.add_argument("--time-steps", type=int, default=4)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--part", default="block", choices=PARTS, help="whole fusion block, or its attention only")
    parser.add_argument(
        "--memory-limit-gib", type=float, default=12.0, help="skip SSA sizes whose N x N scores exceed this"
    )
    parser.add_argument(
        "--fit-min-tokens", type=int, default=256, help="fit exponents over N >= this (small N is overhead)"
    )
    parser.add_argument("--quick", action="store_true", help="smoke run: small sizes, 2 repeats")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args(argv)
    if args.quick:
        args.sides, args.repeats, args.fit_min_tokens = [4, 8, 16], 2, 16
    result = run(
        args.sides,
        args.dim,
        args.time_steps,
        args.batch,
        args.repeats,
        args.device,
        args.memory_limit_gib,
        part=args.part,
    )
    result["summary"] = summarise(result, args.fit_min_tokens)
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / f"fusion_scaling_{args.part}_{args.device}"
    stem.with_suffix(".json").write_text(json.dumps(result, indent=2))
    table = markdown(result, result["summary"])
    stem.with_suffix(".md").write_text(table + "\n")
    plot(result, stem.with_suffix(".png"))
    print(table)
    print(f"\nwrote {stem}.json, {stem}.md, {stem}.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
