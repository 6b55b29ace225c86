"""``snnergy simulate``: run an exported Lava package on real inputs and prove it.

A composition root like ``snnergy.cli`` and ``snnergy.demo``: it joins the data layer,
the Lava runtime (which reads only the package's files), the PyTorch model the package
was exported from (the parity reference) and ``energy/`` (which accounts the spikes Lava
counted against the package's ``energy.json``).

Agreement figures are fractions in [0, 1] over the same inputs:
``prediction_agreement`` (argmax of the logits), ``spike_agreement`` (every neuron at every
timestep of every sample, over all populations), per-population agreement, and the SOPs
counted from each side's spikes.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

DEFAULT_SAMPLES = 64
DEFAULT_LANES = 16


def load_inputs(
    package_manifest: dict[str, Any],
    dataset: str,
    split: str,
    samples: int,
    data_root=None,
    cache_dir=None,
    options=None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The first ``samples`` items of a split, encoded for the package's model: audio, video, labels."""
    from snnergy.config import ModelConfig
    from snnergy.data.registry import dataset_for_model

    config = ModelConfig.from_dict(package_manifest["model_config"])
    data = dataset_for_model(dataset, split, config, data_root, cache_dir, **(options or {}))
    if len(data) == 0:
        raise ValueError(f"dataset {dataset} split {split} is empty")
    count = min(samples, len(data))
    items = [data[i] for i in range(count)]
    audio = torch.stack([torch.as_tensor(item[0]) for item in items]).numpy()
    video = torch.stack([torch.as_tensor(item[1]) for item in items]).numpy()
    labels = np.array([int(item[2]) for item in items])
    return audio, video, labels


def _reference_checkpoint(manifest: dict[str, Any], checkpoint: str | Path | None) -> Path:
    """The PyTorch checkpoint to compare against: ``checkpoint`` or the package's recorded source."""
    if checkpoint is not None:
        path = Path(checkpoint)
        if not path.is_file():
            raise ValueError(f"checkpoint {path} does not exist")
        return path
    source = manifest.get("source_checkpoint")
    if not source:
        raise ValueError("the package records no source checkpoint; pass --checkpoint (the .pt it was exported from)")
    path = Path(source["path"])
    if not path.is_file():
        raise ValueError(f"the package's source checkpoint {path} is missing; pass --checkpoint")
    if hashlib.sha256(path.read_bytes()).hexdigest() != source["sha256"]:
        raise ValueError(
            f"{path} changed since the package was exported (SHA-256 differs); re-export, or pass --checkpoint"
        )
    return path


def _check_belongs_together(package: Any, description: Any, reference: Path) -> None:
    """Before Lava starts: the energy description counts the graph's populations, and the
    reference checkpoint is the package's model (its fingerprint)."""
    import nir

    from snnergy.checkpoint import load_checkpoint

    if description.time_steps != package.time_steps:
        raise ValueError(
            f"{package.path}: the energy description is for T={description.time_steps}, the graph runs "
            f"T={package.time_steps}"
        )
    for population in description.populations:
        node = package.graph.nodes.get(population.name)
        if population.computed_from:
            continue
        if not isinstance(node, nir.LIF) or int(np.asarray(node.tau).size) != population.neurons:
            raise ValueError(
                f"{package.path}: the energy description's population {population.name} ({population.neurons} neurons) "
                "is not in the graph with that size; the package's files come from different models"
            )
    expected = package.manifest.get("fingerprint")
    if expected is not None and load_checkpoint(reference).fingerprint() != expected:
        raise ValueError(f"{reference} is not the model this package was exported from (its fingerprint differs)")


def pytorch_reference(
    checkpoint_path: Path, audio: np.ndarray, video: np.ndarray, batch_size: int = 32
) -> tuple[np.ndarray, dict[str, np.ndarray], Any]:
    """Logits and spike trains (``[samples, T, ...]`` per population) of the PyTorch model."""
    from energy.torch_probe import SpikeProbe, describe_model
    from snnergy.checkpoint import load_checkpoint

    model = load_checkpoint(checkpoint_path).build_model().eval()
    description = describe_model(model)
    logits = []
    with SpikeProbe(model, description, keep_trains=True) as probe, torch.no_grad():
        for start in range(0, len(audio), batch_size):
            a = torch.from_numpy(audio[start : start + batch_size]).float()
            v = torch.from_numpy(video[start : start + batch_size]).float()
            logits.append(model(a, v))
    trains = {name: train.numpy() for name, train in probe.spike_trains().items()}  # NIR names are module paths
    return torch.cat(logits).numpy(), trains, probe.spike_counts()


