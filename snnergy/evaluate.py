"""Evaluation: accuracy, per-class accuracy, confusion matrix; JSON and PNG reports."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from snnergy.atomic import atomic_savefig, atomic_write_text


@torch.no_grad()
def evaluate(
    model: nn.Module,
    dataset: Dataset,
    device: torch.device | str = "cpu",
    batch_size: int = 64,
    class_names: list[str] | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Run ``model`` over ``dataset`` in eval mode; restores the model's previous mode."""
    was_training = model.training
    model.eval()
    device = torch.device(device)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False)
    num_classes = len(class_names) if class_names else getattr(dataset, "num_classes", None)
    confusion: torch.Tensor | None = None
    total_loss, seen = 0.0, 0
    for audio, video, labels in tqdm(loader, desc="evaluate", disable=not progress, leave=False):
        logits = model(audio.to(device), video.to(device)).float().cpu()
        total_loss += nn.functional.cross_entropy(logits, labels, reduction="sum").item()
        seen += labels.numel()
        k = num_classes or logits.shape[1]
        if confusion is None:
            confusion = torch.zeros(k, k, dtype=torch.long)
        confusion += torch.bincount(labels * k + logits.argmax(1), minlength=k * k).reshape(k, k)
    model.train(was_training)
    if confusion is None:
        raise ValueError("cannot evaluate on an empty dataset")
    per_class_total = confusion.sum(1)
    per_class = (confusion.diag().double() / per_class_total.clamp(min=1)).tolist()
    names = class_names or [str(i) for i in range(confusion.shape[0])]
    return {
        "samples": seen,
        "loss": total_loss / seen,
        "accuracy": confusion.diag().sum().item() / seen,
        "per_class_accuracy": {name: acc for name, acc in zip(names, per_class)},
        "class_names": names,
        "confusion_matrix": confusion.tolist(),  # rows: true class, columns: predicted
    }


def format_report(result: dict[str, Any]) -> str:
    lines = [
        f"accuracy: {result['accuracy']:.4f} ({result['samples']} samples), loss {result['loss']:.4f}",
        "per-class accuracy:",
    ]
    lines += [f"  {name:>12}: {acc:.3f}" for name, acc in result["per_class_accuracy"].items()]
    lines.append("confusion matrix (rows true, columns predicted):")
    width = max(4, max(len(str(v)) for row in result["confusion_matrix"] for v in row) + 1)
    for name, row in zip(result["class_names"], result["confusion_matrix"]):
        lines.append(f"  {name:>12} " + "".join(f"{v:>{width}}" for v in row))
    return "\n".join(lines)


def write_report(result: dict[str, Any], json_path: Path, png_path: Path | None = None) -> None:
    atomic_write_text(json_path, json.dumps(result, indent=2))
    if png_path is not None:
        plot_confusion(result, png_path)


def plot_confusion(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    matrix = torch.tensor(result["confusion_matrix"], dtype=torch.float64)
    normalised = matrix / matrix.sum(1, keepdim=True).clamp(min=1)
    names = result["class_names"]
    fig, ax = plt.subplots(figsize=(1.0 + 0.55 * len(names), 0.8 + 0.5 * len(names)))
    image = ax.imshow(normalised, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(names)):
        for j in range(len(names)):
            ax.text(
                j,
                i,
                int(matrix[i, j]),
                ha="center",
                va="center",
                fontsize=8,
                color="white" if normalised[i, j] > 0.5 else "black",
            )
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"accuracy {result['accuracy']:.3f} ({result['samples']} samples)")
    fig.colorbar(image, ax=ax, fraction=0.046)
    fig.tight_layout()
    atomic_savefig(fig, path, dpi=120)
    plt.close(fig)
