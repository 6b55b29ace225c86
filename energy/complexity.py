"""Analytic operation counts of one fusion block per stage (paper Table 5).

The paper counts CMQKA as ``N * D^2`` (its projections dominate) and SSA as ``N^2 * D``
(the ``Q K^T`` product), with ``N`` the stage's tokens and ``D`` its channels. A layout
("hybrid", "all-cmqka", "all-ssa") sums one block of the named kind per stage.
"""

from __future__ import annotations

from dataclasses import dataclass

LAYOUTS = {
    "hybrid": ("cmqka", "cmqka", "ssa"),
    "all-cmqka": ("cmqka", "cmqka", "cmqka"),
    "all-ssa": ("ssa", "ssa", "ssa"),
}


def cmqka_ops(tokens: int, dim: int) -> int:
    return tokens * dim * dim


def ssa_ops(tokens: int, dim: int) -> int:
    return tokens * tokens * dim


@dataclass(frozen=True)
class StageComplexity:
    stage: int
    tokens: int
    dim: int
    cmqka: int
    ssa: int


def stage_complexities(tokens: tuple[int, ...], dims: tuple[int, ...]) -> list[StageComplexity]:
    """Per-stage CMQKA and SSA op counts for given token counts and widths."""
    if len(tokens) != len(dims):
        raise ValueError(f"need one width per stage: {len(tokens)} token counts, {len(dims)} widths")
    return [StageComplexity(i + 1, n, d, cmqka_ops(n, d), ssa_ops(n, d)) for i, (n, d) in enumerate(zip(tokens, dims))]


def layout_total(stages: list[StageComplexity], layout: str) -> int:
    """Sum of one block per stage, of the kinds the layout names."""
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; choose one of {sorted(LAYOUTS)}")
    return sum(s.cmqka if kind == "cmqka" else s.ssa for s, kind in zip(stages, LAYOUTS[layout]))


def hierarchy(image_size: int, embed_dim: int, stem_reduction: int = 4) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Token counts and widths of SNNergy's three stages for an input size and base width."""
    side = image_size // stem_reduction
    tokens = tuple((side // 2**i) ** 2 for i in range(3))
    dims = tuple(embed_dim * 2**i for i in range(3))
    return tokens, dims


def tenths_of_million(ops: int) -> int:
    """``ops`` rounded to 0.1M, as an integer count of 0.1M (exact arithmetic for sums)."""
    return round(ops / 1e5)


def layout_total_paper(stages: list[StageComplexity], layout: str) -> float:
    """Table 5's convention: the sum of the per-stage figures *after* rounding to 0.1M.

    The paper's totals (78.5M, 113.1M, 229.6M at D=192) are sums of its rounded stage
    entries; the unrounded sums differ in the last digit (78.6M, 113.2M, 229.6M).
    """
    layout_total(stages, layout)  # validates the layout name
    kinds = LAYOUTS[layout]
    return sum(tenths_of_million(s.cmqka if k == "cmqka" else s.ssa) for s, k in zip(stages, kinds)) / 10


def millions(ops: int) -> str:
    """Table 5's notation (0.1M) for counts of a million or more; exact below."""
    return f"{ops / 1e6:.1f}M" if ops >= 1_000_000 else f"{ops:,}"


def format_table5(stages: list[StageComplexity]) -> str:
    """Markdown table in the paper's Table 5 format."""
    lines = [
        "| stage | N | D | CMQKA (N*D^2) | SSA (N^2*D) |",
        "|---|---|---|---|---|",
    ]
    for s in stages:
        lines.append(f"| {s.stage} | {s.tokens} | {s.dim} | {millions(s.cmqka)} | {millions(s.ssa)} |")
    lines += ["", "| layout (one block per stage) | total, Table 5 convention | exact total |", "|---|---|---|"]
    paper_convention = all(min(s.cmqka, s.ssa) >= 1_000_000 for s in stages)
    for layout in LAYOUTS:
        exact = layout_total(stages, layout)
        rounded = f"{layout_total_paper(stages, layout):.1f}M" if paper_convention else "-"
        exact_text = f"{exact:,} ({millions(exact)})" if exact >= 1_000_000 else f"{exact:,}"
        lines.append(f"| {layout} | {rounded} | {exact_text} |")
    return "\n".join(lines)
