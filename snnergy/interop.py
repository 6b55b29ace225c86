"""``snnergy nir-check``: an exported NIR file run part by part in stock NIR consumers.

A workflow (like ``snnergy.simulate``): it reads the file, takes real inputs of the
dataset the graph's model was built for (random ones for a graph that names no model),
and hands them to ``export.nir_check``, which runs each consumer and compares it with our
reference executor.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

DEFAULT_SAMPLES = 8


def check_nir_file(
    path: str | Path,
    consumers: list[str],
    samples: int = DEFAULT_SAMPLES,
    dataset: str = "avdigits",
    split: str = "test",
    data_root: str | Path | None = None,
    cache_dir: str | Path | None = None,
    dataset_options: dict[str, Any] | None = None,
) -> tuple[dict[str, Any], str]:
    """The JSON document and the Markdown interop matrix for the graph in ``path``."""
    import nir

    from export.nir_check import check_consumer, format_matrix
    from snnergy.simulate import load_inputs

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"NIR file {path} does not exist")
    if samples < 1:
        raise ValueError(f"--samples must be >= 1, got {samples}")
    try:
        graph = nir.read(path)
    except Exception as error:
        raise ValueError(f"{path} is not a NIR file nir.read can load ({type(error).__name__}: {error})") from None
    ports = {name: node for name, node in graph.nodes.items() if isinstance(node, nir.Input)}
    if "model_config" in graph.metadata and set(ports) == {"input.audio", "input.video"}:
        manifest = {"model_config": json.loads(graph.metadata["model_config"])}
        audio, video, _ = load_inputs(manifest, dataset, split, samples, data_root, cache_dir, dataset_options)
        inputs = {"input.audio": torch.from_numpy(audio).transpose(0, 1), "input.video": torch.from_numpy(video)}
        inputs["input.video"] = inputs["input.video"].transpose(0, 1)
        source = f"{len(audio)} {dataset}/{split} samples"
    else:
        steps = int(graph.metadata.get("time_steps", 4))
        generator = torch.Generator().manual_seed(0)
        inputs = {
            name: torch.rand((steps, samples, *(int(d) for d in node.output_type["output"])), generator=generator)
            for name, node in ports.items()
        }
        source = f"{samples} random samples (the graph names no SNNergy model)"
    reports = [check_consumer(graph, consumer, inputs) for consumer in consumers]
    matrix = f"`{path.name}` on {source}\n\n" + format_matrix(reports, graph)
    document = {"file": str(path), "inputs": source, "consumers": [r.to_dict() for r in reports]}
    return document, matrix
