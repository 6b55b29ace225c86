"""How many epochs tiny needs: validation accuracy per epoch for several training budgets.

The benchmark's budget is the epoch count at which tiny's validation accuracy stops
improving. With a cosine schedule a budget is not a prefix of a longer run (the learning
rate decays to the end of each), so each budget is its own run:

    snnergy train --preset tiny --seed S --epochs E --out runs/plateau/eE-seedS
    python benchmarks/epoch_budget.py runs/final/seed0 runs/final/seed1 runs/plateau/e20-seed0 ...

This script only reads the runs' ``metrics.jsonl`` and tabulates, per run, the best
validation accuracy, the last epoch's, and the first epoch within one point of the best;
results go to ``benchmarks/results/epoch_budget_tiny.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def summarise_run(run: Path) -> dict:
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    if not records:
        raise ValueError(f"{run}/metrics.jsonl has no finished epoch")
    val = [r["val_accuracy"] for r in records]
    best = max(val)
    return {
        "run": str(run),
        "epochs": len(records),
        "best_val_accuracy": best,
        "best_epoch": val.index(best) + 1,
        "last_val_accuracy": val[-1],
        "first_epoch_within_1_point_of_best": next(i + 1 for i, v in enumerate(val) if v >= best - 0.01),
        "val_accuracy_per_epoch": val,
        "train_seconds": sum(r.get("train_seconds", 0.0) for r in records),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="training run directories (with metrics.jsonl)")
    parser.add_argument("--name", default="epoch_budget_tiny", help="results file stem (default: %(default)s)")
    args = parser.parse_args()
    rows = [summarise_run(run) for run in args.runs]
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{args.name}.json").write_text(json.dumps(rows, indent=2) + "\n")
    lines = [
        "| run | budget (epochs) | best val | at epoch | last val | first epoch within 1 point of best |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['run']} | {r['epochs']} | {r['best_val_accuracy']:.3f} | {r['best_epoch']} | "
            f"{r['last_val_accuracy']:.3f} | {r['first_epoch_within_1_point_of_best']} |"
        )
    text = "\n".join(lines) + "\n"
    (RESULTS / f"{args.name}.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
