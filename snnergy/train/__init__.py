"""Training loop: one code path for CPU, one GPU, and several processes (torchrun).

``train(...)`` writes into ``out_dir``:

* ``metrics.jsonl`` - one JSON line per epoch (losses, accuracies, lr, throughput);
* ``last.pt`` - weights + optimizer/schedule/RNG state after every epoch (``--resume``),
  and the metrics history;
* ``best.pt`` - the weights with the best validation accuracy so far.

An epoch is committed by writing ``last.pt`` (atomically), then ``best.pt`` if it improved,
then ``metrics.jsonl`` rewritten from the history in ``last.pt``. ``last.pt`` is the record:
a kill at any instant loses at most the epoch in progress, and ``--resume`` repairs the
other two from it (the metrics file gets exactly one line per committed epoch; a
``best.pt`` missed by the kill is written from ``last.pt``'s weights, which are the best).
While it trains, the run directory is locked (``.lock``, an OS lock released when the
process ends): a second trainer on the same directory stops with the holder's pid. Under
``torchrun`` (``WORLD_SIZE`` > 1) the model is wrapped in DistributedDataParallel (gloo on
CPU, NCCL on CUDA), each rank reads its shard through a DistributedSampler, and only rank 0
logs and writes files.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler
from tqdm import tqdm

from snnergy.atomic import atomic_write_text
from snnergy.checkpoint import Checkpoint, from_model, load_checkpoint, save_checkpoint
from snnergy.config import ModelConfig
from snnergy.devices import resolve_device
from snnergy.evaluate import evaluate
from snnergy.model import SNNergy, build_model
from snnergy.recipe import TrainConfig


@dataclass(frozen=True)
class DistributedContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @classmethod
    def from_env(cls) -> DistributedContext:
        return cls(
            int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("LOCAL_RANK", 0))
        )


RUN_FILES = ("metrics.jsonl", "last.pt", "best.pt")  # what a run writes into its directory


@contextlib.contextmanager
def run_lock(out_dir: Path) -> Iterator[None]:
    """Hold ``out_dir/.lock`` (``flock``, so a killed trainer never leaves it stuck)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / ".lock"
    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            raise ValueError(
                f"{out_dir} is being trained by another process (pid {holder}); wait for it or use another --out"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        try:
            yield
        finally:
            handle.seek(0)
            handle.truncate()


def commit_point(name: str) -> None:
    """Called between the writes that commit an epoch; tests inject a kill here."""


def warmup_cosine(step: int, total_steps: int, warmup_steps: int) -> float:
    """LR multiplier: linear warm-up to 1, then cosine decay to 0 at ``total_steps``."""
    if warmup_steps and step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def _loader(
    dataset: Dataset, config: TrainConfig, shuffle: bool, ctx: DistributedContext, epoch_seed: int
) -> DataLoader:
    sampler = None
    generator = torch.Generator().manual_seed(epoch_seed)
    if ctx.enabled:
        sampler = DistributedSampler(dataset, ctx.world_size, ctx.rank, shuffle=shuffle, seed=config.seed)
        sampler.set_epoch(epoch_seed)
    return DataLoader(
        dataset,
        batch_size=config.batch_size,
        shuffle=shuffle and sampler is None,
        sampler=sampler,
        num_workers=config.num_workers,
        generator=generator,
        drop_last=False,
    )


def _rng_state() -> dict[str, Any]:
    return {"torch": torch.random.get_rng_state()}


class Trainer:
    """Holds model, optimizer and schedule; runs epochs and writes checkpoints."""

    def __init__(
        self,
        model_config: ModelConfig,
        config: TrainConfig,
        train_set: Dataset,
        val_set: Dataset,
        out_dir: Path,
        class_names: list[str],
        data_meta: dict[str, Any],
        ctx: DistributedContext | None = None,
    ):
        self.config, self.out_dir, self.class_names, self.data_meta = config, Path(out_dir), class_names, data_meta
        self.ctx = ctx or DistributedContext.from_env()
        self.device = resolve_device(config.device)
        if self.ctx.enabled and self.device.type == "cuda":
            self.device = torch.device("cuda", self.ctx.local_rank)
        self.train_set, self.val_set = train_set, val_set
        self.model: SNNergy = build_model(model_config, seed=config.seed).to(self.device)
        self.module: nn.Module = self.model
        if self.ctx.enabled:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.module = nn.parallel.DistributedDataParallel(self.model, device_ids=ids)
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        steps_per_epoch = len(_loader(train_set, config, True, self.ctx, 0))
        if config.limit_train_batches:
            steps_per_epoch = min(steps_per_epoch, config.limit_train_batches)
        total, warmup = steps_per_epoch * config.epochs, steps_per_epoch * config.warmup_epochs
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda step: warmup_cosine(step, total, warmup)
        )
        self.use_amp = config.amp and self.device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.use_amp)
        self.loss_fn = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
        self.start_epoch, self.best_accuracy, self.best_epoch = 0, -1.0, -1
        self.history: list[dict[str, Any]] = []

    # -- checkpoints -------------------------------------------------------------------
    def _checkpoint(self, epoch: int, metrics: dict[str, Any], with_state: bool) -> Checkpoint:
        checkpoint = from_model(
            self.model,
            self.class_names,
            epoch=epoch,
            metrics=metrics,
            train_config=self.config.to_dict(),
            data=self.data_meta,
            trained=True,
        )
        if with_state:
            checkpoint.train_state = {
                "epoch": epoch,
                "best_accuracy": self.best_accuracy,
                "best_epoch": self.best_epoch,
                "history": list(self.history),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "scaler": self.scaler.state_dict(),
                "rng": _rng_state(),
            }
        return checkpoint

    def resume(self) -> None:
        """Continue from ``out_dir/last.pt``: weights, optimizer, schedule, epoch, RNG."""
        path = self.out_dir / "last.pt"
        checkpoint = load_checkpoint(path)
        if checkpoint.train_state is None:
            raise ValueError(f"{path} has no training state to resume from")
        if checkpoint.model_config != self.model.config:
            raise ValueError(f"{path} was trained with a different model config; use another --out")
        self.model.load_state_dict(checkpoint.state_dict)
        state = checkpoint.train_state
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        torch.random.set_rng_state(state["rng"]["torch"])
        self.start_epoch, self.best_accuracy = state["epoch"] + 1, state["best_accuracy"]
        self.best_epoch = state.get("best_epoch", -1)
        self.history = list(state.get("history") or self._metrics_lines(state["epoch"] + 1))
        if self.ctx.is_main:
            self._repair(checkpoint)

    def _metrics_lines(self, epochs: int) -> list[dict[str, Any]]:
        """The first ``epochs`` records of metrics.jsonl (runs written before last.pt kept the history)."""
        path = self.out_dir / "metrics.jsonl"
        records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []
        return [r for r in records if r.get("epoch", 0) <= epochs][-epochs:]

    def _repair(self, last: Checkpoint) -> None:
        """Bring metrics.jsonl and best.pt in line with last.pt after an interrupted commit."""
        self._write_metrics()
        best_path = self.out_dir / "best.pt"
        best_epoch = load_checkpoint(best_path).meta.get("epoch") if best_path.exists() else None
        if self.best_epoch >= 0 and best_epoch != self.best_epoch and self.best_epoch == last.meta.get("epoch"):
            record = self.history[-1] if self.history else {}
            save_checkpoint(self._checkpoint(self.best_epoch, record, with_state=False), best_path)

    def _write_metrics(self) -> None:
        atomic_write_text(self.out_dir / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in self.history))

    # -- epochs ------------------------------------------------------------------------
    def train_epoch(self, epoch: int) -> dict[str, float]:
        self.module.train()
        loader = _loader(self.train_set, self.config, True, self.ctx, self.config.seed * 1000 + epoch)
        limit = self.config.limit_train_batches or len(loader)
        total_loss, correct, seen, start = 0.0, 0, 0, time.perf_counter()
        bar = tqdm(
            loader,
            total=min(limit, len(loader)),
            desc=f"epoch {epoch + 1}/{self.config.epochs}",
            disable=not self.ctx.is_main,
            leave=False,
        )
        for index, (audio, video, labels) in enumerate(bar):
            if index >= limit:
                break
            audio, video, labels = audio.to(self.device), video.to(self.device), labels.to(self.device)
            with torch.autocast(device_type=self.device.type, dtype=torch.float16, enabled=self.use_amp):
                logits = self.module(audio, video)
                loss = self.loss_fn(logits.float(), labels)
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_clip)
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.scheduler.step()
            total_loss += loss.item() * labels.numel()
            correct += (logits.argmax(1) == labels).sum().item()
            seen += labels.numel()
            bar.set_postfix(loss=f"{total_loss / seen:.3f}", acc=f"{correct / seen:.3f}")
        seconds = time.perf_counter() - start
        stats = torch.tensor([total_loss, correct, seen], dtype=torch.float64)
        if self.ctx.enabled:
            dist.all_reduce(stats)
        total_loss, correct, seen = stats.tolist()
        return {
            "train_loss": total_loss / seen,
            "train_accuracy": correct / seen,
            "train_seconds": seconds,
            "train_samples_per_s": seen / seconds,
        }

    def fit(self) -> dict[str, Any]:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        started, record = time.perf_counter(), {}
        for epoch in range(self.start_epoch, self.config.epochs):
            record = {"epoch": epoch + 1, "lr": self.optimizer.param_groups[0]["lr"], **self.train_epoch(epoch)}
            if self.ctx.is_main:
                val = evaluate(
                    self.model, self.val_set, self.device, self.config.batch_size, self.class_names, progress=False
                )
                record.update(val_loss=val["loss"], val_accuracy=val["accuracy"])
                improved = val["accuracy"] > self.best_accuracy
                if improved:
                    self.best_accuracy, self.best_epoch = val["accuracy"], epoch
                record["best_val_accuracy"] = self.best_accuracy
                self.history.append(record)
                save_checkpoint(self._checkpoint(epoch, record, with_state=True), self.out_dir / "last.pt")
                commit_point("after_last")
                if improved:
                    save_checkpoint(self._checkpoint(epoch, record, with_state=False), self.out_dir / "best.pt")
                    commit_point("after_best")
                self._write_metrics()
                print(
                    f"epoch {epoch + 1}/{self.config.epochs}: train loss {record['train_loss']:.3f} "
                    f"acc {record['train_accuracy']:.3f} | val loss {record['val_loss']:.3f} acc "
                    f"{record['val_accuracy']:.3f} "
                    f"| {record['train_samples_per_s']:.1f} samples/s",
                    flush=True,
                )
            if self.config.max_minutes and (time.perf_counter() - started) / 60 > self.config.max_minutes:
                if self.ctx.is_main:
                    print(
                        f"stopping after epoch {epoch + 1}: --max-minutes {self.config.max_minutes} reached", flush=True
                    )
                break
        return {
            "best_val_accuracy": self.best_accuracy,
            "last_epoch": record.get("epoch", self.start_epoch),
            "out_dir": str(self.out_dir),
        }


