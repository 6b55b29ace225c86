"""``snnergy benchmark``: every baseline and ablation trained and measured the same way.

A composition root (like ``snnergy.demo``): it trains each entry of
``snnergy/benchmark.yaml`` with the same budget, recipe and seeds, evaluates it on the
held-out split, counts its SOPs / MACs and energy on real inputs (``energy/``), and writes
one table as Markdown, JSON and a PNG of accuracy against energy. Each finished run is
kept (``OUT/<entry>/seed<k>/result.json``): an interrupted benchmark resumes where it stopped.
"""

from __future__ import annotations

import json
import re
import statistics
import time
from dataclasses import dataclass, field
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


def entry_config(entry: Entry, size: str | None):
    from snnergy.config import load_preset

    config = load_preset(entry.preset)
    if size:
        base = load_preset(size)
        config = config.with_overrides(**{name: getattr(base, name) for name in SIZE_FIELDS})
    return config.with_overrides(**entry.overrides)


def run_entry(entry: Entry, seed: int, args: dict[str, Any], out: Path) -> dict[str, Any]:
    """Train, evaluate and measure one entry with one seed (or read its finished result)."""
    from snnergy.checkpoint import load_checkpoint
    from snnergy.data.registry import dataset_for_model
    from snnergy.devices import resolve_device
    from snnergy.evaluate import evaluate
    from snnergy.measure import energy_report
    from snnergy.model import count_parameters
    from snnergy.recipe import load_train_preset
    from snnergy.train import train_on_dataset

    result_path = out / "result.json"
    if result_path.is_file():
        return json.loads(result_path.read_text())
    config = entry_config(entry, args["size"])
    train_config = load_train_preset(
        args["size"] or entry.preset,
        epochs=args["epochs"],
        seed=seed,
        device=args["device"],
        warmup_epochs=min(1, args["epochs"] - 1),
        max_minutes=args["max_minutes"],
        limit_train_batches=args["limit_train_batches"],
    )
    started = time.perf_counter()
    train_on_dataset(
        config,
        train_config,
        args["dataset"],
        out,
        args["data_root"],
        args["cache_dir"],
        resume=(out / "last.pt").exists(),
    )
    train_seconds = time.perf_counter() - started
    checkpoint = load_checkpoint(out / "best.pt")
    model = checkpoint.build_model()
    device = str(resolve_device(args["device"]))
    test_set = dataset_for_model(
        args["dataset"], args["split"], checkpoint.model_config, args["data_root"], args["cache_dir"]
    )
    accuracy = evaluate(model, test_set, device, 64, checkpoint.class_names)["accuracy"]
    energy = energy_report(out / "best.pt", test_set, args["energy_samples"], device=device, progress=False)
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
        "parameters": count_parameters(model),
        "accuracy": accuracy,
        "sops": energy["total"]["sops"],
        "macs": energy["total"]["macs"],
        "energy_uj": energy["total"]["energy_uj"],
        "train_seconds": train_seconds,
        "epochs": train_config.epochs,
    }
    atomic_write_text(result_path, json.dumps(result, indent=2))
    return result


