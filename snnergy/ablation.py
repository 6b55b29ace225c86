"""Test-time ablations of the fusion: is the cross-modal attention alive and used?

A trained model is evaluated unchanged and then with one intervention at a time, each a
set of forward hooks installed for the duration of one evaluation (the model's code
knows nothing of them):

* ``cmqka_zero`` / ``cmqka_zero_stage{s}``: every CMQKA branch output ``P`` (or one
  stage's) replaced by zeros, i.e. ``Y = X`` there;
* ``cmqka_cross_cut``: CMQKA keys from the query's own modality (the cross-modal link
  cut, the block otherwise unchanged); ``attention_cross_cut`` cuts SSA's too;
* ``spatial_factor_only`` / ``temporal_factor_only``: one factor of Eq. 12 kept, the other
  replaced by its mean over training samples (so the fusion keeps its scale);
* ``ssa_zero``: every SSA branch output zeroed; ``attention_zero``: every attention branch.

``branch_statistics`` records, per attention module, the firing rates of its neurons and
the magnitudes that decide whether ``W_o`` sees anything (fused product, ``W_o`` output
before BN against BN's ``eps``): the diagnosis of docs/model.md.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, Subset

from snnergy.evaluate import evaluate
from snnergy.layers.block import CrossModalBlock
from snnergy.layers.cmqka import CMQKAttention
from snnergy.layers.scmrl import SCMRLAttention
from snnergy.layers.ssa import CrossModalSSA
from snnergy.model import SNNergy

FactorMeans = dict[str, tuple[Tensor, Tensor]]  # CMQKA module name -> (spatial [T,1,C,1], temporal [1,1,C,N])


@dataclass(frozen=True)
class Ablation:
    name: str
    description: str
    install: Callable[[SNNergy, FactorMeans], contextlib.AbstractContextManager]


def attention_modules(model: SNNergy, kind: type) -> dict[str, nn.Module]:
    return {name: module for name, module in model.named_modules() if isinstance(module, kind)}


def _stage_of(module_name: str) -> int:
    """``stages.<s>.<b>.attn.<m>`` -> stage number ``s + 1``."""
    return int(module_name.split(".")[1]) + 1


def _is_branch(name: str, module: nn.Module) -> bool:
    """A fusion block's attention branch (``stages.<s>.<b>.attn.<m>``), not a part inside one."""
    return isinstance(module, (CMQKAttention, CrossModalSSA, SCMRLAttention)) and name.count(".") == 4


def _zero_output(module: nn.Module, args: tuple, output: Tensor) -> Tensor:
    return torch.zeros_like(output)


@contextlib.contextmanager
def _hooks(handles: Iterable[Any]) -> Iterator[None]:
    handles = list(handles)
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def _zeroing(select: Callable[[str, nn.Module], bool]):
    def install(model: SNNergy, means: FactorMeans) -> contextlib.AbstractContextManager:
        modules = [m for n, m in model.named_modules() if _is_branch(n, m) and select(n, m)]
        return _hooks(m.register_forward_hook(_zero_output) for m in modules)

    return install


def _cross_cut(kinds: tuple[str, ...]):
    @contextlib.contextmanager
    def install(model: SNNergy, means: FactorMeans) -> Iterator[None]:
        blocks = [b for b in model.modules() if isinstance(b, CrossModalBlock) and b.kind in kinds and b.cross]
        for block in blocks:
            block.cross = False  # keys from the query's own stream
        try:
            yield
        finally:
            for block in blocks:
                block.cross = True

    return install


def _single_factor(keep: str):
    def install(model: SNNergy, means: FactorMeans) -> contextlib.AbstractContextManager:
        def hook_for(name: str):
            def replace(module: nn.Module, args: tuple) -> tuple[Tensor, Tensor]:
                spatial, temporal = args
                mean_spatial, mean_temporal = means[name]
                if keep == "spatial":
                    return spatial, mean_temporal.to(temporal).expand_as(temporal)
                return mean_spatial.to(spatial).expand_as(spatial), temporal

            return replace

        modules = attention_modules(model, CMQKAttention)
        return _hooks(m.fusion.register_forward_pre_hook(hook_for(n)) for n, m in modules.items())

    return install


