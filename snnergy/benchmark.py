"""``snnergy benchmark``: every baseline and ablation trained and measured the same way.

A composition root (like ``snnergy.demo``): it trains each entry of
``snnergy/benchmark.yaml`` with the same budget, recipe and seeds, evaluates it on the
held-out split, counts its SOPs / MACs and energy on real inputs (``energy/``), and writes
one table as Markdown, JSON and a PNG of accuracy against energy.

Each run (entry x seed) is a fresh process of its own, ``--jobs`` of them side by side
with the CPU threads shared out between them: its log goes to
``OUT/<entry>/seed<k>/log.txt``, its peak memory is its own, and a crash cannot take the
others down. A finished run is kept (``result.json``) and an interrupted one resumes from
its last epoch (``last.pt``): an interrupted benchmark resumes where it stopped. Every row
carries the paired per-seed difference to the reference (the first model of
``benchmark.yaml``, SNNergy), since seeds move accuracy by several points.
"""

from __future__ import annotations

import itertools
import json
import multiprocessing
import os
import re
import statistics
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from snnergy.atomic import atomic_savefig, atomic_write_text

SIZE_FIELDS = ("image_size", "time_steps", "embed_dim", "depths", "num_heads", "mlp_ratio", "stem_reduction")


@dataclass(frozen=True)
class Entry:
    name: str
    group: str  # model | ablation
    preset: str
    overrides: dict[str, Any] = field(default_factory=dict)

    @property
    def slug(self) -> str:
        return re.sub(r"[^a-z0-9]+", "-", self.name.lower()).strip("-")


def load_entries(names: list[str] | None = None) -> list[Entry]:
    data = yaml.safe_load(resources.files("snnergy").joinpath("benchmark.yaml").read_text())
    entries = [
        Entry(item["name"], group, item["preset"], item.get("overrides", {}))
        for group in ("models", "ablations")
        for item in data[group]
    ]
    entries = [Entry(e.name, e.group.rstrip("s"), e.preset, e.overrides) for e in entries]
    if names:
        unknown = sorted(set(names) - {e.slug for e in entries})
        if unknown:
            raise ValueError(f"unknown benchmark entries {unknown}; available: {', '.join(e.slug for e in entries)}")
        entries = [e for e in entries if e.slug in names]
    return entries


