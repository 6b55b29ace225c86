"""Hardware cost models as data: energy per SOP, per MAC, per neuron update, per spike.

Built-in models are YAML files in ``energy/cost_models/`` (selected by name: ``45nm``,
``loihi``); a user adds one by passing the path of a YAML or JSON file with the same
fields. Numbers live in those files with their published source, never in code.

Required fields::

    name: my-chip
    source: where the numbers come from
    energy_pj: {synaptic_op: ..., mac: ..., neuron_update: ..., spike: ...}

``description`` is optional.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

BUILTIN_DIR = Path(__file__).resolve().parent / "cost_models"
DEFAULT_COST_MODEL = "45nm"
ENERGY_FIELDS = ("synaptic_op", "mac", "neuron_update", "spike")


class CostModelError(ValueError):
    """A cost model name is unknown or its file is unreadable or incomplete."""


@dataclass(frozen=True)
class CostModel:
    """Energies in picojoules of the four event types the accounting counts."""

    name: str
    synaptic_op_pj: float
    mac_pj: float
    neuron_update_pj: float
    spike_pj: float
    source: str
    description: str = ""
    path: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CostModel:
        return cls(**data)


def builtin_cost_models() -> list[str]:
    return sorted(p.stem for p in BUILTIN_DIR.glob("*.yaml"))


def _read(path: Path) -> Any:
    try:
        text = path.read_text()
    except OSError as error:
        raise CostModelError(f"cannot read cost model file {path}: {error}") from error
    try:
        return json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as error:
        raise CostModelError(
            f"cost model file {path} is not valid {path.suffix.lstrip('.').upper() or 'YAML'}: {error}"
        ) from error


def parse_cost_model(data: Any, origin: str) -> CostModel:
    """Validate a cost model mapping; every error names the missing or bad field and ``origin``."""
    if not isinstance(data, dict):
        raise CostModelError(f"cost model file {origin}: expected a mapping of fields, got {type(data).__name__}")
    for key in ("name", "source", "energy_pj"):
        if key not in data or data[key] in (None, ""):
            raise CostModelError(f"cost model file {origin}: missing field '{key}'")
    energies = data["energy_pj"]
    if not isinstance(energies, dict):
        raise CostModelError(
            f"cost model file {origin}: field 'energy_pj' must be a mapping of {', '.join(ENERGY_FIELDS)}"
        )
    values = {}
    for key in ENERGY_FIELDS:
        if key not in energies or energies[key] is None:
            raise CostModelError(f"cost model file {origin}: missing field 'energy_pj.{key}'")
        value = energies[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise CostModelError(
                f"cost model file {origin}: field 'energy_pj.{key}' must be a number >= 0 (pJ), got {value!r}"
            )
        values[key] = float(value)
    unknown = sorted(set(energies) - set(ENERGY_FIELDS))
    if unknown:
        raise CostModelError(
            f"cost model file {origin}: unknown field(s) {', '.join('energy_pj.' + u for u in unknown)}"
        )
    return CostModel(
        name=str(data["name"]),
        synaptic_op_pj=values["synaptic_op"],
        mac_pj=values["mac"],
        neuron_update_pj=values["neuron_update"],
        spike_pj=values["spike"],
        source=" ".join(str(data["source"]).split()),
        description=str(data.get("description", "")),
        path=origin,
    )


def load_cost_model(name_or_path: str | Path) -> CostModel:
    """A built-in model by name (``45nm``, ``loihi``) or a model from a YAML/JSON file path."""
    text = str(name_or_path)
    if text in builtin_cost_models():
        path = BUILTIN_DIR / f"{text}.yaml"
        return parse_cost_model(_read(path), str(path))
    path = Path(text).expanduser()
    if path.suffix.lower() in (".yaml", ".yml", ".json") or path.exists():
        if not path.is_file():
            raise CostModelError(f"cost model file not found: {path}")
        return parse_cost_model(_read(path), str(path))
    raise CostModelError(
        f"unknown cost model {text!r}: give one of {', '.join(builtin_cost_models())} or the path of a YAML/JSON file"
    )
