"""Why the CMQKA branch dies in training, and which change keeps it alive (docs/model.md).

    python benchmarks/cmqka_diagnosis.py --out runs/cmqka-diagnosis [--epochs 12] [--seeds 0] [--only NAME ...]

Trains each variant of ``VARIANTS`` (the tiny preset with model overrides) on avdigits with
tiny's recipe. After every epoch it records, per attention module, the firing rates of
Q, K, masks and output neurons, the fused product's magnitude, the variance of ``W_o``'s
output before BN against BN's ``eps``, and the residual weight alpha
(``snnergy.ablation.branch_statistics`` on 256 validation samples). After the last epoch
it evaluates the test split with the test-time ablations of ``snnergy ablate``.
Each variant writes ``OUT/<variant>-seed<k>/diagnosis.jsonl`` and ``result.json``;
finished variants are skipped, so the run resumes. ``OUT/diagnosis.{json,md}`` collects them.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Subset

from snnergy.ablation import branch_statistics, run_ablations
from snnergy.atomic import atomic_write_text
from snnergy.config import load_preset
from snnergy.data.registry import make_dataset
from snnergy.evaluate import evaluate
from snnergy.recipe import load_train_preset
from snnergy.train import Trainer

# name -> tiny overrides. "before" is the model as it was (per-timestep temporal
# projections, raw fused product into W_o, fixed SSA scale); "current" is today's tiny.
VARIANTS: dict[str, dict] = {
    "before": {"cmqka_temporal_taps": 1, "cmqka_fusion_scale": 1.0, "ssa_scale_learnable": False},
    "causal2": {"cmqka_temporal_taps": 2, "cmqka_fusion_scale": 1.0, "ssa_scale_learnable": False},
    "gain100": {"cmqka_temporal_taps": 1, "cmqka_fusion_scale": 100.0, "ssa_scale_learnable": False},
    "causal2-gain100": {"cmqka_temporal_taps": 2, "cmqka_fusion_scale": 100.0, "ssa_scale_learnable": False},
    "causal2-gain10": {"cmqka_temporal_taps": 2, "cmqka_fusion_scale": 10.0, "ssa_scale_learnable": False},
    "causal2-gain100-4heads": {
        "cmqka_temporal_taps": 2,
        "cmqka_fusion_scale": 100.0,
        "ssa_scale_learnable": False,
        "num_heads": 4,
    },
    "current": {},
}


def run_variant(name: str, seed: int, epochs: int, out: Path) -> dict:
    run_dir = out / f"{name}-seed{seed}"
    result_path = run_dir / "result.json"
    if result_path.exists():
        return json.loads(result_path.read_text())
    run_dir.mkdir(parents=True, exist_ok=True)
    model_config = load_preset("tiny", **VARIANTS[name])
    train_config = load_train_preset("tiny", epochs=epochs, seed=seed, device="cpu")
    size, steps = model_config.image_size, model_config.time_steps
    train_set = make_dataset("avdigits", "train", size, steps)
    val_set = make_dataset("avdigits", "val", size, steps)
    test_set = make_dataset("avdigits", "test", size, steps)
    trainer = Trainer(
        model_config, train_config, train_set, val_set, run_dir, list(train_set.class_names), {"dataset": "avdigits"}
    )
    probe_batches = list(DataLoader(Subset(val_set, range(min(256, len(val_set)))), batch_size=64))
    log = run_dir / "diagnosis.jsonl"
    log.write_text("")
    started = time.perf_counter()
    for epoch in range(epochs):
        record = {"epoch": epoch + 1, **trainer.train_epoch(epoch)}
        record["val_accuracy"] = evaluate(trainer.model, val_set, "cpu", 64, progress=False)["accuracy"]
        record["branches"] = branch_statistics(trainer.model, probe_batches)
        with log.open("a") as handle:
            handle.write(json.dumps(record) + "\n")
        cmqka = {k: v for k, v in record["branches"].items() if "fused_mean" in v}
        rates = " ".join(f"{100 * v['out_rate']:.2f}" for v in cmqka.values())
        print(
            f"[{name} seed {seed}] epoch {epoch + 1}: val {record['val_accuracy']:.3f}  CMQKA out rates % {rates}",
            flush=True,
        )
    ablation = run_ablations(trainer.model, test_set, train_set, "cpu")
    result = {
        "variant": name,
        "seed": seed,
        "overrides": VARIANTS[name],
        "epochs": epochs,
        "train_seconds": time.perf_counter() - started,
        "parameters": sum(p.numel() for p in trainer.model.parameters()),
        "test": ablation,
    }
    torch.save({"state_dict": trainer.model.state_dict(), "config": model_config.to_dict()}, run_dir / "model.pt")
    atomic_write_text(result_path, json.dumps(result, indent=2))
    return result


def summarise(results: list[dict]) -> str:
    lines = [
        "| variant | seed | params | test acc | CMQKA zeroed | cross cut | spatial only | temporal only | SSA "
        "zeroed | CMQKA out rate % (min-max) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        rows = {row["name"]: row for row in r["test"]["ablations"]}

        def change(key: str, rows: dict = rows) -> str:
            return f"{100 * rows[key]['change']:+.1f}" if key in rows else "-"

        rates = [100 * v["out_rate"] for v in r["test"]["branches"].values() if "fused_mean" in v]
        lines.append(
            f"| {r['variant']} | {r['seed']} | {r['parameters']:,} | {rows['none']['accuracy']:.3f} | "
            f"{change('cmqka_zero')} | "
            f"{change('cmqka_cross_cut')} | {change('spatial_factor_only')} | {change('temporal_factor_only')} | "
            f"{change('ssa_zero')} | {min(rates):.2f}-{max(rates):.2f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("runs/cmqka-diagnosis"))
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--only", nargs="+", choices=sorted(VARIANTS), help="variants to run (default: all)")
    parser.add_argument("--collect", action="store_true", help="tabulate every finished run in OUT, not only these")
    parser.add_argument("--threads", type=int, help="torch threads (two runs side by side: 1 each)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    results = [
        run_variant(name, seed, args.epochs, args.out) for name in (args.only or VARIANTS) for seed in args.seeds
    ]
    if args.collect:  # also every other finished run in OUT (runs of other seeds or invocations)
        done = {(r["variant"], r["seed"]) for r in results}
        for path in sorted(args.out.glob("*/result.json")):
            result = json.loads(path.read_text())
            if (result["variant"], result["seed"]) not in done:
                results.append(result)
    table = summarise(results)
    atomic_write_text(args.out / "diagnosis.json", json.dumps(results, indent=2))
    atomic_write_text(args.out / "diagnosis.md", table + "\n")
    print(table)


if __name__ == "__main__":
    main()
