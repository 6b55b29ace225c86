"""Run a Lava network in a forked child under a time limit.

A misconfigured Lava network (a float parameter in fixed point, a port left unconnected)
hangs instead of failing. Every run therefore happens in a forked child (Lava needs the
fork start method) in its own process group: on timeout the whole group, Lava's worker
processes included, is killed and the shared-memory segments it mapped are unlinked, since
a killed Lava runtime leaks them.
"""

from __future__ import annotations

import contextlib
import glob
import multiprocessing as mp
import os
import signal
import traceback
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any


class LavaRunError(RuntimeError):
    """The Lava run failed in its child process."""


class LavaTimeoutError(LavaRunError):
    """The Lava run did not finish in time (a hang)."""


def _child(conn: Connection, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
    os.setpgid(0, 0)  # own process group: a hung runtime and its workers die together
    try:
        conn.send(("ok", fn(*args)))
    except BaseException:  # noqa: BLE001 - report anything to the parent
        conn.send(("error", traceback.format_exc()))
    finally:
        conn.close()


def group_memory() -> tuple[int, int]:
    """Proportional set size (bytes) summed over this process's group, and its process count.

    PSS shares each page among the processes mapping it, so forked copies of the libraries
    and Lava's shared channels count once in the sum.
    """
    total, count = 0, 0
    for proc_dir in _group_proc_dirs(os.getpgid(0)):
        with contextlib.suppress(OSError, StopIteration, ValueError):
            with open(proc_dir + "smaps_rollup") as f:
                total += next(int(line.split()[1]) for line in f if line.startswith("Pss:")) * 1024
            count += 1
    return total, count


def _group_proc_dirs(pgid: int) -> list[str]:
    """``/proc/<pid>/`` of every process in group ``pgid``."""
    found = []
    for stat in glob.glob("/proc/[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            with open(stat) as f:
                if int(f.read().rsplit(")", 1)[1].split()[2]) == pgid:  # field 5: pgrp
                    found.append(stat[: -len("stat")])
    return found


def run_with_timeout(fn: Callable[..., Any], *args: Any, timeout: float) -> Any:
    """``fn(*args)`` in a forked child; raises ``LavaTimeoutError`` after ``timeout`` seconds."""
    ctx = mp.get_context("fork")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(child, fn, args))
    proc.start()
    child.close()
    status, payload = "hang", None
    try:
        if parent.poll(timeout):
            status, payload = parent.recv()
    except EOFError:
        status, payload = "error", f"child died without a result (exit code {proc.exitcode})"
    finally:
        _reap(proc, grace=0 if status == "hang" else 5)
        parent.close()
    if status == "hang":
        raise LavaTimeoutError(f"lava run did not finish within {timeout:g} s (hang)")
    if status != "ok":
        raise LavaRunError(f"lava run failed in its child process:\n{payload}")
    return payload


def _reap(proc: mp.process.BaseProcess, grace: float) -> None:
    """Join ``proc``; after ``grace`` seconds kill it with every process it forked, free its shm."""
    proc.join(grace)
    if not proc.is_alive():
        return
    segments = _shm_segments_of_group(proc.pid)
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:  # the child had not yet made its own process group
        proc.kill()
    proc.join()
    for path in segments:
        with contextlib.suppress(OSError):
            os.unlink(path)


def _shm_segments_of_group(pgid: int) -> set[str]:
    """``/dev/shm`` files mapped by any process of group ``pgid`` (Linux /proc)."""
    segments: set[str] = set()
    for proc_dir in _group_proc_dirs(pgid):
        with contextlib.suppress(OSError, IndexError):
            with open(proc_dir + "maps") as f:
                segments.update(line.split(None, 5)[5].strip() for line in f if " /dev/shm/" in line)
    return segments