def spike_counts_of(trains: dict[str, np.ndarray], time_steps: int, static_inputs: tuple[str, ...] = ()):
    """``energy.accounting.SpikeCounts`` from ``[samples, T, ...]`` spike trains."""
    from energy.accounting import SpikeCounts

    samples = len(next(iter(trains.values())))
    counts = {
        name: tuple(float(v) for v in train.reshape(samples, time_steps, -1).sum(axis=(0, 2)))
        for name, train in trains.items()
    }
    return SpikeCounts(samples, time_steps, counts, static_inputs)


def static_modalities(**inputs: np.ndarray) -> tuple[str, ...]:
    """The modalities whose ``[samples, T, ...]`` inputs repeat one frame over T (direct encoding)."""
    return tuple(sorted(m for m, x in inputs.items() if bool((x == x[:, :1]).all())))


def agreement(lava: dict[str, np.ndarray], reference: dict[str, np.ndarray]) -> tuple[float, dict[str, float]]:
    """Fraction of equal spike values over every population (reshaped to Lava's layout)."""
    per_population, equal, total = {}, 0, 0
    for name, spikes in lava.items():
        expected = reference[name].reshape(spikes.shape)
        same = int((expected == spikes).sum())
        per_population[name] = same / spikes.size
        equal, total = equal + same, total + spikes.size
    return equal / total, per_population


def with_stock_support(description: Any, plan: Any) -> Any:
    """``description`` plus the neurons the stock form adds (``StockPlan.support``): each relay
    a population in the stage of the population it copies, fed by an identity synapse (one SOP
    per arriving spike); each clock a one-neuron population whose spike reaches every neuron of
    the relays it gates. None of them has an ANN equivalent (no dense ops)."""
    import dataclasses

    from energy.accounting import LayerInput, Population, SynapticLayer

    processes = plan.processes
    known = {p.name: p for p in description.populations}

    def neurons(name: str) -> int:
        return int(np.prod(processes[name].shape))

    def feed(relay: str, kind: str) -> tuple[str, str]:
        """(synapse, its upstream) of ``relay``'s input of ``kind`` (sparse or clock_synapse)."""
        synapse = next(s for s, _ in processes[relay].inputs if processes[s].kind == kind)
        return synapse, processes[synapse].inputs[0][0]

    def origin(name: str) -> Population:
        while name not in known:
            name = feed(name, "sparse")[1]
        return known[name]

    populations, layers = [], []
    relays = [n for n in plan.support if processes[n].kind == "relay"]
    for relay in relays:
        source = origin(relay)
        synapse, upstream = feed(relay, "sparse")
        populations.append(Population(relay, source.stage, neurons(relay), "relay", source.modality))
        inputs = (LayerInput((upstream,), 1.0, neurons(upstream)),)
        layers.append(SynapticLayer(synapse, source.stage, "relay", 0, inputs, modality=source.modality))
    taps = [r for r in relays if any(processes[s].kind == "clock_synapse" for s, _ in processes[r].inputs)]
    for clock in (n for n in plan.support if processes[n].kind == "clock"):
        gated = [(r, g) for r, g in ((r, feed(r, "clock_synapse")) for r in taps) if g[1] == clock]
        stage = origin(gated[0][0]).stage if gated else description.stages[0]
        populations.append(Population(clock, stage, 1, "clock"))
        for relay, (synapse, _) in gated:
            inputs = (LayerInput((clock,), float(neurons(relay)), 1),)
            layers.append(SynapticLayer(synapse, stage, "relay_gate", 0, inputs))
    return dataclasses.replace(
        description,
        populations=description.populations + tuple(populations),
        layers=description.layers + tuple(layers),
    )


