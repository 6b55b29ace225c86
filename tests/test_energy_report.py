"""Energy reports: JSON round trip, Markdown, PNG, Table-4 firing rates, commands and CLI."""

from __future__ import annotations

import argparse
import json

import pytest
import torch
from test_energy import tiny_model
from torch.utils.data import Dataset

from energy.report import EnergyReport, format_markdown, format_terminal, read_report
from snnergy.checkpoint import from_model, save_checkpoint
from snnergy.cli.energy import add_energy_commands
from snnergy.measure import Inputs, energy_report, firing_rate_table

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


class RandomAV(Dataset):
    """``(audio, video, label)`` items of random analog inputs (no build step)."""

    def __init__(self, size: int, image_size: int, time_steps: int, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        self.audio = torch.rand(size, time_steps, 1, image_size, image_size, generator=g) * 2
        self.video = torch.rand(size, time_steps, 3, image_size, image_size, generator=g) * 2

    def __len__(self) -> int:
        return len(self.audio)

    def __getitem__(self, index: int):
        return self.audio[index], self.video[index], 0


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    model = tiny_model()
    path = tmp_path_factory.mktemp("energy") / "tiny.pt"
    save_checkpoint(from_model(model), path)
    return path, RandomAV(5, model.config.image_size, model.config.time_steps)


@pytest.fixture(scope="module")
def report(checkpoint, tmp_path_factory):
    path, data = checkpoint
    out = tmp_path_factory.mktemp("report")
    result = energy_report(
        path,
        Inputs(data, samples=4, batch_size=3, progress=False),
        cost_model="loihi",
        json_path=out / "r.json",
        markdown_path=out / "r.md",
        png_path=out / "r.png",
    )
    return result, out


def test_report_schema_and_totals(report):
    data, _ = report
    assert [s["name"] for s in data["stages"]] == ["stem", "stage1", "stage2", "stage3", "head"]
    for entry in [*data["stages"], data["total"]]:
        for key in ("name", "sops", "macs", "energy_pj", "energy_uj", "ann_energy_pj", "firing_rate"):
            assert key in entry
    total = data["total"]
    for key in ("sops", "macs", "energy_pj", "ann_energy_pj", "spikes"):
        assert sum(s[key] for s in data["stages"]) == pytest.approx(total[key])
    assert total["energy_uj"] == pytest.approx(total["energy_pj"] / 1e6)
    assert total["sops"] > 0 and total["macs"] > 0
    assert data["samples"] == 4 and data["cost_model"]["name"] == "loihi"
    assert sum(layer["energy_pj"] for layer in data["layers"]) == pytest.approx(
        total["sop_energy_pj"] + total["mac_energy_pj"]
    )
    assert all(len(layer["sops_per_timestep"]) == data["time_steps"] for layer in data["layers"])


def test_report_round_trips_through_json(report):
    data, out = report
    on_disk = json.loads((out / "r.json").read_text())
    assert on_disk == data
    assert read_report(out / "r.json").to_dict() == data
    assert EnergyReport.from_dict(json.loads(json.dumps(data))).to_dict() == data


def test_markdown_terminal_and_png(report):
    data, out = report
    parsed = EnergyReport.from_dict(data)
    text = format_terminal(parsed)
    markdown = (out / "r.md").read_text()
    assert markdown == format_markdown(parsed)
    for stage in ("stem", "stage1", "stage2", "stage3", "head", "total"):
        assert stage in text and f"| {stage} |" in markdown
    assert "Davies" in markdown and "ANN/SNN" in text
    assert (out / "r.png").read_bytes()[:8] == PNG_MAGIC


def test_firing_rate_table_has_table4_rows(checkpoint, tmp_path):
    path, data = checkpoint
    table = firing_rate_table(path, Inputs(data, samples=3, progress=False), json_path=tmp_path / "rates.json")
    assert json.loads((tmp_path / "rates.json").read_text()) == table
    assert table["columns"] == ["CM1", "CM2", "SSA3"]
    components = [row["component"] for row in table["rows"]]
    assert components == ["Q", "K", "V", "Attn", "Out", "Layer1", "Layer2"]
    energy = energy_report(path, Inputs(data, samples=3, progress=False))
    populations = energy["populations"]
    q1 = [p for p in populations if p["stage"] == "stage1" and p["role"] == "q" and p["modality"] == "audio"]
    assert len(q1) == 2  # spatial and temporal pathways, averaged
    expected = sum(p["spikes"] for p in q1) / sum(p["neuron_updates"] for p in q1)
    row = table["rows"][0]
    assert row["values"]["CM1"]["audio"] == pytest.approx(expected)
    assert (
        row["values"]["CM1"]["both"] is not None and table["rows"][2]["values"]["CM1"]["audio"] is None
    )  # V: SSA only


def test_cli_help_and_a_run_on_avdigits(checkpoint, avdigits_cache, tmp_path, capsys):
    parser = argparse.ArgumentParser(prog="snnergy")
    add_energy_commands(parser.add_subparsers(dest="command", required=True))
    for command in ("energy", "firing-rates"):
        with pytest.raises(SystemExit) as exit_info:
            parser.parse_args([command, "--help"])
        assert exit_info.value.code == 0
    assert "--cost-model" in capsys.readouterr().out
    path, _ = checkpoint
    args = parser.parse_args(
        [
            "energy",
            str(path),
            "--dataset",
            "avdigits",
            "--samples",
            "2",
            "--cache-dir",
            str(avdigits_cache),
            "--json",
            str(tmp_path / "e.json"),
            "--png",
            str(tmp_path / "e.png"),
            "--no-progress",
        ]
    )
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "total" in out and "cost model 45nm" in out and "Layer1" in out
    assert json.loads((tmp_path / "e.json").read_text())["meta"]["dataset"] == "avdigits"
    args = parser.parse_args(
        ["firing-rates", str(path), "--samples", "2", "--cache-dir", str(avdigits_cache), "--no-progress"]
    )
    assert args.func(args) == 0 and "Attn" in capsys.readouterr().out


def test_bad_cost_model_fails_before_running(checkpoint, tmp_path):
    path, data = checkpoint
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: x\nsource: y\nenergy_pj: {mac: 1, neuron_update: 0, spike: 0}\n")
    with pytest.raises(ValueError, match="energy_pj.synaptic_op"):
        energy_report(path, Inputs(data, samples=1, progress=False), cost_model=broken)