def summarise(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per entry: accuracy mean and spread over seeds, the rest averaged."""
    rows = []
    for name in dict.fromkeys(r["name"] for r in results):
        runs = [r for r in results if r["name"] == name]
        accuracies = [r["accuracy"] for r in runs]
        first = runs[0]
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
                "sops": statistics.mean(r["sops"] for r in runs),
                "macs": statistics.mean(r["macs"] for r in runs),
                "energy_uj": statistics.mean(r["energy_uj"] for r in runs),
                "train_seconds": statistics.mean(r["train_seconds"] for r in runs),
            }
        )
    return rows


def format_markdown(rows: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    """Paper Tables 1-3 layout (method, type, T, parameters, accuracy) plus the energy columns."""
    lines = [
        f"`{meta['command']}`",
        "",
        f"{meta['dataset']} / {meta['split']}, {meta['epochs']} epochs per model, seeds {meta['seeds']}, energy on "
        f"{meta['energy_samples']} test samples (cost model 45nm, energy/cost_models/45nm.yaml; ANN rows: MACs only).",
    ]
    for group, title in (("model", "Methods"), ("ablation", "SNNergy ablations")):
        group_rows = [r for r in rows if r["group"] == group]
        if not group_rows:
            continue
        lines += [
            "",
            f"**{title}**",
            "",
            "| method | type | T | params | accuracy (%) | SOPs | MACs | energy (uJ) | train time (s) |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for r in group_rows:
            spread = f" ± {100 * r['accuracy_std']:.2f}" if r["accuracy_std"] is not None else ""
            lines.append(
                f"| {r['name']} | {r['type']} | {r['time_steps']} | {r['parameters'] / 1e6:.2f}M | "
                f"{100 * r['accuracy_mean']:.2f}{spread} | "
                f"{r['sops'] / 1e6:.2f}M | {r['macs'] / 1e6:.2f}M | {r['energy_uj']:.2f} | {r['train_seconds']:.0f} |"
            )
    return "\n".join(lines) + "\n"


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5.5))
    for r in rows:
        marker = {"model": "o", "ablation": "s"}[r["group"]]
        color = "tab:red" if r["name"].startswith("SNNergy") else ("tab:gray" if r["type"] == "ANN" else "tab:blue")
        spread = 100 * r["accuracy_std"] if r["accuracy_std"] else None
        ax.errorbar(r["energy_uj"], 100 * r["accuracy_mean"], yerr=spread, fmt=marker, color=color, capsize=3)
        ax.annotate(
            r["name"], (r["energy_uj"], 100 * r["accuracy_mean"]), fontsize=7, xytext=(4, 2), textcoords="offset points"
        )
    ax.set_xscale("log")
    ax.set_xlabel("energy per inference (uJ, 45 nm, log scale)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("Accuracy vs energy (circles: methods, squares: SNNergy ablations; bars: std over seeds)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    atomic_savefig(fig, path, dpi=120)
    plt.close(fig)


def run_benchmark(
    dataset: str = "avdigits",
    out_dir: str | Path = "runs/benchmark",
    epochs: int = 3,
    seeds: int = 1,
    entries: list[str] | None = None,
    size: str | None = None,
    split: str = "test",
    energy_samples: int = 64,
    device: str = "auto",
    max_minutes: float | None = None,
    data_root: str | Path | None = None,
    cache_dir: str | Path | None = None,
    command: str = "snnergy benchmark",
    limit_train_batches: int | None = None,
) -> dict[str, Any]:
    from tqdm import tqdm

    if epochs < 1 or seeds < 1:
        raise ValueError("--epochs and --seeds must be >= 1")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    selected = load_entries(entries)
    args = dict(
        dataset=dataset,
        size=size,
        split=split,
        energy_samples=energy_samples,
        device=device,
        epochs=epochs,
        max_minutes=max_minutes,
        data_root=data_root,
        cache_dir=cache_dir,
        limit_train_batches=limit_train_batches,
    )
    results = []
    runs = [(entry, seed) for entry in selected for seed in range(seeds)]
    with tqdm(total=len(runs), desc="benchmark", unit="run") as bar:
        for entry, seed in runs:
            bar.set_postfix_str(f"{entry.slug} seed {seed}")
            results.append(run_entry(entry, seed, args, out_dir / entry.slug / f"seed{seed}"))
            bar.update(1)
    rows = summarise(results)
    meta = {
        "command": command,
        "dataset": dataset,
        "split": split,
        "epochs": epochs,
        "seeds": list(range(seeds)),
        "energy_samples": energy_samples,
        "size": size or "the entries' own presets",
    }
    document = {"meta": meta, "rows": rows, "runs": results}
    atomic_write_text(out_dir / "benchmark.json", json.dumps(document, indent=2))
    atomic_write_text(out_dir / "benchmark.md", format_markdown(rows, meta))
    plot(rows, out_dir / "benchmark.png")
    return document
