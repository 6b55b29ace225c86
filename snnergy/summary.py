"""Human-readable model summary: parameters, token grid and analytic op counts per stage."""

from __future__ import annotations

from torch import nn

from snnergy.config import ModelConfig
from snnergy.model import SNNergy, count_parameters


def stage_parameters(model: SNNergy) -> dict[str, int]:
    """Parameters of stem, each stage (its SPDS included) and head."""
    counts = {"stem": count_parameters(model.stem)}
    for index, blocks in enumerate(model.stages):
        down: nn.Module | None = model.down[index - 1] if index > 0 else None
        counts[f"stage{index + 1}"] = count_parameters(blocks) + (count_parameters(down) if down is not None else 0)
    counts["head"] = count_parameters(model.head)
    return counts


def describe(config: ModelConfig, model: SNNergy) -> str:
    lines = [
        f"SNNergy preset={config.preset} attention={config.attention} cmqka_pathways={config.cmqka_pathways} "
        f"temporal_taps={config.cmqka_temporal_taps} fusion_scale={config.cmqka_fusion_scale:g} "
        f"heads={config.num_heads} "
        f"ssa_scale={'learnable' if config.ssa_scale_learnable else 'fixed'} {config.ssa_scale:g}",
        f"input: audio [B, {config.time_steps}, {config.audio_channels}, {config.image_size}, {config.image_size}], "
        f"video [B, {config.time_steps}, {config.video_channels}, {config.image_size}, {config.image_size}], "
        f"{config.num_classes} classes",
        f"parameters: {count_parameters(model):,}",
        "",
        "| part | kind | depth | channels | token grid | tokens N | parameters |",
        "|---|---|---|---|---|---|---|",
    ]
    params = stage_parameters(model)
    lines.append(f"| stem | SPDS x{config.stem_reduction} | - | {config.stage_dims[0]} | - | - | {params['stem']:,} |")
    for i in range(3):
        side = config.stage_sides[i]
        lines.append(
            f"| stage{i + 1} | {config.stage_attention[i]} | {config.depths[i]} | {config.stage_dims[i]} | "
            f"{side}x{side} | {config.stage_tokens[i]} | {params[f'stage{i + 1}']:,} |"
        )
    lines.append(f"| head | GAP + concat + linear | - | {2 * config.stage_dims[2]} | - | - | {params['head']:,} |")
    return "\n".join(lines)
