"""Operation counts x cost model -> energy per stage, with the ANN-equivalent energy.

Energy of a stage = ``SOPs x E_sop + MACs x E_mac + neuron updates x E_update + spikes x
E_spike``. The ANN equivalent runs the same layers on dense real values: every dense op
is a MAC, ``dense ops x E_mac`` (the Spikformer/QKFormer comparison).
"""

from __future__ import annotations

from dataclasses import dataclass

from energy.accounting import LayerAccount, NetworkAccount, StageOps
from energy.cost_model import CostModel

PJ_PER_UJ = 1e6


@dataclass(frozen=True)
class StageEnergy:
    """Per-inference operations and energy (pJ) of one stage, or of the total."""

    name: str
    sops: float
    macs: float
    ann_macs: float
    spikes: float
    neuron_updates: float
    firing_rate: float | None
    sop_energy_pj: float
    mac_energy_pj: float
    neuron_energy_pj: float
    energy_pj: float
    ann_energy_pj: float

    @property
    def energy_uj(self) -> float:
        return self.energy_pj / PJ_PER_UJ

    @property
    def ann_energy_uj(self) -> float:
        return self.ann_energy_pj / PJ_PER_UJ

    @property
    def ann_ratio(self) -> float | None:
        """How many times more energy the ANN equivalent needs (None if the SNN needs none)."""
        return self.ann_energy_pj / self.energy_pj if self.energy_pj else None


def stage_energy(ops: StageOps, cost: CostModel) -> StageEnergy:
    sop = ops.sops * cost.synaptic_op_pj
    mac = ops.macs * cost.mac_pj
    neuron = ops.neuron_updates * cost.neuron_update_pj + ops.spikes * cost.spike_pj
    return StageEnergy(
        ops.name,
        ops.sops,
        ops.macs,
        ops.dense_ops,
        ops.spikes,
        ops.neuron_updates,
        ops.firing_rate,
        sop,
        mac,
        neuron,
        sop + mac + neuron,
        ops.dense_ops * cost.mac_pj,
    )


def layer_energy_pj(layer: LayerAccount, cost: CostModel) -> float:
    """Synaptic energy of one layer (neuron costs belong to populations, not layers)."""
    return layer.sops * cost.synaptic_op_pj + layer.macs * cost.mac_pj


def network_energy(network: NetworkAccount, cost: CostModel) -> tuple[list[StageEnergy], StageEnergy]:
    """Energy per stage and in total; the total is the sum of the stages."""
    stages = [stage_energy(ops, cost) for ops in network.stages]
    return stages, stage_energy(network.total, cost)
