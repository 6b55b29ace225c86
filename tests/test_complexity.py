"""Paper Table 5: analytic op counts per stage and per layout, reproduced exactly."""

from __future__ import annotations

import pytest

from energy.complexity import (
    cmqka_ops,
    format_table5,
    hierarchy,
    layout_total,
    layout_total_paper,
    millions,
    ssa_ops,
    stage_complexities,
)
from snnergy.config import load_preset

# SPEC.md section 3, per embed dim: per-stage (CMQKA, SSA) and the three totals
TABLE5 = {
    192: {"stages": [("37.7M", "201.3M"), ("37.7M", "25.2M"), ("37.7M", "3.1M")], "totals": (78.5, 113.1, 229.6)},
    96: {"stages": [("9.4M", "100.7M"), ("9.4M", "12.6M"), ("9.4M", "1.6M")], "totals": (20.4, 28.2, 114.9)},
}


@pytest.mark.parametrize("dim", [192, 96])
def test_table5_per_stage_and_totals(dim):
    tokens, dims = hierarchy(image_size=128, embed_dim=dim)
    assert tokens == (1024, 256, 64)
    stages = stage_complexities(tokens, dims)
    assert [(millions(s.cmqka), millions(s.ssa)) for s in stages] == TABLE5[dim]["stages"]
    totals = tuple(layout_total_paper(stages, layout) for layout in ("hybrid", "all-cmqka", "all-ssa"))
    assert totals == TABLE5[dim]["totals"]


def test_exact_counts_are_the_formulas():
    assert cmqka_ops(1024, 192) == 37_748_736
    assert ssa_ops(1024, 192) == 201_326_592
    stages = stage_complexities(*hierarchy(128, 192))
    assert layout_total(stages, "hybrid") == 37_748_736 * 2 + 64 * 64 * 768


@pytest.mark.parametrize("preset, dim", [("b", 192), ("s", 96)])
def test_presets_use_the_paper_hierarchy(preset, dim):
    config = load_preset(preset)
    assert config.embed_dim == dim and config.time_steps == 6 and config.image_size == 128
    assert config.stage_tokens == (1024, 256, 64)
    assert config.stage_dims == (dim, 2 * dim, 4 * dim)
    assert config.stage_attention == ("cmqka", "cmqka", "ssa")


def test_table_text_and_bad_layout():
    text = format_table5(stage_complexities(*hierarchy(128, 192)))
    assert "| hybrid | 78.5M |" in text and "| all-ssa | 229.6M |" in text
    with pytest.raises(ValueError, match="unknown layout"):
        layout_total(stage_complexities(*hierarchy(128, 96)), "mixed")
