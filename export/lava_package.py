"""``--target lava``: a directory the Lava runtime loads without the PyTorch model.

    model.nir          the whole network (export.nir_model), float parameters
    manifest.json      model config, class names, T, dt, input shapes, extensions,
                       quantisation settings, versions, file list, source checkpoint
    energy.json        the populations and synaptic layers ``energy/`` accounts, with
                       populations named by their NIR nodes (so Lava's counts fit it)
    fixed_point.npz    (--fixed-point) Loihi integer parameters per neuron population

Fixed point follows lava-nc's bit-accurate LIF / Dense models (verified in
tests/test_lava_smoke.py, docs/lava.md) and lava-dl's CUBA conventions:

* SpikingJelly's ``v' = v + (x - v) / tau`` is Lava's ``v' = v (4096 - dv) / 4096 + u`` with
  ``dv = 4096 / tau`` (12 bit) and ``u = a`` every step (``du = 4095`` clears the current:
  lava adds 1 to du), so the input ``x`` enters through weights divided by ``tau``;
* activation and threshold are both shifted left by 6 in Lava, so one scale ``s`` per
  population maps floats to integers: ``w_mant = round(s * w / tau)`` (8 bit; mixed-sign
  matrices keep even values only, as Lava drops their lowest bit), ``vth_mant =
  round(s * vth)`` (17 bit), ``bias_mant << bias_exp = round(64 * s * b / tau)`` (bias
  is not shifted by 6; 13-bit mantissa, 3-bit exponent);
* ``s`` is the largest power of two that keeps every weight reaching the population in
  8 bits and its threshold in 17 bits: all the population's inputs share it, since they
  add into one membrane.

Lava fires on ``v > vth`` where SpikingJelly fires on ``v >= vth``: with integer membranes
an exact tie is possible, one source of the fixed-point mode's (measured) disagreement.

The format itself (file names, manifest checks, array keys, bit widths, bias encoding)
lives in :mod:`export.package_format`, which the runtime reads too.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import nir
import numpy as np

from export.nir_model import build_nir_graph, summarise
from export.package_format import (
    ACTIVATION_SHIFT,
    DECAY_ONE,
    ENERGY_FILE,
    FIXED_FILE,
    FORMAT,
    FORMAT_VERSION,
    GRAPH_FILE,
    MANIFEST,
    VTH_MAX,
    WEIGHT_MAX,
    bias_to_fixed,
    population_key,
    sha256,
    synapse_key,
)
from snnergy.atomic import staged
from snnergy.checkpoint import Checkpoint


def _versions() -> dict[str, str]:
    result = {}
    for name in ("snnergy", "nir", "lava-nc", "lava-dl", "torch", "spikingjelly"):
        try:
            result[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            result[name] = "not installed"
    return result


def even_round(values: np.ndarray) -> np.ndarray:
    """Round to the nearest even integer (Lava drops the lowest bit of mixed-sign weights)."""
    return (2 * np.round(values / 2)).astype(np.int32)


def population_scale(weights: list[np.ndarray], threshold: float) -> int:
    """Largest power of two keeping every incoming weight in 8 bits and vth in 17 bits."""
    largest = max((float(np.abs(w).max()) for w in weights if w.size), default=0.0)
    limit = min(WEIGHT_MAX / largest if largest > 0 else float("inf"), VTH_MAX / max(threshold, 1e-12))
    return int(2 ** np.floor(np.log2(limit))) if np.isfinite(limit) else 2**10


def quantise(graph: nir.NIRGraph) -> dict[str, np.ndarray]:
    """Integer parameters of every LIF population and of the synaptic nodes feeding it."""
    sources_of = defaultdict(list)
    for source, target in graph.edges:
        sources_of[target].append(source)
    arrays: dict[str, np.ndarray] = {}
    for name, node in graph.nodes.items():
        if not isinstance(node, nir.LIF):
            continue
        tau_steps = float(np.asarray(node.tau).flat[0]) / float(graph.metadata["dt"])
        threshold = float(np.asarray(node.v_threshold).flat[0])
        synapses = [s for s in sources_of[name] if isinstance(graph.nodes[s], (nir.Conv2d, nir.Affine))]
        direct = [s for s in sources_of[name] if s not in synapses]  # spikes or values arriving with weight 1
        effective = {s: np.asarray(graph.nodes[s].weight, dtype=np.float64) / tau_steps for s in synapses}
        unit = [np.array([1.0 / tau_steps])] if direct else []
        scale = population_scale(list(effective.values()) + unit, threshold)
        arrays[population_key(name, "scale")] = np.array(scale, dtype=np.int64)
        # memoryless threshold units (tau = one step) get the largest 12-bit decay: 1/4096 of v remains
        arrays[population_key(name, "dv")] = np.array(min(DECAY_ONE - 1, round(DECAY_ONE / tau_steps)), dtype=np.int32)
        arrays[population_key(name, "du")] = np.array(DECAY_ONE - 1, dtype=np.int32)
        arrays[population_key(name, "vth_mant")] = np.array(round(scale * threshold), dtype=np.int32)
        arrays[population_key(name, "direct_weight")] = np.array(round(scale / tau_steps), dtype=np.int32)
        for source, weight in effective.items():
            arrays[synapse_key(name, source, "weight_mant")] = even_round(scale * weight)
            bias = np.asarray(graph.nodes[source].bias, dtype=np.float64) / tau_steps
            mantissa, exponent = bias_to_fixed((1 << ACTIVATION_SHIFT) * scale * bias)
            arrays[synapse_key(name, source, "bias_mant")] = mantissa
            arrays[synapse_key(name, source, "bias_exp")] = np.array(exponent, dtype=np.int32)
    return arrays


def energy_description(checkpoint: Checkpoint, graph: nir.NIRGraph) -> dict[str, Any]:
    """``energy.torch_probe``'s description; its populations are the graph's LIF nodes by name
    (both come from ``snnergy.topology.walk``), which is checked."""
    from energy.accounting import description_to_dict
    from energy.torch_probe import describe_model

    description = describe_model(checkpoint.build_model())
    missing = sorted(p.name for p in description.populations if not isinstance(graph.nodes.get(p.name), nir.LIF))
    if missing:
        raise RuntimeError(f"energy populations without a NIR LIF node: {missing[:5]}")
    return description_to_dict(description)


@dataclass(frozen=True)
class FineTuned:
    """Fixed-point parameters trained with Loihi's arithmetic in the loop (``snnergy finetune
    --quantize loihi``): they replace ``quantise(graph)``'s, and ``record`` says how they came."""

    arrays: dict[str, np.ndarray]
    record: dict[str, Any]