def run_simulation(
    package_dir: str | Path,
    dataset: str = "avdigits",
    split: str = "test",
    samples: int = DEFAULT_SAMPLES,
    mode: str = "float",
    lanes: int = DEFAULT_LANES,
    checkpoint: str | Path | None = None,
    cost_model: str | None = None,
    data_root: str | Path | None = None,
    cache_dir: str | Path | None = None,
    dataset_options: dict[str, Any] | None = None,
    timeout: float | None = None,
    progress: bool = True,
    grouping: str = "block",
) -> dict[str, Any]:
    """Simulate, compare with PyTorch, account energy; the JSON document of ``snnergy simulate``."""
    from energy.accounting import account, description_from_dict
    from energy.cost_model import load_cost_model
    from energy.report import build_report
    from export.stock_plan import build_stock_plan
    from lava_runtime.network import load_package, simulate
    from lava_runtime.stock import simulate_stock

    if samples < 1:
        raise ValueError(f"--samples must be >= 1, got {samples}")
    if timeout is not None and not timeout > 0:
        raise ValueError(f"--timeout must be a positive number of seconds, got {timeout:g}")
    if lanes < 1:
        raise ValueError(f"--lanes must be >= 1, got {lanes}")
    package = load_package(package_dir)
    stock = package.manifest.get("target") == "loihi"
    cost = load_cost_model(cost_model or ("loihi" if stock else "45nm"))
    reference_path = _reference_checkpoint(package.manifest, checkpoint)
    description = description_from_dict(json.loads((package.path / package.manifest["files"]["energy"]).read_text()))
    _check_belongs_together(package, description, reference_path)
    audio, video, labels = load_inputs(package.manifest, dataset, split, samples, data_root, cache_dir, dataset_options)
    if stock:  # stock Lava processes, one sample per window (no lanes, no grouping)
        result = simulate_stock(package, audio, video, mode=mode, timeout=timeout, progress=progress)
    else:
        result = simulate(
            package, audio, video, mode=mode, lanes=lanes, timeout=timeout, progress=progress, grouping=grouping
        )
    torch_logits, torch_trains, torch_counts = pytorch_reference(reference_path, audio, video)
    spike_agreement, per_population = agreement(result.spikes, torch_trains)

    static = static_modalities(audio=audio, video=video)
    lava_account = account(description, spike_counts_of(result.spikes, package.time_steps, static))
    torch_account = account(description, spike_counts_of(torch_trains, package.time_steps, static))
    simulator = f"lava-nc {'stock processes' if stock else 'neuron cores'} ({mode} point)"
    meta = {"package": str(package_dir), "dataset": dataset, "split": split, "simulator": simulator}
    report = build_report(lava_account, cost, meta)
    support = None
    if stock:  # the energy of what ran: the model's populations and the relays and clocks the stock form adds
        plan = build_stock_plan(package.graph, package.time_steps, package.manifest["placement"])
        trains = {**result.spikes, **result.support_spikes}
        full = account(with_stock_support(description, plan), spike_counts_of(trains, package.time_steps, static))
        model_only, report = report, build_report(full, cost, meta)
        support = _support_summary(plan, result.support_spikes, len(labels), full, report, model_only)
    energy = report.to_dict()
    predictions, torch_predictions = result.predictions, torch_logits.argmax(axis=1)
    worst = min(per_population, key=per_population.get)
    document = {
        "package": str(package_dir),
        "reference_checkpoint": str(reference_path),
        "dataset": dataset,
        "split": split,
        "mode": mode,
        "samples": int(len(labels)),
        "accuracy": float((predictions == labels).mean()),
        "pytorch_accuracy": float((torch_predictions == labels).mean()),
        "prediction_agreement": float((predictions == torch_predictions).mean()),
        "spike_agreement": float(spike_agreement),
        "least_agreeing_population": {"name": worst, "agreement": per_population[worst]},
        "max_abs_logit_difference": float(np.abs(result.logits - torch_logits).max()),
        "sops": {"lava": lava_account.total.sops, "pytorch": torch_account.total.sops},  # per inference
        "spikes_per_population": {name: float(train.sum()) / len(labels) for name, train in result.spikes.items()},
        "population_agreement": per_population,
        "predictions": predictions.tolist(),
        "labels": labels.tolist(),
        "lava": {
            "lanes": result.lanes,
            "steps": result.steps,
            "pipeline_latency_steps": result.latency,
            "processes": result.processes,
            "process_counts": result.process_counts,
            "grouping": result.grouping,
            "lava_processes": result.lava_processes,
            "compile_seconds": result.compile_seconds,
            "run_seconds": result.run_seconds,
            "memory_mib": result.memory_mib,
            "os_processes": result.os_processes,
        },
        "energy": energy,
    }
    if support is not None:
        document["stock_support"] = support
    if stock and mode == "fixed":
        document["fixed_point_emulation"] = _emulation_agreement(package, audio, video, labels, result)
    if stock and package.manifest.get("netx"):
        document["netx"] = _netx_agreement(package, audio, video, torch_trains, timeout)
    return document


