"""The ``snnergy`` command: parses arguments and calls the library, nothing more.

This module is the composition root: it is the one place that may reach into
``export``, ``energy`` and ``lava_runtime``; the model code in ``snnergy`` never does.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from snnergy.atomic import atomic_write_text
from snnergy.cli.data import add_data_arguments, dataset_options
from snnergy.config import ATTENTION_LAYOUTS, CMQKA_PATHWAYS, load_preset, preset_names
from snnergy.devices import DEVICES
from snnergy.errors import run_reporting_errors
from snnergy.outputs import check_output


def write_json_report(path: Path | None, document: dict) -> None:
    """The ``--json`` report of a command, if one was asked for."""
    if path:
        import json

        atomic_write_text(path, json.dumps(document, indent=2))
        print(f"wrote {path}")


def _add_model_options(parser: argparse.ArgumentParser, default_preset: str = "tiny") -> None:
    group = parser.add_argument_group("model (a preset, optionally overridden)")
    group.add_argument(
        "--preset", default=default_preset, choices=preset_names(), help="model preset (default: %(default)s)"
    )
    group.add_argument(
        "--attention", choices=sorted(ATTENTION_LAYOUTS), help="attention per stage: hybrid = CMQKA, CMQKA, SSA"
    )
    group.add_argument("--cmqka-pathways", choices=CMQKA_PATHWAYS, help="CMQKA ablation: both pathways or one")
    group.add_argument("--embed-dim", type=int, help="base width D (stages use D, 2D, 4D)")
    group.add_argument("--image-size", type=int, help="input side length S (both modalities are S x S)")
    group.add_argument("--time-steps", type=int, help="timesteps T")
    group.add_argument("--num-classes", type=int, help="number of classes of the head")


def _config_from_args(args: argparse.Namespace):
    return load_preset(
        args.preset,
        attention=args.attention,
        cmqka_pathways=args.cmqka_pathways,
        embed_dim=args.embed_dim,
        image_size=args.image_size,
        time_steps=args.time_steps,
        num_classes=args.num_classes,
    )


def cmd_info(args: argparse.Namespace) -> int:
    from energy.complexity import format_table5, stage_complexities
    from snnergy.model import build_model
    from snnergy.summary import describe

    config = _config_from_args(args)
    print(describe(config, build_model(config)))
    print("\nAnalytic op counts of one fusion block per stage (paper Table 5: CMQKA = N*D^2, SSA = N^2*D):\n")
    print(format_table5(stage_complexities(config.stage_tokens, config.stage_dims)))
    return 0


def cmd_complexity(args: argparse.Namespace) -> int:
    from energy.complexity import format_table5, stage_complexities

    config = _config_from_args(args)
    print(f"preset={config.preset} D={config.embed_dim} input {config.image_size}x{config.image_size}\n")
    print(format_table5(stage_complexities(config.stage_tokens, config.stage_dims)))
    return 0


def cmd_init(args: argparse.Namespace) -> int:
    from snnergy.checkpoint import from_model, save_checkpoint
    from snnergy.model import build_model

    check_output(args.out, "checkpoint", force=args.force)
    config = _config_from_args(args)
    model = build_model(config, seed=args.seed)
    path = save_checkpoint(from_model(model, seed=args.seed, trained=False), args.out)
    print(f"wrote untrained {config.preset} checkpoint (seed {args.seed}) to {path}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from snnergy.recipe import load_train_preset
    from snnergy.train import train_on_dataset

    if not args.resume:
        check_output(args.out, "run", force=args.force)
    model_config = _config_from_args(args)
    train_config = load_train_preset(
        args.preset,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        weight_decay=args.weight_decay,
        warmup_epochs=args.warmup_epochs,
        label_smoothing=args.label_smoothing,
        grad_clip=args.grad_clip,
        seed=args.seed,
        device=args.device,
        amp=False if args.no_amp else None,
        num_workers=args.num_workers,
        max_minutes=args.max_minutes,
        limit_train_batches=args.limit_train_batches,
    )
    summary = train_on_dataset(
        model_config,
        train_config,
        args.dataset,
        args.out,
        args.data_root,
        args.cache_dir,
        args.resume,
        dataset_options(args),
        fresh=args.force and not args.resume,
    )
    print(f"best validation accuracy {summary['best_val_accuracy']:.4f}; checkpoints in {summary['out_dir']}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from snnergy.checkpoint import load_checkpoint
    from snnergy.data.registry import dataset_for_model
    from snnergy.devices import resolve_device
    from snnergy.evaluate import evaluate, format_report, write_report

    json_path = args.json or args.checkpoint.with_name(f"eval-{args.dataset}-{args.split}.json")
    for path in (json_path, json_path.with_suffix(".png")):
        check_output(path, "report", [args.checkpoint])
    checkpoint = load_checkpoint(args.checkpoint)
    dataset = dataset_for_model(
        args.dataset,
        args.split,
        checkpoint.model_config,
        args.data_root,
        args.cache_dir,
        modality=args.modality,
        **dataset_options(args),
    )
    device = resolve_device(args.device)
    result = evaluate(checkpoint.build_model().to(device), dataset, device, args.batch_size, checkpoint.class_names)
    result.update(checkpoint=str(args.checkpoint), dataset=args.dataset, split=args.split, modality=args.modality)
    print(format_report(result))
    write_report(result, json_path, json_path.with_suffix(".png"))
    print(f"wrote {json_path} and {json_path.with_suffix('.png')}")
    return 0


def cmd_ablate(args: argparse.Namespace) -> int:

    from torch.utils.data import Subset

    from snnergy.ablation import format_ablations, run_ablations
    from snnergy.checkpoint import load_checkpoint
    from snnergy.data.registry import dataset_for_model
    from snnergy.devices import resolve_device

    check_output(args.json, "report", [args.checkpoint])
    checkpoint = load_checkpoint(args.checkpoint)
    config = checkpoint.model_config
    if not config.neuron.spiking or config.fusion != "cross" or config.modalities != "both":
        raise ValueError(
            f"{args.checkpoint} is a baseline (preset {config.preset!r}) without cross-modal attention to ablate"
        )
    options = dataset_options(args)
    test_set = dataset_for_model(args.dataset, args.split, config, args.data_root, args.cache_dir, **options)
    if args.samples:
        test_set = Subset(test_set, range(min(args.samples, len(test_set))))
    train_set = dataset_for_model(args.dataset, "train", config, args.data_root, args.cache_dir, **options)
    device = resolve_device(args.device)
    result = run_ablations(
        checkpoint.build_model(),
        test_set,
        train_set,
        device,
        args.batch_size,
        args.mean_samples,
        checkpoint.class_names,
        progress=lambda name: print(f"  evaluating with {name} ...", flush=True),
    )
    result.update(checkpoint=str(args.checkpoint), dataset=args.dataset, split=args.split)
    print(format_ablations(result))
    write_json_report(args.json, result)
    return 0


def cmd_parity(args: argparse.Namespace) -> int:

    from snnergy.checkpoint import load_checkpoint
    from snnergy.data.registry import dataset_for_model
    from snnergy.parity import device_parity

    check_output(args.json, "report", [args.checkpoint])
    checkpoint = load_checkpoint(args.checkpoint)
    dataset = dataset_for_model(
        args.dataset, args.split, checkpoint.model_config, args.data_root, args.cache_dir, **dataset_options(args)
    )
    result = device_parity(checkpoint, dataset, args.samples, tuple(args.devices))
    a, b = result["devices"]
    print(f"{result['samples']} samples, {a} vs {b}:")
    print(f"  max |logit difference|   {result['max_abs_logit_diff']:.3e}")
    print(f"  prediction agreement     {result['prediction_agreement']:.4f}")
    print(
        f"  spike agreement          {result['spike_agreement']:.6f} of {result['spikes_compared']:,} LIF outputs "
        f"in {result['lif_layers']} layers (lowest: {result['least_agreeing_layer']} "
        f"{result['least_agreeing_layer_agreement']:.6f})"
    )
    write_json_report(args.json, result)
    return 0


def cmd_simulate(args: argparse.Namespace) -> int:

    from energy.report import EnergyReport, format_terminal
    from snnergy.simulate import format_summary, run_simulation

    check_output(args.json, "report", [args.package, args.checkpoint])
    result = run_simulation(
        args.package,
        args.dataset,
        args.split,
        args.samples,
        args.mode,
        args.lanes,
        args.checkpoint,
        args.cost_model,
        args.data_root,
        args.cache_dir,
        dataset_options(args),
        args.timeout,
        grouping=args.grouping,
    )
    print(format_summary(result))
    print()
    print(format_terminal(EnergyReport.from_dict(result["energy"])))
    write_json_report(args.json, result)
    return 0


def cmd_benchmark(args: argparse.Namespace) -> int:
    from snnergy.benchmark import BenchmarkPlan, run_benchmark

    command = (
        "snnergy benchmark " + " ".join(sys.argv[2:])
        if len(sys.argv) > 1 and sys.argv[1] == "benchmark"
        else "snnergy benchmark"
    )
    plan = BenchmarkPlan(
        dataset=args.dataset,
        epochs=args.epochs,
        seeds=args.seeds,
        ablation_seeds=args.ablation_seeds,
        size=args.size,
        image_size=args.image_size,
        split=args.split,
        energy_samples=args.energy_samples,
        device=args.device,
        max_minutes=args.max_minutes,
        data_root=str(args.data_root) if args.data_root else None,
        cache_dir=str(args.cache_dir) if args.cache_dir else None,
        limit_train_batches=args.limit_train_batches,
        jobs=args.jobs,
    )
    document = run_benchmark(plan, args.out, args.only, command)
    print((args.out / "benchmark.md").read_text())
    print(
        f"wrote {args.out / 'benchmark.md'}, {args.out / 'benchmark.json'}, {args.out / 'benchmark.png'} "
        f"({len(document['runs'])} runs)"
    )
    return 0


def cmd_nir_check(args: argparse.Namespace) -> int:

    from snnergy.interop import check_nir_file

    check_output(args.json, "report", [args.file])
    document, matrix = check_nir_file(
        args.file,
        args.consumer,
        args.samples,
        args.dataset,
        args.split,
        args.data_root,
        args.cache_dir,
        dataset_options(args) or None,
    )
    print(matrix)
    write_json_report(args.json, document)
    return 0


def cmd_loihi_fit(args: argparse.Namespace) -> int:

    from export.loihi_fit import fit_graph, format_fit, load_graph, load_limits

    check_output(args.json, "report", [args.path])
    limits = load_limits(args.chip)
    graph, source = load_graph(args.path)
    report = fit_graph(graph, limits)
    print(format_fit(report, source))
    write_json_report(args.json, {"source": source, **report.to_dict()})
    return 0


def cmd_finetune(args: argparse.Namespace) -> int:

    from snnergy.loihi_finetune import FinetuneSettings, finetune_for_loihi, format_record

    check_output(args.json, "report", [args.checkpoint])
    out = args.out or args.checkpoint.with_name(f"{args.checkpoint.stem}-qat.loihi")
    settings = FinetuneSettings(
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
        train_samples=args.train_samples,
        eval_samples=args.eval_samples,
    )
    record = finetune_for_loihi(
        args.checkpoint, out, args.dataset, settings, args.data_root, args.cache_dir, dataset_options(args)
    )
    print(format_record(record))
    write_json_report(args.json, record)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from snnergy.demo import run_demo

    return run_demo(Path(args.out))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="snnergy",
        description="SNNergy: audio-visual spiking transformer with Cross-Modal Q-K Attention - "
        "model summaries, checkpoints, export to NIR/Lava/ONNX.",
    )
    parser.add_argument("--debug", action="store_true", help="show the full traceback when a command fails")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    info = sub.add_parser("info", help="parameters, token counts and analytic op counts per stage")
    _add_model_options(info)
    info.set_defaults(func=cmd_info)

    complexity = sub.add_parser("complexity", help="paper Table 5: CMQKA vs SSA op counts per stage for a preset")
    _add_model_options(complexity, default_preset="b")
    complexity.set_defaults(func=cmd_complexity)

    init = sub.add_parser("init", help="write an untrained, seeded checkpoint (same format as training)")
    _add_model_options(init)
    init.add_argument("--out", required=True, type=Path, help="checkpoint path to write, e.g. model.pt")
    init.add_argument("--seed", type=int, default=0, help="weight-initialisation seed (default: %(default)s)")
    init.add_argument("--force", action="store_true", help="replace an existing file at --out")
    init.set_defaults(func=cmd_init)

    train = sub.add_parser(
        "train",
        help="train a model (paper recipe: AdamW, warm-up + cosine, label smoothing, clipping, AMP on CUDA)",
        description="Train SNNergy. Writes metrics.jsonl, best.pt and last.pt (atomically) to --out. "
        "Distributed: torchrun --nproc_per_node N -m snnergy.train <these options>.",
    )
    _add_model_options(train)
    add_data_arguments(train)
    group = train.add_argument_group("training (defaults: the preset's train: section)")
    group.add_argument("--out", required=True, type=Path, help="run directory for checkpoints and metrics")
    group.add_argument("--epochs", type=int)
    group.add_argument("--batch-size", type=int)
    group.add_argument("--lr", type=float, help="peak learning rate of AdamW")
    group.add_argument("--weight-decay", type=float)
    group.add_argument("--warmup-epochs", type=int)
    group.add_argument("--label-smoothing", type=float)
    group.add_argument("--grad-clip", type=float, help="max gradient norm")
    group.add_argument("--seed", type=int)
    group.add_argument("--device", choices=DEVICES, help="default auto: CUDA when present")
    group.add_argument("--no-amp", action="store_true", help="disable mixed precision on CUDA")
    group.add_argument("--num-workers", type=int, help="DataLoader worker processes")
    group.add_argument("--max-minutes", type=float, help="stop cleanly after the epoch that passes this wall time")
    group.add_argument("--limit-train-batches", type=int, help="batches per epoch (smoke runs)")
    group.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    group.add_argument(
        "--force",
        action="store_true",
        help="start afresh in an existing run directory (its metrics and checkpoints are replaced)",
    )
    train.set_defaults(func=cmd_train)

    evaluate = sub.add_parser("eval", help="accuracy, per-class accuracy and confusion matrix of a checkpoint")
    evaluate.add_argument("checkpoint", type=Path)
    add_data_arguments(evaluate)
    evaluate.add_argument("--split", default="test", help="split to evaluate (default: %(default)s)")
    evaluate.add_argument("--modality", default="both", choices=("both", "audio", "video"), help="zero the other input")
    evaluate.add_argument(
        "--json", type=Path, help="report path (default: next to the checkpoint); a PNG goes beside it"
    )
    evaluate.add_argument("--batch-size", type=int, default=64)
    evaluate.add_argument("--device", default="auto", choices=DEVICES)
    evaluate.set_defaults(func=cmd_eval)

    ablate = sub.add_parser(
        "ablate",
        help="test-time ablations of the cross-modal attention: is the fusion alive and used?",
        description="Evaluate a checkpoint unchanged and with one intervention at a time: every CMQKA branch zeroed, "
        "per stage; CMQKA keys from the query's own modality (cross-modal link cut); one fusion factor kept, the other "
        "replaced by its training-set mean; SSA branches zeroed; all attention zeroed. Prints accuracy and change per "
        "row and the firing rate of each attention branch's output neurons.",
    )
    ablate.add_argument("checkpoint", type=Path)
    add_data_arguments(ablate)
    ablate.add_argument("--split", default="test", help="split to evaluate (default: %(default)s)")
    ablate.add_argument("--samples", type=int, help="evaluate the first N samples of the split only (default: all)")
    ablate.add_argument(
        "--mean-samples",
        type=int,
        default=512,
        help="training samples averaged for the single-factor rows (default: %(default)s)",
    )
    ablate.add_argument("--json", type=Path, help="write the rows and branch statistics as JSON")
    ablate.add_argument("--batch-size", type=int, default=64)
    ablate.add_argument("--device", default="auto", choices=DEVICES)
    ablate.set_defaults(func=cmd_ablate)

    parity = sub.add_parser(
        "parity",
        help="same checkpoint and batch on two devices (default CPU vs CUDA): logit difference, spike agreement",
    )
    parity.add_argument("checkpoint", type=Path)
    add_data_arguments(parity)
    parity.add_argument("--split", default="test")
    parity.add_argument("--samples", type=int, default=32, help="batch size of the comparison (default: %(default)s)")
    parity.add_argument(
        "--devices",
        nargs=2,
        default=["cpu", "cuda"],
        choices=DEVICES,
        metavar="DEVICE",
        help="the two devices to compare (default: cpu cuda)",
    )
    parity.add_argument("--json", type=Path, help="write the figures as JSON")
    parity.set_defaults(func=cmd_parity)

    simulate = sub.add_parser(
        "simulate",
        help="run an exported package (snnergy-export --target lava|loihi) in Lava on CPU, with parity and energy",
        description="Simulate a --target lava package (our neuron-core processes, batched in lanes) or a --target "
        "loihi package (stock Lava processes, one sample per window of T steps) in Lava on CPU. Compares predictions "
        "and every spike with the PyTorch checkpoint the package was exported from (recorded in its manifest, or "
        "--checkpoint) on the same inputs, and prints the energy report from the spikes Lava counted.",
    )
    simulate.add_argument("package", type=Path, help="directory written by snnergy-export --target lava or loihi")
    add_data_arguments(simulate)
    simulate.add_argument("--split", default="test", help="split to simulate (default: %(default)s)")
    simulate.add_argument("--samples", type=int, default=64, help="first N samples of the split (default: %(default)s)")
    simulate.add_argument(
        "--mode",
        choices=("float", "fixed"),
        default="float",
        help="float: Lava floating-point models; fixed: Loihi bit-accurate (needs --fixed-point at export)",
    )
    simulate.add_argument(
        "--lanes",
        type=int,
        default=16,
        help="samples simulated side by side (default: %(default)s; a --target loihi package runs one at a time)",
    )
    simulate.add_argument(
        "--grouping",
        choices=("block", "population"),
        default="block",
        help="what one Lava process runs: every population of a block and modality (fewer processes "
        "to synchronise each step), or each population alone (default: %(default)s)",
    )
    simulate.add_argument(
        "--checkpoint", type=Path, help="PyTorch reference (default: the package's source checkpoint)"
    )
    simulate.add_argument(
        "--cost-model",
        help="energy cost model: a built-in name or a YAML file (default: loihi for a --target loihi package, "
        "else 45nm)",
    )
    simulate.add_argument(
        "--timeout", type=float, help="seconds before a hung Lava run is killed (default: scaled to the run)"
    )
    simulate.add_argument(
        "--json", type=Path, help="write predictions, agreement, spikes per population and energy as JSON"
    )
    simulate.set_defaults(func=cmd_simulate)

    check = sub.add_parser(
        "nir-check",
        help="run an exported .nir part by part in stock NIR consumers (nirtorch, norse) against our reference",
        description="Split the graph into the largest parts a consumer can build (node types tried one by one; "
        "our extension subgraphs, which they refuse, never included), run each on the reference executor's "
        "values of its inputs, and report the spike agreement (neurons) and largest difference (real values) of "
        "its output, or the consumer's error. Prints the interop matrix (docs/export-nir.md).",
    )
    check.add_argument("file", type=Path, help="a .nir file (snnergy-export --target nir)")
    check.add_argument(
        "--consumer",
        nargs="+",
        choices=("nirtorch", "norse"),
        default=["nirtorch", "norse"],
        help="consumers to run (default: both)",
    )
    add_data_arguments(check)
    check.add_argument("--split", default="test", help="split whose first samples are the inputs (default: test)")
    check.add_argument("--samples", type=int, default=8, help="samples run (default: %(default)s)")
    check.add_argument("--json", type=Path, help="write every part's result as JSON")
    check.set_defaults(func=cmd_nir_check)

    fit = sub.add_parser(
        "loihi-fit",
        help="neurons, synapses, memory and neurocores per population on Loihi 2, and what stays on the host",
        description="Place every population of the exported network on neurocores of its own (export.loihi_map: "
        "LIF populations and CMQKA's product neurons; the frames, time means, SSA attention and readout stay on the "
        "host, each with why) and count its neurons, synaptic connections, weights stored with shared convolution "
        "kernels or one per connection, and the neurocores and chips it needs under published chip limits "
        "(export/loihi_limits/*.yaml, with sources; docs/loihi.md).",
    )
    fit.add_argument("path", type=Path, help="a checkpoint, a .nir file or an exported Lava package directory")
    fit.add_argument(
        "--chip", default="loihi2", help="built-in chip limits (loihi2) or a YAML file with the same fields"
    )
    fit.add_argument("--json", type=Path, help="also write the whole report as JSON")
    fit.set_defaults(func=cmd_loihi_fit)

    finetune = sub.add_parser(
        "finetune",
        help="quantisation-aware fine-tuning for Loihi: train the integers, write a fixed-point --target loihi package",
        description="Start from the fixed-point parameters snnergy-export --target loihi --fixed-point writes and "
        "train every synapse's 8-bit weight mantissa with Loihi's arithmetic in the loop (lava_runtime."
        "fixed_emulation: Lava's weight clipping, floor shifts, truncated 12-bit decays, 24-bit registers, v > vth "
        "<< 6; straight-through gradients, a surrogate spike). Thresholds, decays, biases and the host's readout stay "
        "as exported. Writes the package of the trained integers; snnergy simulate DIR --mode fixed runs it in Lava "
        "and compares it with the same integers in PyTorch. An interrupted run resumes from OUT.finetune-state.pt.",
    )
    finetune.add_argument("checkpoint", type=Path, help="the float checkpoint to start from")
    finetune.add_argument(
        "--quantize", required=True, choices=["loihi"], help="the arithmetic to train with (Loihi 2's fixed point)"
    )
    finetune.add_argument("--out", type=Path, help="package directory (default: CHECKPOINT-qat.loihi beside it)")
    add_data_arguments(finetune)
    finetune.add_argument("--epochs", type=int, default=2, help="passes over the training split (default: %(default)s)")
    finetune.add_argument("--batch-size", type=int, default=16, help="default: %(default)s")
    finetune.add_argument(
        "--lr", type=float, default=0.05, help="Adam step in weight-mantissa units (default: %(default)s)"
    )
    finetune.add_argument("--seed", type=int, default=0, help="shuffling seed (default: %(default)s)")
    finetune.add_argument("--train-samples", type=int, help="train on the first N training items only")
    finetune.add_argument("--eval-samples", type=int, help="report accuracy on the first N test items only")
    finetune.add_argument("--json", type=Path, help="also write the before/after record as JSON")
    finetune.set_defaults(func=cmd_finetune)

    benchmark = sub.add_parser(
        "benchmark",
        help="train every baseline and ablation (snnergy/benchmark.yaml) with one budget; "
        "table of accuracy, SOPs, energy",
        description="Train each model of snnergy/benchmark.yaml (fusion baselines, S-CMRL's attention, the ANN "
        "counterpart, single modalities, SNNergy ablations) with the same recipe, budget and seeds; evaluate on the "
        "held-out split; count SOPs/MACs and energy on real inputs. Writes OUT/benchmark.{md,json,png}; finished runs "
        "are kept, so an interrupted benchmark resumes.",
    )
    add_data_arguments(benchmark)
    benchmark.add_argument(
        "--out", type=Path, default=Path("runs/benchmark"), help="output directory (default: %(default)s)"
    )
    benchmark.add_argument(
        "--epochs", type=int, default=3, help="training budget per model and seed (default: %(default)s)"
    )
    benchmark.add_argument("--max-minutes", type=float, help="also stop each run after this wall time")
    benchmark.add_argument("--seeds", type=int, default=1, help="seeds per model: 0 .. N-1 (default: %(default)s)")
    benchmark.add_argument("--ablation-seeds", type=int, help="seeds per ablation (default: --seeds)")
    benchmark.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="runs side by side, each a process of its own with CPU cores / JOBS threads (default: %(default)s)",
    )
    benchmark.add_argument("--image-size", type=int, help="override every entry's input side, e.g. 64")
    benchmark.add_argument(
        "--only", nargs="+", metavar="ENTRY", help="entries to run (slugs, e.g. snnergy-cmqka-hybrid t-1)"
    )
    benchmark.add_argument("--size", help="re-base every entry on this preset's sizes, e.g. s or b for real datasets")
    benchmark.add_argument("--split", default="test")
    benchmark.add_argument(
        "--energy-samples", type=int, default=64, help="test samples whose spikes are counted (default: %(default)s)"
    )
    benchmark.add_argument("--device", default="auto", choices=DEVICES)
    benchmark.add_argument("--limit-train-batches", type=int, help="batches per epoch (smoke runs)")
    benchmark.set_defaults(func=cmd_benchmark)

    from snnergy.cli.energy import add_energy_commands

    add_energy_commands(sub)

    from snnergy.cli.export import add_export_arguments, run_export

    export = sub.add_parser("export", help="export a checkpoint to NIR, Lava or ONNX (same as snnergy-export)")
    add_export_arguments(export)
    export.set_defaults(func=run_export)

    demo = sub.add_parser("demo", help="the main job on the embedded default (what `make demo` runs)")
    demo.add_argument("--out", type=Path, default=Path("runs/demo"), help="output directory (default: %(default)s)")
    demo.set_defaults(func=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    return run_reporting_errors(f"snnergy {args.command}", args.func, args)


if __name__ == "__main__":
    sys.exit(main())