TARGETS = ("lava", "loihi")
NETX_DIR = "netx"


def write_lava_package(
    checkpoint: Checkpoint,
    out_dir: str | Path,
    fixed_point: bool = False,
    source: str | Path | None = None,
    target: str = "lava",
    fine_tuned: FineTuned | None = None,
) -> dict[str, Any]:
    """Write the package; ``source`` is the checkpoint file it came from (recorded, with its
    SHA-256, so ``snnergy simulate`` can compare against the same PyTorch model).

    ``target`` says how the runtime builds it: ``lava``, our neuron-core processes (batched);
    ``loihi``, stock Lava processes (``lava_runtime.stock``), with every node's placement on
    neurocores or the host recorded in the manifest. Both run the fixed-point parameters:
    ``quantise(graph)``'s, or ``fine_tuned``'s (the float graph stays the checkpoint's)."""
    if target not in TARGETS:
        raise ValueError(f"target must be one of {TARGETS}, got {target!r}")
    final_dir = Path(out_dir)
    with staged(final_dir) as out_dir:  # built beside the destination, moved in whole
        out_dir.mkdir()
        summary = _write_package_files(checkpoint, out_dir, fixed_point, source, target, fine_tuned)
    return {**summary, "path": str(final_dir)}


def _placement(graph: nir.NIRGraph) -> list[dict[str, str]]:
    from export.loihi_map import place

    return [
        {"node": p.node, "where": p.where, "process": p.process, "why": p.why, "graded": p.graded}
        for p in place(graph).values()
    ]