@dataclass(frozen=True)
class BenchmarkPlan:
    """What one ``snnergy benchmark`` call runs: every field a command-line option."""

    dataset: str = "avdigits"
    epochs: int = 3
    seeds: int = 1  # models: seeds 0 .. seeds-1
    ablation_seeds: int | None = None  # ablations (default: ``seeds``)
    size: str | None = None  # re-base every entry on this preset's sizes
    image_size: int | None = None  # then override the input side
    split: str = "test"
    energy_samples: int = 64
    device: str = "auto"
    max_minutes: float | None = None
    data_root: str | None = None
    cache_dir: str | None = None
    limit_train_batches: int | None = None
    jobs: int = 1

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.seeds < 1 or (self.ablation_seeds or 1) < 1:
            raise ValueError("--epochs, --seeds and --ablation-seeds must be >= 1")
        if self.jobs < 1:
            raise ValueError(f"--jobs must be >= 1, got {self.jobs}")

    def seeds_of(self, entry: Entry) -> range:
        return range(self.ablation_seeds or self.seeds if entry.group == "ablation" else self.seeds)

    @property
    def threads_per_job(self) -> int:
        return max(1, (os.cpu_count() or 1) // self.jobs)


def entry_config(entry: Entry, plan: BenchmarkPlan):
    from snnergy.config import load_preset

    config = load_preset(entry.preset)
    if plan.size:
        base = load_preset(plan.size)
        config = config.with_overrides(**{name: getattr(base, name) for name in SIZE_FIELDS})
    if plan.image_size:
        config = config.with_overrides(image_size=plan.image_size)
    return config.with_overrides(**entry.overrides)


def _training_seconds(run_dir: Path) -> float:
    """Training time summed over the epochs of ``metrics.jsonl`` (a resumed run counts every part)."""
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return sum(json.loads(line).get("train_seconds", 0.0) for line in lines if line.strip())


def run_entry(entry: Entry, seed: int, plan: BenchmarkPlan, out: Path) -> dict[str, Any]:
    """Train, evaluate and measure one entry with one seed (or read its finished result).

    Meant to run in a process of its own (``run_isolated``): the peak memory it reports is
    that process's.
    """
    import resource

    from snnergy.checkpoint import load_checkpoint
    from snnergy.data.registry import dataset_for_model
    from snnergy.devices import resolve_device
    from snnergy.evaluate import evaluate
    from snnergy.measure import Inputs, energy_report
    from snnergy.model import count_parameters
    from snnergy.recipe import load_train_preset
    from snnergy.train import train_on_dataset

    result_path = out / "result.json"
    if result_path.is_file():
        return json.loads(result_path.read_text())
    config = entry_config(entry, plan)
    train_config = load_train_preset(
        plan.size or entry.preset,
        epochs=plan.epochs,
        seed=seed,
        device=plan.device,
        warmup_epochs=min(1, plan.epochs - 1),
        max_minutes=plan.max_minutes,
        limit_train_batches=plan.limit_train_batches,
    )
    train_on_dataset(
        config, train_config, plan.dataset, out, plan.data_root, plan.cache_dir, resume=(out / "last.pt").exists()
    )
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    checkpoint = load_checkpoint(out / "best.pt")
    model = checkpoint.build_model()
    device = str(resolve_device(plan.device))
    test_set = dataset_for_model(plan.dataset, plan.split, checkpoint.model_config, plan.data_root, plan.cache_dir)
    accuracy = evaluate(model, test_set, device, 64, checkpoint.class_names)["accuracy"]
    inputs = Inputs(test_set, plan.energy_samples, device=device, progress=False)
    energy = energy_report(out / "best.pt", inputs)
    config = checkpoint.model_config
    result = {
        "name": entry.name,
        "group": entry.group,
        "preset": entry.preset,
        "overrides": entry.overrides,
        "seed": seed,
        "type": "SNN" if config.neuron.spiking else "ANN",
        "fusion": config.fusion,
        "modalities": config.modalities,
        "attention": config.attention,
        "time_steps": config.time_steps,
        "image_size": config.image_size,
        "parameters": count_parameters(model),
        "accuracy": accuracy,
        "sops": energy["total"]["sops"],
        "macs": energy["total"]["macs"],
        "energy_uj": energy["total"]["energy_uj"],
        "energy_conventions": {k: energy["conventions"][k] for k in ("ann_static_input", "snn_encoding_static_input")},
        "static_inputs": energy["conventions"]["static_inputs"],
        "train_seconds": _training_seconds(out),
        "peak_train_memory_mib": peak_mib,
        "threads": plan.threads_per_job,
        "epochs": train_config.epochs,
    }
    atomic_write_text(result_path, json.dumps(result, indent=2))
    return result


def run_isolated(entry: Entry, seed: int, plan: BenchmarkPlan, out: Path) -> dict[str, Any]:
    """``run_entry`` in this (fresh) process with its share of threads, logging to ``out/log.txt``."""
    import contextlib

    import torch

    torch.set_num_threads(plan.threads_per_job)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "log.txt", "a") as log, contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
        return run_entry(entry, seed, plan, out)


def _paired_difference(runs: list[dict[str, Any]], reference: list[dict[str, Any]]) -> tuple[float, float, int]:
    """Mean and spread over the seeds both ran of ``accuracy - reference accuracy`` (same seed)."""
    theirs = {r["seed"]: r["accuracy"] for r in reference}
    differences = [r["accuracy"] - theirs[r["seed"]] for r in runs if r["seed"] in theirs]
    if not differences:
        return float("nan"), float("nan"), 0
    spread = statistics.pstdev(differences) if len(differences) > 1 else float("nan")
    return statistics.mean(differences), spread, len(differences)