def _support_summary(plan: Any, spikes: dict, samples: int, full: Any, report: Any, model_only: Any) -> dict:
    """What the relays and clocks of the stock form add, per inference."""
    kinds = {"relay": 0, "clock": 0}
    for name in plan.support:
        kinds[plan.processes[name].kind] += int(np.prod(plan.processes[name].shape))
    sops = sum(layer.sops for layer in full.layers if layer.kind in ("relay", "relay_gate"))
    return {
        "relay_neurons": kinds["relay"],
        "clock_neurons": kinds["clock"],
        "spikes": float(sum(train.sum() for train in spikes.values())) / samples,
        "sops": sops,
        "energy_uj": report.total.energy_uj - model_only.total.energy_uj,
        "included_in_energy": True,
    }


def _emulation_agreement(package: Any, audio: np.ndarray, video: np.ndarray, labels: np.ndarray, result: Any) -> dict:
    """Lava's fixed-point run against the same integers computed in PyTorch
    (``lava_runtime.fixed_emulation``): the model quantisation-aware fine-tuning trains."""
    from lava_runtime.fixed_emulation import FixedPointEmulation

    emulation = FixedPointEmulation(package.graph, package.time_steps, package.manifest["placement"])
    with torch.no_grad():
        out = emulation.run(torch.from_numpy(audio), torch.from_numpy(video), package.fixed)
    trains = {name: spikes.numpy().astype(bool) for name, spikes in out.spikes.items()}
    spike_agreement, per_population = agreement(result.spikes, trains)
    predictions = out.logits.numpy().argmax(axis=1)
    worst = min(per_population, key=per_population.get)
    return {
        "reference": "the package's fixed-point integers in PyTorch (lava_runtime.fixed_emulation)",
        "accuracy": float((predictions == labels).mean()),
        "prediction_agreement": float((predictions == result.predictions).mean()),
        "spike_agreement": float(spike_agreement),
        "least_agreeing_population": {"name": worst, "agreement": per_population[worst]},
        "max_abs_logit_difference": float(np.abs(result.logits - out.logits.numpy()).max()),
    }


def _netx_agreement(package: Any, audio: np.ndarray, video: np.ndarray, trains: dict, timeout: float | None) -> dict:
    """The package's lava-dl netx chains run in Lava fixed point, agreement per population."""
    from lava_runtime.netx_run import run_netx

    spikes = run_netx(package, {"audio": audio, "video": video}, timeout)
    _, per_population = agreement(spikes, trains)
    return {
        "mode": "fixed point, stock netx.hdf5.Network",
        "files": [chain["file"] for chain in package.manifest["netx"]],
        "input_bits": {chain["input"]: chain["input_bits"] for chain in package.manifest["netx"]},
        "population_agreement": per_population,
    }


def format_summary(result: dict[str, Any]) -> str:
    lava = result["lava"]
    lines = [
        f"Lava ({'floating' if result['mode'] == 'float' else 'fixed'} point) on {result['samples']} "
        f"{result['dataset']}/{result['split']} samples: "
        f"{lava['processes']} processes in {lava['lava_processes']} Lava processes ({lava['grouping']}), "
        f"{lava['lanes']} lanes, {lava['steps']} steps (pipeline latency {lava['pipeline_latency_steps']}), "
        f"compile {lava['compile_seconds']:.1f} s, run {lava['run_seconds']:.1f} s",
        f"accuracy            Lava {result['accuracy']:.4f} | PyTorch {result['pytorch_accuracy']:.4f}",
        f"prediction agreement {result['prediction_agreement']:.4f}",
        f"spike agreement      {result['spike_agreement']:.6f} (least: {result['least_agreeing_population']['name']} "
        f"{result['least_agreeing_population']['agreement']:.6f})",
        f"SOPs per inference   Lava {result['sops']['lava']:,.0f} | PyTorch {result['sops']['pytorch']:,.0f}",
    ]
    if "fixed_point_emulation" in result:
        emulated = result["fixed_point_emulation"]
        lines.append(
            f"vs the same integers in PyTorch: predictions {emulated['prediction_agreement']:.4f}, "
            f"spikes {emulated['spike_agreement']:.6f} (accuracy {emulated['accuracy']:.4f})"
        )
    if "netx" in result:
        rates = result["netx"]["population_agreement"]
        lines.append(
            f"lava-dl netx chains  {len(rates)} populations in fixed point: spike agreement "
            + ", ".join(f"{name} {rate:.4f}" for name, rate in rates.items())
        )
    return "\n".join(lines)
