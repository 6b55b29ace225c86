"""The ``--target lava`` package format: what ``export.lava_package`` writes and
``lava_runtime`` reads, and nothing else.

Both sides import this module and neither imports the other's internals, so the runtime
(which forks dozens of Lava workers) never loads the PyTorch model, SpikingJelly or the
dataset code. It needs only ``json``, ``hashlib`` and numpy.

Contents: the manifest (format name, versions, file roles, content hashes) and its checks;
the graph's time convention (``DT``); the fixed-point arrays (their key names and the Loihi
bit widths that bound them) and the one bias encoding both sides use.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

FORMAT = "snnergy-lava-package"
FORMAT_VERSION = 3  # 2: content hashes and model fingerprint; 3: nodes named by module path
KNOWN_VERSIONS = (3,)  # older packages name populations otherwise than the model and its reports
MANIFEST = "manifest.json"
GRAPH_FILE, ENERGY_FILE, FIXED_FILE = "model.nir", "energy.json", "fixed_point.npz"

DT = 1e-3  # seconds per SpikingJelly timestep in the graph's continuous NIR parameters

# Loihi bit widths (lava-nc's bit-accurate LIF and Dense models)
WEIGHT_MAX = 254  # mixed-sign 8-bit weights keep even values in [-256, 254]
EXCITATORY_MAX = 255  # 8-bit weights of one sign
VTH_MAX = 2**17 - 1
BIAS_MANT_MAX = 2**12 - 1  # 13-bit signed mantissa
BIAS_EXP_MAX = 7  # 3-bit exponent
DECAY_ONE = 4096  # 12-bit decays: dv = DECAY_ONE / tau
ACTIVATION_SHIFT = 6  # Lava shifts activations and thresholds (not biases) left by 6
FRAC_BITS = 12  # fractional bits of real values (graded spikes) in fixed point
# SpikingJelly fires on v >= vth, Lava on v > vth << 6: with integer membranes exact ties
# happen. One LSB of bias per step (1/64 of a weight unit; the bias is not shifted by 6)
# turns a tie into a spike and moves no other decision.
TIE_BREAK = 1


# ----------------------------------------------------------------- fixed-point array keys
def population_key(population: str, field: str) -> str:
    """``scale``, ``dv``, ``du``, ``vth_mant`` or ``direct_weight`` of a LIF population."""
    return f"{population}/{field}"


def synapse_key(population: str, source: str, field: str) -> str:
    """``weight_mant``, ``bias_mant`` or ``bias_exp`` of the synaptic node ``source`` feeding
    ``population``."""
    return f"{population}/in/{source}/{field}"


def bias_to_fixed(bias_units: np.ndarray) -> tuple[np.ndarray, int]:
    """``bias_mant << bias_exp`` closest to ``bias_units``: the smallest exponent whose
    mantissa fits 13 bits (one exponent per population, as Loihi stores it)."""
    values = np.asarray(bias_units, dtype=np.float64)
    largest = float(np.abs(values).max()) if values.size else 0.0
    exponent = 0
    while exponent < BIAS_EXP_MAX and largest / 2**exponent > BIAS_MANT_MAX:
        exponent += 1
    mantissa = np.clip(np.round(values / 2**exponent), -BIAS_MANT_MAX, BIAS_MANT_MAX).astype(np.int32)
    return mantissa, exponent


def fixed_bias(fixed: dict[str, np.ndarray], population: str, synapses: list[str], channels: int) -> tuple:
    """A LIF's bias in fixed point: the sum of its input synapses' ``bias_mant << bias_exp``
    plus ``TIE_BREAK``, re-encoded as one mantissa per channel and one exponent."""
    total = np.zeros(channels, dtype=np.int64)
    for synapse in synapses:
        key = synapse_key(population, synapse, "bias_mant")
        if key in fixed:
            exponent = int(fixed[synapse_key(population, synapse, "bias_exp")])
            total += fixed[key].astype(np.int64).reshape(channels) << exponent
    mantissa, exponent = bias_to_fixed(total + TIE_BREAK)
    return mantissa, exponent


def constant_weight(value: float) -> tuple[int, int]:
    """A synapse's one constant real weight (CMQKA's token mean: scale / area) reading binary
    spikes and emitting ``FRAC_BITS`` reals: an excitatory 8-bit mantissa and the smallest
    non-negative exponent that fits it, ``value * 2**FRAC_BITS ~ mantissa << exponent``."""
    weight = float(value) * (1 << FRAC_BITS)
    exponent = max(0, math.ceil(math.log2(weight / EXCITATORY_MAX)))
    return round(weight / 2**exponent), exponent


def to_fixed(values: np.ndarray) -> np.ndarray:
    """Real values as integers with ``FRAC_BITS`` fractional bits."""
    return np.round(np.asarray(values, dtype=np.float64) * (1 << FRAC_BITS)).astype(np.int64)


# ----------------------------------------------------------------- manifest
def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def read_manifest(package_dir: str | Path) -> dict[str, Any]:
    """The manifest of a package, checked before anything is run: a known format version,
    every file inside the package and unchanged since export (SHA-256), and the numbers
    that must agree (time steps, class names, dt). Every failure is one ``ValueError`` line."""
    package_dir = Path(package_dir)
    path = package_dir / MANIFEST
    if not path.is_file():
        raise ValueError(f"{package_dir} is not an SNNergy Lava package: {path} is missing")
    try:
        manifest = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{path} is not valid JSON ({error})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ValueError(f"{path} is not an SNNergy Lava package manifest")
    if manifest.get("format_version") not in KNOWN_VERSIONS:
        raise ValueError(
            f"{path}: format_version {manifest.get('format_version')!r} is not one this SNNergy "
            f"reads {KNOWN_VERSIONS}; re-export the package"
        )
    root = package_dir.resolve()
    hashes = manifest.get("hashes", {})
    for role, name in manifest["files"].items():
        file = (package_dir / name).resolve()
        if Path(name).is_absolute() or root not in file.parents:
            raise ValueError(f"{path}: the {role} file {name!r} lies outside the package; re-export the package")
        if not file.is_file():
            raise ValueError(f"{package_dir}: file {name} named in the manifest is missing")
        if name in hashes and sha256(file) != hashes[name]:
            raise ValueError(
                f"{package_dir}: {name} changed since export (SHA-256 differs from the manifest); re-export the package"
            )
    if manifest["format_version"] >= 2 and set(hashes) != set(manifest["files"].values()):
        raise ValueError(f"{path}: the manifest lists no content hash for some of its files; re-export the package")
    config = manifest["model_config"]
    if manifest["time_steps"] != config["time_steps"]:
        raise ValueError(
            f"{path}: time_steps {manifest['time_steps']} disagrees with the model's {config['time_steps']}"
        )
    if len(manifest["class_names"]) != config["num_classes"]:
        raise ValueError(
            f"{path}: {len(manifest['class_names'])} class names for a model with {config['num_classes']} classes"
        )
    if not isinstance(manifest.get("dt"), (int, float)) or not manifest["dt"] > 0:
        raise ValueError(f"{path}: dt must be a positive number of seconds, got {manifest.get('dt')!r}")
    return manifest