def summarise(results: list[dict[str, Any]], reference: str | None = None) -> list[dict[str, Any]]:
    """One row per entry: accuracy mean and spread over seeds, the paired per-seed difference
    to ``reference`` (an entry name; default: the first entry), the rest averaged."""
    names = list(dict.fromkeys(r["name"] for r in results))
    reference = reference or names[0]
    reference_runs = [r for r in results if r["name"] == reference]
    rows = []
    for name in names:
        runs = [r for r in results if r["name"] == name]
        accuracies = [r["accuracy"] for r in runs]
        first = runs[0]
        delta, delta_std, paired = _paired_difference(runs, reference_runs)
        memory = [r["peak_train_memory_mib"] for r in runs if r.get("peak_train_memory_mib")]
        rows.append(
            {
                "name": name,
                "group": first["group"],
                "type": first["type"],
                "fusion": first["fusion"],
                "modalities": first["modalities"],
                "time_steps": first["time_steps"],
                "parameters": first["parameters"],
                "seeds": len(runs),
                "accuracy_mean": statistics.mean(accuracies),
                "accuracy_std": statistics.pstdev(accuracies) if len(runs) > 1 else None,
                "accuracy_per_seed": {str(r["seed"]): r["accuracy"] for r in runs},
                "reference": reference,
                "delta_vs_reference": None if name == reference else delta,
                "delta_std": None if name == reference or paired < 2 else delta_std,
                "paired_seeds": paired,
                "sops": statistics.mean(r["sops"] for r in runs),
                "macs": statistics.mean(r["macs"] for r in runs),
                "energy_uj": statistics.mean(r["energy_uj"] for r in runs),
                "train_seconds": statistics.mean(r["train_seconds"] for r in runs),
                "peak_train_memory_mib": max(memory) if memory else None,
            }
        )
    return rows


def _points(value: float | None, spread: float | None = None, sign: bool = False) -> str:
    if value is None:
        return "-"
    text = f"{100 * value:+.2f}" if sign else f"{100 * value:.2f}"
    return text + (f" ± {100 * spread:.2f}" if spread is not None else "")