def ablations_for(model: SNNergy) -> list[Ablation]:
    """The ablations that apply to this model's layout."""
    cmqka = attention_modules(model, CMQKAttention)
    ssa = {n: m for n, m in attention_modules(model, CrossModalSSA).items() if _is_branch(n, m)}
    scmrl = attention_modules(model, SCMRLAttention)
    rows = []
    if scmrl:
        rows.append(
            Ablation(
                "scmrl_zero",
                "every S-CMRL branch output zeroed",
                _zeroing(lambda n, m: isinstance(m, SCMRLAttention)),
            )
        )
        rows.append(
            Ablation("scmrl_cross_cut", "S-CMRL keys and values from the query's own modality", _cross_cut(("scmrl",)))
        )
    if cmqka:
        rows.append(
            Ablation(
                "cmqka_zero", "every CMQKA branch output zeroed", _zeroing(lambda n, m: isinstance(m, CMQKAttention))
            )
        )
        for stage in sorted({_stage_of(n) for n in cmqka}):
            rows.append(
                Ablation(
                    f"cmqka_zero_stage{stage}",
                    f"CMQKA branch outputs of stage {stage} zeroed",
                    _zeroing(lambda n, m, s=stage: isinstance(m, CMQKAttention) and _stage_of(n) == s),
                )
            )
        rows.append(Ablation("cmqka_cross_cut", "CMQKA keys from the query's own modality", _cross_cut(("cmqka",))))
        if all(m.pathways == "spatiotemporal" for m in cmqka.values()):
            rows.append(
                Ablation(
                    "spatial_factor_only",
                    "temporal factor mean_T(F_t) replaced by its training mean",
                    _single_factor("spatial"),
                )
            )
            rows.append(
                Ablation(
                    "temporal_factor_only",
                    "spatial factor mean_N(F_s) replaced by its training mean",
                    _single_factor("temporal"),
                )
            )
    if ssa:
        rows.append(
            Ablation("ssa_zero", "every SSA branch output zeroed", _zeroing(lambda n, m: isinstance(m, CrossModalSSA)))
        )
    if cmqka and ssa:
        rows.append(
            Ablation(
                "attention_cross_cut",
                "keys (and SSA values) from the query's own modality",
                _cross_cut(("cmqka", "ssa")),
            )
        )
        rows.append(Ablation("attention_zero", "every attention branch output zeroed", _zeroing(lambda n, m: True)))
    return rows


@torch.no_grad()
def factor_means(
    model: SNNergy, dataset: Dataset, samples: int, device: torch.device | str, batch_size: int = 64
) -> FactorMeans:
    """Mean of each CMQKA fusion factor over the first ``samples`` samples of ``dataset``."""
    sums: dict[str, list[Tensor]] = {}
    counts: dict[str, int] = {}

    def hook_for(name: str):
        def record(module: nn.Module, args: tuple) -> None:
            spatial, temporal = (a.detach().double() for a in args)
            batch = spatial.shape[1]
            s = spatial.sum(dim=1, keepdim=True)
            t = temporal.sum(dim=1, keepdim=True)
            if name in sums:
                sums[name][0] += s
                sums[name][1] += t
            else:
                sums[name] = [s, t]
            counts[name] = counts.get(name, 0) + batch

        return record

    modules = attention_modules(model, CMQKAttention)
    subset = Subset(dataset, range(min(samples, len(dataset))))
    was_training = model.training
    model.eval()
    with _hooks(m.fusion.register_forward_pre_hook(hook_for(n)) for n, m in modules.items()):
        for audio, video, _ in DataLoader(subset, batch_size=batch_size):
            model(audio.to(device), video.to(device))
    model.train(was_training)
    return {name: (s / counts[name], t / counts[name]) for name, (s, t) in sums.items()}


