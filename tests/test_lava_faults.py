"""A stop signal to `snnergy simulate` while Lava runs stops the whole Lava process group and
frees its shared memory before the command exits, with one line and exit code 128 + signal."""

from __future__ import annotations

import contextlib
import glob
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from export.lava_package import write_lava_package
from snnergy.checkpoint import from_model, save_checkpoint
from snnergy.config import load_preset
from snnergy.model import build_model

MICRO = dict(image_size=16, embed_dim=16, time_steps=2, num_classes=10)


def _processes() -> Iterator[tuple[int, str, int, int]]:
    """(pid, state, ppid, pgrp) of every process, from /proc."""
    for stat in glob.glob("/proc/[0-9]*/stat"):
        try:
            with open(stat) as handle:
                state, ppid, pgrp = handle.read().rsplit(")", 1)[1].split()[:3]
        except OSError:
            continue
        yield int(stat.split("/")[2]), state, int(ppid), int(pgrp)


def _children(pid: int) -> list[int]:
    return [child for child, _, ppid, _ in _processes() if ppid == pid]


def _group(pgid: int) -> list[int]:
    """The living (not zombie) members of process group ``pgid``."""
    return [member for member, state, _, pgrp in _processes() if pgrp == pgid and state != "Z"]


@contextlib.contextmanager
def running_simulation(tmp_path: Path, cache: Path, timeout: int, benchmark: bool = False) -> Iterator[dict]:
    """`snnergy simulate` of a micro package (or ``benchmarks/lava_speed.py`` on its
    checkpoint) in a subprocess, yielded once Lava's workers run (``run["group"]``: the Lava
    process group); afterwards nothing of it is left running."""
    model = build_model(load_preset("tiny", **MICRO), seed=0)
    checkpoint = save_checkpoint(from_model(model, [str(i) for i in range(10)]), tmp_path / "m.pt")
    write_lava_package(from_model(model, [str(i) for i in range(10)]), tmp_path / "m.lava", source=checkpoint)
    run = {"group": None}
    if benchmark:
        script = Path(__file__).resolve().parents[1] / "benchmarks" / "lava_speed.py"
        command = [sys.executable, str(script), str(checkpoint), "--samples", "400", "--lanes", "1"]
        command += ["--repeats", "1", "--groupings", "block"]
    else:
        command = [sys.executable, "-m", "snnergy.cli", "simulate", str(tmp_path / "m.lava"), "--cache-dir", str(cache)]
        command += ["--samples", "400", "--lanes", "1", "--timeout", str(timeout)]
    env = {**os.environ, "SNNERGY_CACHE": str(cache)}  # the benchmark reads avdigits from the default cache
    run["proc"] = proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.time() + 90
        while time.time() < deadline and run["group"] is None:  # wait until Lava's workers run
            for child in _children(proc.pid):
                if len(_group(child)) >= 10:
                    run["group"] = child
            time.sleep(0.2)
        assert run["group"] is not None, "the Lava run never started"
        yield run
    finally:
        if proc.poll() is None:
            proc.kill()
        if run["group"] is not None and _group(run["group"]):  # never leave a Lava group behind, even on failure
            os.killpg(run["group"], signal.SIGKILL)


def shared_memory_of(pgid: int) -> set[str]:
    """The /dev/shm files the processes of group ``pgid`` map (other runs' segments excluded)."""
    segments: set[str] = set()
    for pid in _group(pgid):
        with contextlib.suppress(OSError), open(f"/proc/{pid}/maps") as handle:
            segments.update(line.split(None, 5)[5].strip() for line in handle if " /dev/shm/" in line)
    return segments


def assert_nothing_left(run: dict, segments: set[str]) -> None:
    time.sleep(0.5)
    assert _group(run["group"]) == []  # every Lava process is gone
    assert segments and not [path for path in segments if os.path.exists(path)]  # and its shared memory with it


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT])
def test_a_stop_signal_leaves_no_lava_process_and_no_shared_memory(tmp_path, avdigits_cache, stop):
    with running_simulation(tmp_path, avdigits_cache, timeout=120) as run:
        segments = shared_memory_of(run["group"])
        run["proc"].send_signal(stop)
        _, err = run["proc"].communicate(timeout=60)
    assert run["proc"].returncode == 128 + stop, err
    assert f"stopped by {signal.Signals(stop).name}" in err and "Traceback" not in err, err
    assert_nothing_left(run, segments)


def test_a_stop_signal_to_the_lava_benchmark_cleans_up_the_same_way(tmp_path, avdigits_cache):
    with running_simulation(tmp_path, avdigits_cache, timeout=120, benchmark=True) as run:
        segments = shared_memory_of(run["group"])
        run["proc"].send_signal(signal.SIGTERM)
        _, err = run["proc"].communicate(timeout=60)
    assert run["proc"].returncode == 128 + signal.SIGTERM, err
    assert "lava_speed: error: stopped by SIGTERM" in err and "Traceback" not in err, err
    assert_nothing_left(run, segments)


def test_a_worker_killed_mid_run_is_reported_within_seconds(tmp_path, avdigits_cache):
    with running_simulation(tmp_path, avdigits_cache, timeout=300) as run:
        sizes = [0, -1]
        while sizes[-1] != sizes[-2] and len(sizes) < 60:  # every worker started: the run is under way
            time.sleep(1.0)
            sizes.append(len(_group(run["group"])))
        time.sleep(1.0)
        segments = shared_memory_of(run["group"])
        victim = max(pid for pid in _group(run["group"]) if pid != run["group"])
        killed_at = time.time()
        os.kill(victim, signal.SIGKILL)
        _, err = run["proc"].communicate(timeout=60)
        reported_after = time.time() - killed_at
    assert run["proc"].returncode == 2, err
    assert "ended during the run" in err and "Traceback" not in err, err
    assert reported_after < 15  # seconds, not the 300 s timeout
    assert_nothing_left(run, segments)
