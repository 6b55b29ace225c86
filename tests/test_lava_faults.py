"""A stop signal to `snnergy simulate` while Lava runs stops the whole Lava process group and
frees its shared memory before the command exits, with one line and exit code 128 + signal."""

from __future__ import annotations

import glob
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from export.lava_package import write_lava_package
from snnergy.checkpoint import from_model, save_checkpoint
from snnergy.config import load_preset
from snnergy.model import build_model

MICRO = dict(image_size=16, embed_dim=16, time_steps=2, num_classes=10)


def _children(pid: int) -> list[int]:
    found = []
    for stat in glob.glob("/proc/[0-9]*/stat"):
        try:
            with open(stat) as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:  # field 4: ppid
            found.append(int(stat.split("/")[2]))
    return found


def _group(pgid: int) -> list[int]:
    members = []
    for stat in glob.glob("/proc/[0-9]*/stat"):
        try:
            with open(stat) as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(stat.split("/")[2]))
    return members


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT])
def test_a_stop_signal_leaves_no_lava_process_and_no_shared_memory(tmp_path, avdigits_cache, stop):
    model = build_model(load_preset("tiny", **MICRO), seed=0)
    checkpoint = save_checkpoint(from_model(model, [str(i) for i in range(10)]), tmp_path / "m.pt")
    write_lava_package(from_model(model, [str(i) for i in range(10)]), tmp_path / "m.lava", source=checkpoint)
    shm_before = set(glob.glob("/dev/shm/*"))
    command = [sys.executable, "-m", "snnergy.cli", "simulate", str(tmp_path / "m.lava"), "--cache-dir", str(avdigits_cache),
               "--samples", "400", "--lanes", "1", "--timeout", "120"]  # fmt: skip
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lava_group = None
    try:
        deadline = time.time() + 90
        while time.time() < deadline and lava_group is None:  # wait until Lava's workers run
            for child in _children(proc.pid):
                if len(_group(child)) >= 10:
                    lava_group = child
            time.sleep(0.2)
        assert lava_group is not None, "the Lava run never started"
        proc.send_signal(stop)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
        if lava_group is not None and _group(lava_group):  # never leave a Lava group behind, even on failure
            os.killpg(lava_group, signal.SIGKILL)
    assert proc.returncode == 128 + stop, err
    assert f"stopped by {signal.Signals(stop).name}" in err and "Traceback" not in err, err
    time.sleep(0.5)
    assert _group(lava_group) == []  # every Lava process is gone
    assert set(glob.glob("/dev/shm/*")) <= shm_before  # and its shared memory with it


def test_a_worker_killed_mid_run_is_reported_within_seconds(tmp_path, avdigits_cache):
    model = build_model(load_preset("tiny", **MICRO), seed=0)
    checkpoint = save_checkpoint(from_model(model, [str(i) for i in range(10)]), tmp_path / "m.pt")
    write_lava_package(from_model(model, [str(i) for i in range(10)]), tmp_path / "m.lava", source=checkpoint)
    shm_before = set(glob.glob("/dev/shm/*"))
    command = [sys.executable, "-m", "snnergy.cli", "simulate", str(tmp_path / "m.lava"), "--cache-dir", str(avdigits_cache),
               "--samples", "400", "--lanes", "1", "--timeout", "300"]  # fmt: skip
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lava_group = None
    try:
        deadline = time.time() + 90
        while time.time() < deadline and lava_group is None:
            for child in _children(proc.pid):
                if len(_group(child)) >= 10:
                    lava_group = child
            time.sleep(0.2)
        assert lava_group is not None, "the Lava run never started"
        sizes = [0, -1]
        while sizes[-1] != sizes[-2] and time.time() < deadline:  # every worker started: the run is under way
            time.sleep(1.0)
            sizes.append(len(_group(lava_group)))
        time.sleep(1.0)
        victim = max(pid for pid in _group(lava_group) if pid != lava_group)
        killed_at = time.time()
        os.kill(victim, signal.SIGKILL)
        _, err = proc.communicate(timeout=60)
        reported_after = time.time() - killed_at
    finally:
        if proc.poll() is None:
            proc.kill()
        if lava_group is not None and _group(lava_group):  # never leave a Lava group behind, even on failure
            os.killpg(lava_group, signal.SIGKILL)
    assert proc.returncode == 2, err
    assert "ended during the run" in err and "Traceback" not in err, err
    assert reported_after < 15  # seconds, not the 300 s timeout
    time.sleep(0.5)
    assert _group(lava_group) == []
    assert set(glob.glob("/dev/shm/*")) <= shm_before