@torch.no_grad()
def branch_statistics(
    model: SNNergy, batches: Iterable[tuple[Tensor, ...]], device: torch.device | str = "cpu"
) -> dict[str, dict[str, float]]:
    """Per attention module: firing rates of its neurons, the fused product's magnitude,
    the spread of ``W_o``'s output before BN (against BN's ``eps``), BN's statistics and
    the residual weight."""
    stats: dict[str, dict[str, list[float]]] = {}
    handles = []

    def record(module_name: str, key: str, value: float) -> None:
        stats.setdefault(module_name, {}).setdefault(key, []).append(value)

    def rate_hook(module_name: str, key: str):
        return lambda mod, args, out: record(module_name, key, float(out.float().mean()))

    for name, module in model.named_modules():
        if isinstance(module, CMQKAttention):
            for pathway in ("spatial", "temporal"):
                if hasattr(module, pathway):
                    qk = getattr(module, pathway)
                    handles.append(qk.q_lif.register_forward_hook(rate_hook(name, f"{pathway}_q_rate")))
                    handles.append(qk.k_lif.register_forward_hook(rate_hook(name, f"{pathway}_k_rate")))
                    handles.append(
                        getattr(module, f"{pathway}_attn_lif").register_forward_hook(
                            rate_hook(name, f"{pathway}_mask_rate")
                        )
                    )

            def fusion_hook(mod, args, out, name=name):
                spatial, temporal = args
                record(name, "spatial_factor_mean", float(spatial.mean()))
                record(name, "temporal_factor_mean", float(temporal.mean()))
                record(name, "fused_mean", float(out.mean()))
                record(name, "fused_std", float(out.std()))

            handles.append(module.fusion.register_forward_hook(fusion_hook))
        if isinstance(module, (CMQKAttention, CrossModalSSA)):
            handles.append(module.out_lif.register_forward_hook(rate_hook(name, "out_rate")))
            bn = module.out_proj.bn

            def proj_hook(mod, args, out, name=name, eps=bn.eps):
                record(name, "w_o_output_var", float(out.var()))
                record(name, "bn_eps", float(eps))

            handles.append(module.out_proj.conv.register_forward_hook(proj_hook))
    was_training = model.training
    model.eval()
    with _hooks(handles):
        for batch in batches:
            model(batch[0].to(device), batch[1].to(device))
    model.train(was_training)
    result: dict[str, dict[str, float]] = {}
    modules = dict(model.named_modules())
    for name, values in stats.items():
        row = {key: sum(v) / len(v) for key, v in values.items()}
        bn = modules[name].out_proj.bn
        row["bn_running_var_mean"] = float(bn.running_var.mean())
        row["bn_weight_mean"] = float(bn.weight.mean())
        row["bn_bias_mean"] = float(bn.bias.mean())
        block = modules[name.rsplit(".attn.", 1)[0]]
        row["residual_weight"] = float(block.residual_weight(name.rsplit(".", 1)[1]))
        result[name] = row
    return result


def run_ablations(
    model: SNNergy,
    test_set: Dataset,
    train_set: Dataset,
    device: torch.device | str = "cpu",
    batch_size: int = 64,
    mean_samples: int = 512,
    class_names: list[str] | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Accuracy of the unablated model and of every ablation, with branch firing rates."""
    model = model.to(device).eval()
    means = (
        factor_means(model, train_set, mean_samples, device, batch_size)
        if attention_modules(model, CMQKAttention)
        else {}
    )
    base = evaluate(model, test_set, device, batch_size, class_names, progress=False)
    rows = [
        {
            "name": "none",
            "description": "unablated model",
            "accuracy": base["accuracy"],
            "change": 0.0,
            "loss": base["loss"],
        }
    ]
    for ablation in ablations_for(model):
        if progress:
            progress(ablation.name)
        with ablation.install(model, means):
            result = evaluate(model, test_set, device, batch_size, class_names, progress=False)
        rows.append(
            {
                "name": ablation.name,
                "description": ablation.description,
                "accuracy": result["accuracy"],
                "change": result["accuracy"] - base["accuracy"],
                "loss": result["loss"],
            }
        )
    loader = DataLoader(test_set, batch_size=batch_size)
    statistics = branch_statistics(model, loader, device)
    return {
        "samples": base["samples"],
        "ablations": rows,
        "branches": statistics,
        "factor_mean_samples": min(mean_samples, len(train_set)),
    }


def format_ablations(result: dict[str, Any]) -> str:
    lines = [
        f"test-time ablations ({result['samples']} samples)",
        "",
        f"| {'ablation':<22} | accuracy | change | what |",
        f"|{'-' * 24}|---------:|-------:|------|",
    ]
    for row in result["ablations"]:
        lines.append(
            f"| {row['name']:<22} | {row['accuracy']:8.4f} | {100 * row['change']:+6.1f} | {row['description']} |"
        )
    lines += ["", "attention branch output neurons (firing rate on these samples):"]
    for name, row in result["branches"].items():
        extra = ""
        if "fused_std" in row:
            extra = (
                f"  fused mean {row['fused_mean']:.2e}; W_o output var {row['w_o_output_var']:.2e}"
                f" (BN eps {row['bn_eps']:.0e})"
            )
        lines.append(f"  {name:<24} out {100 * row['out_rate']:6.2f} %{extra}")
    return "\n".join(lines)