def train(
    model_config: ModelConfig,
    config: TrainConfig,
    train_set: Dataset,
    val_set: Dataset,
    out_dir: str | Path,
    class_names: list[str],
    data_meta: dict[str, Any] | None = None,
    resume: bool = False,
    fresh: bool = False,
) -> dict[str, Any]:
    """Train (or resume) and return a summary; sets up and tears down torch.distributed.

    ``fresh`` removes the files an earlier run left in ``out_dir`` (``RUN_FILES``) first, so
    its metrics never mix with this run's."""
    ctx = DistributedContext.from_env()
    if ctx.enabled and not dist.is_initialized():
        backend = "nccl" if resolve_device(config.device).type == "cuda" else "gloo"
        dist.init_process_group(backend=backend)
    try:
        trainer = Trainer(model_config, config, train_set, val_set, Path(out_dir), class_names, data_meta or {}, ctx)
        with run_lock(Path(out_dir)) if ctx.is_main else contextlib.nullcontext():
            if fresh and ctx.is_main:
                for name in RUN_FILES:
                    (Path(out_dir) / name).unlink(missing_ok=True)
            if resume:
                trainer.resume()
            return trainer.fit()
    finally:
        if ctx.enabled and dist.is_initialized():
            dist.destroy_process_group()


def train_on_dataset(
    model_config: ModelConfig,
    config: TrainConfig,
    dataset: str,
    out_dir: str | Path,
    data_root: str | Path | None = None,
    cache_dir: str | Path | None = None,
    resume: bool = False,
    dataset_options: dict[str, Any] | None = None,
    fresh: bool = False,
) -> dict[str, Any]:
    """Train on a named dataset's train split, validating on its val split (``fresh``: the
    run directory's earlier metrics and checkpoints are replaced, not continued)."""
    from snnergy.data.registry import make_dataset, validation_split

    size, steps = model_config.image_size, model_config.time_steps
    options = dataset_options or {}
    train_set = make_dataset(dataset, "train", size, steps, data_root, cache_dir, **options)
    val_name = validation_split(train_set)
    if val_name != "val":
        print(f"note: this split protocol has no validation split; selecting checkpoints on '{val_name}'", flush=True)
    val_set = make_dataset(dataset, val_name, size, steps, data_root, cache_dir, **options)
    class_names = list(train_set.class_names)
    if model_config.num_classes != len(class_names):
        model_config = model_config.with_overrides(num_classes=len(class_names))
    data_meta = {
        "dataset": dataset,
        "data_root": str(data_root) if data_root else None,
        "options": options,
        "validation_split": val_name,
        "train_samples": len(train_set),
    }
    return train(model_config, config, train_set, val_set, out_dir, class_names, data_meta, resume, fresh)
