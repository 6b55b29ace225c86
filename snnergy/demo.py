"""The main job `make demo` runs: the whole path on the embedded avdigits benchmark.

Like `snnergy.cli`, this is a composition root: the one other place in `snnergy/` that may
call `energy` and `export`; the model, data and training code never do.

1. build avdigits (cached after the first run);
2. train the ``tiny`` preset on CPU within a time budget (resuming if a previous demo
   was interrupted: re-running continues from ``last.pt``);
3. evaluate the best checkpoint on the held-out test split with both modalities, and
   with each modality alone (the other zeroed), to show how much the model relies on each;
4. count real spikes on test samples and print the energy report per stage (45 nm cost
   model) with the firing rates, plus the model summary and the analytic complexity table;
5. export the best checkpoint as a Lava package (NIR graph, manifest, fixed-point
   parameters, energy description);
6. simulate that package as Lava processes on CPU on the same test samples: accuracy,
   prediction and spike agreement with PyTorch, and the energy accounted from the spikes
   Lava counted (``snnergy simulate``).
"""

from __future__ import annotations

import json
from pathlib import Path

from snnergy.atomic import atomic_write_text
from snnergy.checkpoint import load_checkpoint
from snnergy.config import load_preset
from snnergy.data.registry import dataset_for_model
from snnergy.evaluate import evaluate, write_report
from snnergy.recipe import load_train_preset
from snnergy.summary import describe
from snnergy.train import train_on_dataset

DEMO_PRESET = "tiny"
DEMO_TRAIN_MINUTES = 8.0
DEMO_ENERGY_SAMPLES = 64


def run_demo(out_dir: Path, minutes: float = DEMO_TRAIN_MINUTES) -> int:
    out_dir = Path(out_dir)
    model_config = load_preset(DEMO_PRESET)
    train_config = load_train_preset(DEMO_PRESET, device="cpu", max_minutes=minutes)
    print(f"[1/5] training preset '{DEMO_PRESET}' on avdigits for at most {minutes:g} minutes -> {out_dir}", flush=True)
    resume = (out_dir / "last.pt").exists()
    if resume:
        print(f"      resuming from {out_dir / 'last.pt'}", flush=True)
    train_on_dataset(model_config, train_config, "avdigits", out_dir, resume=resume)

    checkpoint = load_checkpoint(out_dir / "best.pt")
    model, config = checkpoint.build_model(), checkpoint.model_config
    print("[2/5] evaluating the best checkpoint on the held-out test split (unseen voices and images)", flush=True)
    accuracies = {}
    for modality in ("both", "audio", "video"):
        test_set = dataset_for_model("avdigits", "test", config, modality=modality)
        result = evaluate(model, test_set, "cpu", 64, checkpoint.class_names)
        accuracies[modality] = result["accuracy"]
        if modality == "both":
            write_report(result, out_dir / "eval-test.json", out_dir / "eval-test.png")
    atomic_write_text(
        out_dir / "demo-summary.json",
        json.dumps({"test_accuracy": accuracies, "epochs": checkpoint.meta.get("epoch", 0) + 1}, indent=2),
    )
    print(
        f"      test accuracy: audio+video {accuracies['both']:.3f} | audio only {accuracies['audio']:.3f} | "
        f"video only {accuracies['video']:.3f}  (report: {out_dir / 'eval-test.json'}, {out_dir / 'eval-test.png'})"
    )

    from energy.complexity import format_table5, stage_complexities
    from energy.report import EnergyReport, format_terminal
    from snnergy.measure import Inputs, energy_report

    print(f"[3/5] energy per inference from real spike counts on {DEMO_ENERGY_SAMPLES} test samples\n", flush=True)
    energy = energy_report(
        out_dir / "best.pt",
        Inputs("avdigits", DEMO_ENERGY_SAMPLES),
        json_path=out_dir / "energy.json",
        markdown_path=out_dir / "energy.md",
        png_path=out_dir / "energy.png",
    )
    print(format_terminal(EnergyReport.from_dict(energy)))
    print(f"\n(report: {out_dir / 'energy.json'}, {out_dir / 'energy.md'}, {out_dir / 'energy.png'})\n")
    print("model summary\n", flush=True)
    print(describe(config, model))
    print("\nAnalytic op counts of one fusion block per stage (CMQKA = N*D^2, SSA = N^2*D):\n")
    print(format_table5(stage_complexities(config.stage_tokens, config.stage_dims)))

    from export.lava_package import write_lava_package

    package = write_lava_package(checkpoint, out_dir / "model.lava", fixed_point=True, source=out_dir / "best.pt")
    print(f"\n[4/5] Lava package: {package['path']}/ ({', '.join(package['files'])}; {package['nodes']} NIR nodes)")

    from snnergy.simulate import format_summary, run_simulation

    print(f"[5/5] simulating the package in Lava (floating point) on {DEMO_ENERGY_SAMPLES} test samples\n", flush=True)
    simulation = run_simulation(out_dir / "model.lava", "avdigits", "test", DEMO_ENERGY_SAMPLES, mode="float")
    atomic_write_text(out_dir / "lava-simulation.json", json.dumps(simulation, indent=2))
    print(format_summary(simulation))
    print(
        f"energy per inference from Lava's spikes: {simulation['energy']['total']['energy_uj']:.2f} uJ "
        f"(PyTorch's spikes, step 3: {energy['total']['energy_uj']:.2f} uJ)  (report: "
        f"{out_dir / 'lava-simulation.json'})"
    )
    return 0
