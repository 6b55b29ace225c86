"""Energy reports: one data object, rendered as a terminal table, JSON, Markdown and a PNG.

JSON schema (``format: snnergy-energy-report``, version 2): ``stages`` is a list of
objects with ``name``, ``sops``, ``macs``, ``energy_pj``, ``energy_uj``, ``ann_macs``,
``ann_energy_pj``, ``ann_ratio``, the energy split (``sop_energy_pj``, ``mac_energy_pj``,
``neuron_energy_pj``), ``spikes``, ``neuron_updates`` and ``firing_rate``; ``total`` has
the same fields. All values are per inference (averaged over ``samples``). ``layers``
and ``populations`` give the per-layer and per-population details, ``firing_rates`` the
Table-4 view, ``cost_model`` the energies used and their source, ``conventions`` the named
charging choices (``energy.accounting.EnergyConventions``), the input modalities seen
constant over T, and the counting rules.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from energy.accounting import EnergyConventions, LayerAccount, NetworkAccount, PopulationAccount
from energy.cost_model import CostModel
from energy.estimate import StageEnergy, layer_energy_pj, network_energy
from energy.firing_rates import FiringRateRow, FiringRateTable, firing_rate_table
from snnergy.atomic import atomic_savefig, atomic_write_text

FORMAT = "snnergy-energy-report"
FORMAT_VERSION = 2
COUNTING_RULES = (
    "Values are per inference, averaged over the samples run.",
    "SOPs = spikes arriving at a layer x fan-out (mean fan-out = dense ops / input positions), i.e. input rate x "
    "T x dense ops.",
    "A layer reading a residual stream X + alpha*P + M receives the spikes of every constituent spike train.",
    "MACs = dense ops of layers fed by real values: stem conv and shortcut on the analog input, CMQKA fusion product "
    "and the out_proj reading it, the head on pooled features; at every timestep, except the encoding layers on an "
    "input that repeats one frame over T, charged as conventions.snn_encoding_static_input says.",
    "Attention parts: channel sum = 1 AC per Q spike; mask AND = 1 op per K spike + C/H per mask spike; "
    "SSA Q K^T = N per Q spike; (Q K^T) V = N per V spike; max-pool = 1 per spike (OR unit).",
    "ANN equivalent: the same layers on dense real values, every dense op a MAC (dense ops x E_mac); a layer whose "
    "inputs are all constant over T charged as conventions.ann_static_input says.",
    "See docs/energy.md.",
)


def plain(value: Any) -> Any:
    """Dataclasses/tuples -> dicts/lists, so a report equals its own JSON round trip."""
    if hasattr(value, "__dataclass_fields__"):
        return {k: plain(v) for k, v in asdict(value).items()}
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


def _stage_dict(stage: StageEnergy) -> dict[str, Any]:
    data = plain(stage)
    data.update(energy_uj=stage.energy_uj, ann_energy_uj=stage.ann_energy_uj, ann_ratio=stage.ann_ratio)
    return data


def _stage_from(data: dict[str, Any]) -> StageEnergy:
    return StageEnergy(**{f.name: data[f.name] for f in fields(StageEnergy)})


def _tupled(cls: type, data: dict[str, Any]) -> Any:
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})


@dataclass(frozen=True)
class EnergyReport:
    cost_model: CostModel
    samples: int
    time_steps: int
    stages: tuple[StageEnergy, ...]
    total: StageEnergy
    layers: tuple[LayerAccount, ...]
    layer_energy_pj: tuple[float, ...]
    populations: tuple[PopulationAccount, ...]
    firing_rates: FiringRateTable
    meta: dict[str, Any] = field(default_factory=dict)
    conventions: EnergyConventions = field(default_factory=EnergyConventions)
    static_inputs: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        layers = []
        for layer, energy in zip(self.layers, self.layer_energy_pj):
            entry = plain(layer)
            entry["energy_pj"] = energy
            layers.append(entry)
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "cost_model": self.cost_model.to_dict(),
            "samples": self.samples,
            "time_steps": self.time_steps,
            "stages": [_stage_dict(s) for s in self.stages],
            "total": _stage_dict(self.total),
            "layers": layers,
            "populations": plain(list(self.populations)),
            "firing_rates": plain(self.firing_rates),
            "conventions": {
                **self.conventions.describe(),
                "static_inputs": list(self.static_inputs),
                "counting_rules": list(COUNTING_RULES),
            },
            "meta": plain(self.meta),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EnergyReport:
        if data.get("format") != FORMAT or data.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"not a {FORMAT} version {FORMAT_VERSION} document")
        layers = tuple(_tupled(LayerAccount, {k: v for k, v in d.items() if k != "energy_pj"}) for d in data["layers"])
        return cls(
            CostModel.from_dict(data["cost_model"]),
            data["samples"],
            data["time_steps"],
            tuple(_stage_from(s) for s in data["stages"]),
            _stage_from(data["total"]),
            layers,
            tuple(d["energy_pj"] for d in data["layers"]),
            tuple(_tupled(PopulationAccount, p) for p in data["populations"]),
            read_firing_rate_table(data["firing_rates"]),
            data.get("meta", {}),
            EnergyConventions(
                data["conventions"]["ann_static_input"], data["conventions"]["snn_encoding_static_input"]
            ),
            tuple(data["conventions"]["static_inputs"]),
        )


def read_firing_rate_table(data: dict[str, Any]) -> FiringRateTable:
    """A table from its JSON form (the ``firing_rates`` entry, or a ``firing-rates`` document)."""
    return FiringRateTable(
        tuple(data["columns"]),
        tuple(data["modalities"]),
        tuple(FiringRateRow(r["component"], r["group"], r["values"]) for r in data["rows"]),
    )


def build_report(network: NetworkAccount, cost: CostModel, meta: dict[str, Any] | None = None) -> EnergyReport:
    stages, total = network_energy(network, cost)
    return EnergyReport(
        cost,
        network.samples,
        network.time_steps,
        tuple(stages),
        total,
        network.layers,
        tuple(layer_energy_pj(layer, cost) for layer in network.layers),
        network.populations,
        firing_rate_table(network),
        dict(meta or {}),
        network.conventions,
        network.static_inputs,
    )


# ---------------------------------------------------------------------------- text


def _count(value: float) -> str:
    for scale, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= scale:
            return f"{value / scale:.3g}{suffix}"
    return f"{value:.3g}"


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}x"


STAGE_HEADER = ("stage", "SOPs", "MACs", "firing rate", "energy (pJ)", "energy (uJ)", "ANN energy (uJ)", "ANN/SNN")


def _stage_rows(report: EnergyReport) -> list[tuple[str, ...]]:
    return [
        (
            s.name,
            _count(s.sops),
            _count(s.macs),
            _rate(s.firing_rate),
            f"{s.energy_pj:,.1f}",
            f"{s.energy_uj:.4g}",
            f"{s.ann_energy_uj:.4g}",
            _ratio(s.ann_ratio),
        )
        for s in (*report.stages, report.total)
    ]


def _cost_line(cost: CostModel) -> str:
    return (
        f"cost model {cost.name}: {cost.synaptic_op_pj:g} pJ/SOP, {cost.mac_pj:g} pJ/MAC, "
        f"{cost.neuron_update_pj:g} pJ/neuron update, {cost.spike_pj:g} pJ/spike"
    )


def _header_line(report: EnergyReport) -> str:
    meta = report.meta
    where = f" on {meta['dataset']}/{meta.get('split', '?')}" if "dataset" in meta else ""
    return f"Energy per inference: {report.samples} samples{where}, T={report.time_steps}"


def conventions_line(conventions: EnergyConventions, static_inputs: tuple[str, ...]) -> str:
    """One sentence naming the charging choices and the inputs they applied to."""
    constant = ", ".join(static_inputs) if static_inputs else "none"
    return (
        f"inputs constant over T: {constant}; on those, ANN counterpart charged {conventions.ann_static_input}, "
        f"SNN encoding layers charged {conventions.snn_encoding_static_input} (--static-input; docs/energy.md)"
    )


def _aligned(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> list[str]:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    line = lambda r: "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))  # noqa: E731
    return [line(header), "  ".join("-" * w for w in widths), *(line(r) for r in rows)]


def format_terminal(report: EnergyReport) -> str:
    lines = [_header_line(report), _cost_line(report.cost_model)]
    lines += [conventions_line(report.conventions, report.static_inputs), ""]
    lines += _aligned(STAGE_HEADER, _stage_rows(report))
    lines += ["", "Firing rates (paper Table 4 format):", "", format_firing_rates(report.firing_rates)]
    return "\n".join(lines)


def _firing_cells(table: FiringRateTable) -> tuple[tuple[str, ...], list[tuple[str, ...]]]:
    header = ("component", *(f"{c} {m}" for c in table.columns for m in table.modalities))
    rows: list[tuple[str, ...]] = []
    group = None
    for row in table.rows:
        if row.group != group:
            group = row.group
            rows.append((group, *("" for _ in header[1:])))
        rows.append((f"  {row.component}", *(_rate(row.values[c][m]) for c in table.columns for m in table.modalities)))
    return header, rows


def format_firing_rates(table: FiringRateTable, markdown: bool = False) -> str:
    header, rows = _firing_cells(table)
    if not markdown:
        return "\n".join(_aligned(header, rows))
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        cells = [f"**{row[0]}**", *row[1:]] if not row[0].startswith(" ") else [row[0].strip(), *row[1:]]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def format_markdown(report: EnergyReport) -> str:
    cost = report.cost_model
    lines = [f"# {_header_line(report)}", "", _cost_line(cost) + ".", "", f"Source: {cost.source}", ""]
    line = conventions_line(report.conventions, report.static_inputs)
    lines += [line[0].upper() + line[1:] + ".", ""]
    if report.meta.get("checkpoint"):
        lines += [f"Checkpoint: `{report.meta['checkpoint']}`", ""]
    lines += ["| " + " | ".join(STAGE_HEADER) + " |", "|" + "---|" * len(STAGE_HEADER)]
    lines += ["| " + " | ".join(row) + " |" for row in _stage_rows(report)]
    lines += ["", "## Firing rates (paper Table 4 format)", "", format_firing_rates(report.firing_rates, markdown=True)]
    lines += ["", "## Counting rules", "", *(f"* {c}" for c in COUNTING_RULES), ""]
    return "\n".join(lines)


# ---------------------------------------------------------------------------- files


def write_json(data: dict[str, Any], path: str | Path) -> Path:
    return atomic_write_text(path, json.dumps(data, indent=2) + "\n")


def read_report(path: str | Path) -> EnergyReport:
    return EnergyReport.from_dict(json.loads(Path(path).read_text()))


def write_markdown(report: EnergyReport, path: str | Path) -> Path:
    return atomic_write_text(path, format_markdown(report))


def plot_stages(report: EnergyReport, path: str | Path) -> Path:
    """Bar chart per stage: SNN energy split (SOP / MAC / neuron) beside the ANN energy; firing rates."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    names = [s.name for s in report.stages]
    x = list(range(len(names)))
    width = 0.38
    sop = [s.sop_energy_pj / 1e6 for s in report.stages]
    mac = [s.mac_energy_pj / 1e6 for s in report.stages]
    neu = [s.neuron_energy_pj / 1e6 for s in report.stages]
    ann = [s.ann_energy_uj for s in report.stages]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4), gridspec_kw={"width_ratios": [2, 1]})
    left_x = [i - width / 2 for i in x]
    left.bar(left_x, sop, width, label="SNN: SOPs", color="#2a9d8f")
    left.bar(left_x, mac, width, bottom=sop, label="SNN: MACs", color="#e9c46a")
    left.bar(left_x, neu, width, bottom=[a + b for a, b in zip(sop, mac)], label="SNN: neurons/spikes", color="#8d99ae")
    left.bar([i + width / 2 for i in x], ann, width, label="ANN equivalent", color="#e76f51")
    left.set_xticks(x, names)
    left.set_ylabel("energy per inference (uJ)")
    left.set_title(f"energy per stage, cost model {report.cost_model.name}")
    left.legend(fontsize=8)
    rates = [s.firing_rate or 0.0 for s in report.stages]
    right.bar(x, rates, 0.6, color="#264653")
    right.set_xticks(x, names)
    right.set_ylabel("spikes per neuron per timestep")
    right.set_title("firing rate per stage")
    fig.suptitle(
        f"{report.samples} samples, T={report.time_steps}; total {report.total.energy_uj:.4g} uJ "
        f"(ANN {report.total.ann_energy_uj:.4g} uJ)",
        fontsize=9,
    )
    fig.tight_layout()
    atomic_savefig(fig, path, dpi=110)
    plt.close(fig)
    return path