def format_markdown(rows: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    """Paper Tables 1-3 layout (method, type, T, parameters, accuracy) plus the paired
    difference to the reference and the energy, time and memory columns."""
    conventions = "ANN counterpart and SNN encoding layers charged once per distinct step on inputs constant over T"
    lines = [
        f"`{meta['command']}`",
        "",
        f"{meta['dataset']} / {meta['split']}, {meta['epochs']} epochs per model, seeds {meta['seeds']}"
        + (f" (ablations: {meta['ablation_seeds']})" if meta.get("ablation_seeds") else "")
        + f", energy on {meta['energy_samples']} test samples (cost model 45nm, energy/cost_models/45nm.yaml; "
        f"ANN rows: MACs only; {conventions}). Accuracy: mean ± std over seeds; "
        f"difference: accuracy minus {rows[0]['reference'] if rows else 'the reference'}'s with the same seed, "
        "mean ± std over seeds (points).",
    ]
    for group, title in (("model", "Methods"), ("ablation", "SNNergy ablations")):
        group_rows = [r for r in rows if r["group"] == group]
        if not group_rows:
            continue
        lines += [
            "",
            f"**{title}**",
            "",
            "| method | type | T | params | seeds | accuracy (%) | difference (points) | SOPs | MACs | energy (uJ) "
            "| train time (min) | peak train memory (GiB) |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in group_rows:
            memory = r.get("peak_train_memory_mib")
            lines.append(
                f"| {r['name']} | {r['type']} | {r['time_steps']} | {r['parameters'] / 1e6:.2f}M | {r['seeds']} | "
                f"{_points(r['accuracy_mean'], r['accuracy_std'])} | "
                f"{_points(r.get('delta_vs_reference'), r.get('delta_std'), sign=True)} | "
                f"{r['sops'] / 1e6:.2f}M | {r['macs'] / 1e6:.2f}M | {r['energy_uj']:.2f} | "
                f"{r['train_seconds'] / 60:.1f} | {'-' if memory is None else f'{memory / 1024:.2f}'} |"
            )
    return "\n".join(lines) + "\n"


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    fig, ax = plt.subplots(figsize=(9, 5.5))
    # One colour per row and a legend: the methods near SNNergy sit within a few tenths of a
    # uJ of each other, where text labels next to the points overlap.
    palette = [c for i, c in enumerate(plt.get_cmap("tab20").colors) if i not in (6, 7)]  # no reds
    others = itertools.cycle(palette)
    for r in rows:
        marker = {"model": "o", "ablation": "s"}[r["group"]]
        color = "tab:red" if r["name"].startswith("SNNergy") else next(others)
        spread = 100 * r["accuracy_std"] if r["accuracy_std"] else None
        ax.errorbar(
            r["energy_uj"], 100 * r["accuracy_mean"], yerr=spread, fmt=marker, color=color, capsize=3, label=r["name"]
        )
    ax.set_xscale("log")
    energies = [r["energy_uj"] for r in rows]
    ax.xaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
    if max(energies) < 10 * min(energies):
        # A narrow range on a log axis has no major tick inside it; label the minor ones.
        ax.xaxis.set_minor_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
    ax.margins(x=0.08, y=0.08)
    ax.set_xlabel("energy per inference (uJ, 45 nm, log scale)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("Accuracy vs energy (circles: methods, squares: SNNergy ablations; bars: std over seeds)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8, frameon=False)
    fig.tight_layout()
    # "tight" keeps the legend, placed outside the axes, in the image.
    atomic_savefig(fig, path, dpi=120, bbox_inches="tight")
    plt.close(fig)


def run_benchmark(
    plan: BenchmarkPlan,
    out_dir: str | Path = "runs/benchmark",
    entries: list[str] | None = None,
    command: str = "snnergy benchmark",
) -> dict[str, Any]:
    """Run every (entry, seed) of ``plan`` not finished yet, ``plan.jobs`` at a time; tabulate all."""
    from tqdm import tqdm

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    selected = load_entries(entries)
    most = max(len(plan.seeds_of(entry)) for entry in selected)
    # seed-major: a benchmark stopped half-way has every entry at its first seeds
    runs = [(entry, seed) for seed in range(most) for entry in selected if seed in plan.seeds_of(entry)]
    results: dict[tuple[str, int], dict[str, Any]] = {}
    context = multiprocessing.get_context("spawn")  # a fresh interpreter per run: no state shared, own memory peak
    with (
        ProcessPoolExecutor(plan.jobs, mp_context=context, max_tasks_per_child=1) as pool,
        tqdm(total=len(runs), desc="benchmark", unit="run") as bar,
    ):
        futures = {
            pool.submit(run_isolated, entry, seed, plan, out_dir / entry.slug / f"seed{seed}"): (entry, seed)
            for entry, seed in runs
        }
        for future in as_completed(futures):
            entry, seed = futures[future]
            try:
                results[(entry.slug, seed)] = future.result()
            except Exception as error:
                raise RuntimeError(
                    f"benchmark run {entry.slug} seed {seed} failed: {error} "
                    f"(log: {out_dir / entry.slug / f'seed{seed}' / 'log.txt'})"
                ) from error
            bar.set_postfix_str(f"{entry.slug} seed {seed} done")
            bar.update(1)
    ordered = [results[(entry.slug, seed)] for entry in selected for seed in plan.seeds_of(entry)]
    rows = summarise(ordered)
    meta = {
        "command": command,
        "dataset": plan.dataset,
        "split": plan.split,
        "epochs": plan.epochs,
        "seeds": list(range(plan.seeds)),
        "ablation_seeds": list(range(plan.ablation_seeds)) if plan.ablation_seeds else None,
        "energy_samples": plan.energy_samples,
        "size": plan.size or "the entries' own presets",
        "image_size": plan.image_size,
        "plan": asdict(plan),
    }
    document = {"meta": meta, "rows": rows, "runs": ordered}
    atomic_write_text(out_dir / "benchmark.json", json.dumps(document, indent=2))
    atomic_write_text(out_dir / "benchmark.md", format_markdown(rows, meta))
    plot(rows, out_dir / "benchmark.png")
    return document
