"""Firing rates in the format of the SNNergy paper's Table 4.

Rows Q, K (and V where a stage uses SSA), Attn (the attention-mask neuron), Out (the
attention branch's output neurons ``P``: not in the paper's table, added because a silent
branch shows there first), MLP Layer1 and Layer2; one column per fusion stage, named by its
kind (``CM1``, ``CM2``, ``SSA3``), split by modality. The modality of a row is the branch
the neurons belong to: the keys of the audio branch are computed from the video stream but
update audio. A rate is total spikes
over total neuron-timesteps, so it averages the blocks of a stage and, for CMQKA, its
spatial and temporal pathways, weighted by their sizes.
"""

from __future__ import annotations

from dataclasses import dataclass

from energy.accounting import NetworkAccount, PopulationAccount

MODALITY_COLUMNS = ("audio", "video", "both")
ATTENTION_ROWS = (("Q", "q"), ("K", "k"), ("V", "v"), ("Attn", "attn"), ("Out", "attn_out"))
MLP_ROWS = (("Layer1", "mlp1"), ("Layer2", "mlp2"))
GROUPS = {"QK Attention Blocks": ATTENTION_ROWS, "MLP Feed-Forward Blocks": MLP_ROWS}


@dataclass(frozen=True)
class FiringRateRow:
    component: str
    group: str
    values: dict[str, dict[str, float | None]]  # column -> modality -> rate


@dataclass(frozen=True)
class FiringRateTable:
    columns: tuple[str, ...]
    modalities: tuple[str, ...]
    rows: tuple[FiringRateRow, ...]

    def value(self, component: str, column: str, modality: str = "both") -> float | None:
        for row in self.rows:
            if row.component == component:
                return row.values[column][modality]
        raise KeyError(component)


def column_names(stage_kinds: tuple[str, ...]) -> tuple[str, ...]:
    prefix = {"cmqka": "CM", "ssa": "SSA", "scmrl": "SCMRL"}
    return tuple(f"{prefix[kind]}{i + 1}" for i, kind in enumerate(stage_kinds))


def _rate(populations: list[PopulationAccount]) -> float | None:
    updates = sum(p.neuron_updates for p in populations)
    return sum(p.spikes for p in populations) / updates if updates else None


def firing_rate_table(network: NetworkAccount) -> FiringRateTable:
    columns = column_names(network.stage_kinds)
    has_ssa = bool({"ssa", "scmrl"} & set(network.stage_kinds))
    rows = []
    for group, components in GROUPS.items():
        for component, role in components:
            if role == "v" and not has_ssa:
                continue
            values: dict[str, dict[str, float | None]] = {}
            for index, column in enumerate(columns):
                stage = f"stage{index + 1}"
                chosen = [p for p in network.populations if p.stage == stage and p.role == role]
                values[column] = {
                    m: _rate([p for p in chosen if m == "both" or p.modality == m]) for m in MODALITY_COLUMNS
                }
            rows.append(FiringRateRow(component, group, values))
    return FiringRateTable(columns, MODALITY_COLUMNS, tuple(rows))
