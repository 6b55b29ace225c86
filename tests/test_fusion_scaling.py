"""The fusion-scaling benchmark measures what it claims (counts, not timings)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "fusion_scaling.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("fusion_scaling", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def result(bench):
    out = bench.run(
        [16, 32], dim=32, time_steps=2, batch=1, repeats=1, device_name="cpu", memory_limit_gib=1.0, progress=False
    )
    out["summary"] = bench.summarise(out, fit_min_tokens=256)
    return out


def test_analytic_ops_are_table5_formulas(result):
    for row in result["rows"]:
        n = row["tokens"]
        assert row["cmqka"]["analytic_ops"] == n * 32 * 32
        assert row["ssa"]["analytic_ops"] == n * n * 32


def test_counted_flops_grow_linearly_for_cmqka_and_faster_for_ssa(result):
    small, large = result["rows"]
    assert large["tokens"] == 4 * small["tokens"]
    assert large["cmqka"]["counted_flops"] == 4 * small["cmqka"]["counted_flops"]  # every op is O(N)
    ssa_growth = large["ssa"]["counted_flops"] / small["ssa"]["counted_flops"]
    assert ssa_growth > 4.5  # the N x N products add a quadratic term


def test_cmqka_training_memory_is_linear_and_ssa_superlinear(result):
    small, large = result["rows"]
    assert large["cmqka"]["train_saved_bytes"] / small["cmqka"]["train_saved_bytes"] == pytest.approx(4.0, rel=0.05)
    assert large["ssa"]["train_saved_bytes"] / small["ssa"]["train_saved_bytes"] > 4.5
    assert large["cmqka"]["forward_peak_bytes"] > small["cmqka"]["forward_peak_bytes"] > 0


def test_outputs_round_trip_and_skip_rule(bench, result, tmp_path):
    path = tmp_path / "r.json"
    path.write_text(json.dumps(result))
    loaded = json.loads(path.read_text())
    assert set(loaded["summary"]["exponents"]) == {"cmqka", "ssa"}
    assert {"time fwd+bwd", "counted FLOPs", "train_saved_bytes"} <= set(loaded["summary"]["exponents"]["cmqka"])
    assert "Growth exponent" in bench.markdown(result, result["summary"])
    bench.plot(result, tmp_path / "p.png")
    assert (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"
    assert not bench.ssa_fits(tokens=64 * 64, time_steps=4, batch=1, heads=8, limit_bytes=2**30)
    assert bench.ssa_fits(tokens=16 * 16, time_steps=4, batch=1, heads=8, limit_bytes=2**30)