def _write_netx_chains(
    graph: nir.NIRGraph, arrays: dict[str, np.ndarray], out_dir: Path, files: dict[str, str]
) -> list[dict[str, Any]]:
    """The straight chains lava-dl netx can build, one HDF5 file each (``export.netx_chains``)."""
    from export.netx_chains import straight_chains, write_netx

    (out_dir / NETX_DIR).mkdir()
    chains = []
    for input_node, chain in straight_chains(graph).items():
        path = out_dir / NETX_DIR / f"{input_node}.h5"
        entry = write_netx(graph, arrays, input_node, chain, path)
        entry["file"] = f"{NETX_DIR}/{path.name}"
        files[f"netx {input_node}"] = entry["file"]
        chains.append(entry)
    return chains


def _write_package_files(
    checkpoint: Checkpoint,
    out_dir: Path,
    fixed_point: bool,
    source: str | Path | None,
    target: str,
    fine_tuned: FineTuned | None,
) -> dict[str, Any]:
    if fine_tuned is not None and not fixed_point:
        raise ValueError("fine-tuned fixed-point parameters need a fixed-point package")
    graph = build_nir_graph(checkpoint)
    needs_integers = fixed_point or target == "loihi"  # the netx chains are written in fixed point
    arrays = fine_tuned.arrays if fine_tuned is not None else quantise(graph) if needs_integers else {}
    nir.write(out_dir / GRAPH_FILE, graph)
    (out_dir / ENERGY_FILE).write_text(json.dumps(energy_description(checkpoint, graph)))
    config = checkpoint.model_config
    files = {"graph": GRAPH_FILE, "energy": ENERGY_FILE}
    if fixed_point:
        np.savez_compressed(out_dir / FIXED_FILE, **arrays)
        files["fixed_point"] = FIXED_FILE
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "target": target,
        "model_config": config.to_dict(),
        "class_names": list(checkpoint.class_names),
        "time_steps": config.time_steps,
        "dt": float(graph.metadata["dt"]),
        "inputs": {
            name.split(".", 1)[1]: [int(d) for d in node.input_type["input"]]
            for name, node in graph.nodes.items()
            if isinstance(node, nir.Input)
        },
        "output": "output",
        "readout": "mean over the T timesteps of the per-step logits (extension time_mean)",
        "extensions": list(graph.metadata["extensions"]),
        "quantisation": {
            "fixed_point": fixed_point,
            "weights": "8-bit mantissa, even values for mixed-sign matrices, one power-of-two scale per population",
            "decays": "12-bit out of 4096: dv = 4096 / tau, du = 4095 (current cleared every step)",
            "threshold": "vth_mant = scale * threshold (Lava compares v > vth << 6)",
            "bias": "bias_mant << bias_exp = 64 * scale * bias / tau (13-bit mantissa, 3-bit exponent)",
            "fine_tuned": None if fine_tuned is None else fine_tuned.record,
        },
        "versions": _versions(),
        "source_checkpoint": _source(source),
        "files": files,
        "hashes": {name: sha256(out_dir / name) for name in files.values()},
        "fingerprint": checkpoint.fingerprint(),
        "stages": summarise(graph),
    }
    if target == "loihi":
        manifest["placement"] = _placement(graph)
        manifest["netx"] = _write_netx_chains(graph, arrays, out_dir, files)
        manifest["hashes"] = {name: sha256(out_dir / name) for name in files.values()}
    (out_dir / MANIFEST).write_text(json.dumps(manifest, indent=2))
    return {
        "path": str(out_dir),
        "nodes": len(graph.nodes),
        "edges": len(graph.edges),
        "fixed_point": fixed_point,
        "files": sorted(files.values()) + [MANIFEST],
    }


def _source(path: str | Path | None) -> dict[str, str] | None:
    if path is None:
        return None
    path = Path(path).resolve()
    return {"path": str(path), "sha256": sha256(path)}


def run_lava_export(checkpoint: Checkpoint, args) -> int:
    out = args.out
    what = "stock-process Loihi" if args.target == "loihi" else "Lava"
    print(
        f"writing {what} package for {args.checkpoint} ({'fixed' if args.fixed_point else 'floating'} point) ...",
        flush=True,
    )
    summary = write_lava_package(checkpoint, out, args.fixed_point, source=args.checkpoint, target=args.target)
    print(
        f"wrote {summary['path']}/: {', '.join(summary['files'])} ({summary['nodes']} NIR nodes, "
        f"{summary['edges']} edges)"
    )
    return 0
