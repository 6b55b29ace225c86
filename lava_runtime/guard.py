"""Run a Lava network in a child interpreter under a time limit.

A misconfigured Lava network (a float parameter in fixed point, a port left unconnected)
hangs instead of failing. Every run therefore happens in a child process in its own
process group: on timeout the whole group, Lava's worker processes included, is killed and
the shared-memory segments it mapped are unlinked, since a killed Lava runtime leaks them.

The child is a fresh Python interpreter, not a fork of the caller: it imports only the
function it runs (``lava_runtime.network`` needs the package format, numpy, torch and
Lava), so the dozens of workers Lava forks from it do not inherit, and slowly copy, a
caller's heap holding the PyTorch model, SpikingJelly and a dataset. The function and its
arguments travel pickled on the child's stdin; its result comes back through a pipe.

The same cleanup runs when the command itself is told to stop: while the child runs, the
parent turns SIGTERM, SIGINT and SIGHUP into ``LavaInterrupted``, kills the child's group,
unlinks its shared memory and then lets the exception end the command, so no Lava process
outlives it.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pickle
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any


class LavaRunError(RuntimeError):
    """The Lava run failed in its child process."""


class LavaTimeoutError(LavaRunError):
    """The Lava run did not finish in time (a hang)."""

    one_line = True  # snnergy.errors reports it as one line


class LavaInterrupted(LavaRunError):
    """The command received a stop signal while Lava ran; the Lava processes were stopped."""

    one_line = True

    def __init__(self, signum: int):
        super().__init__(
            f"stopped by {signal.Signals(signum).name}; the Lava processes and their shared memory were cleaned up"
        )
        self.signum = signum


class LavaWorkerDied(LavaRunError):
    """A process of the Lava run ended before the run did (killed, or out of memory)."""

    one_line = True


STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
POLL_S = 0.5  # how often the parent looks at the Lava process group while it waits
_announce: Connection | None = None  # in the child: where announce_stopping() writes


def announce_stopping() -> None:
    """Called by the run (in the child) before it stops Lava: from here on, workers ending
    is the normal shutdown, not a failure."""
    if _announce is not None:
        _announce.send(("stopping", None))


@contextlib.contextmanager
def _stop_signals_raise() -> Any:
    """While the block runs, a stop signal raises ``LavaInterrupted`` (main thread only)."""

    def handler(signum: int, frame: Any) -> None:
        for sig in STOP_SIGNALS:  # one stop is enough: let the cleanup finish undisturbed
            signal.signal(sig, signal.SIG_IGN)
        raise LavaInterrupted(signum)

    try:
        previous = {sig: signal.signal(sig, handler) for sig in STOP_SIGNALS}
    except ValueError:  # not the main thread: signals cannot be caught here
        yield
        return
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


CHILD_COMMAND = "from lava_runtime.guard import _child_main; _child_main()"


def _child_main() -> None:
    """The child interpreter: read ``sys.path`` and ``(fn, args)`` from stdin, run, report."""
    global _announce
    conn = Connection(int(sys.argv[-1]), readable=False)
    _announce = conn
    try:
        paths = pickle.load(sys.stdin.buffer)  # the caller's, so its modules (tests too) import
        sys.path[:0] = [path for path in paths if path not in sys.path]
        fn, args = pickle.load(sys.stdin.buffer)
        conn.send(("ok", fn(*args)))
    except BaseException:  # noqa: BLE001 - report anything to the parent
        conn.send(("error", traceback.format_exc()))
    finally:
        conn.close()


def _start_child(fn: Callable[..., Any], args: tuple[Any, ...]) -> tuple[subprocess.Popen, Connection]:
    """A fresh interpreter in its own process group, running ``fn(*args)``."""
    payload = pickle.dumps(sys.path) + pickle.dumps((fn, args))
    read_fd, write_fd = os.pipe()
    try:
        proc = subprocess.Popen(
            [sys.executable, "-c", CHILD_COMMAND, str(write_fd)],
            stdin=subprocess.PIPE,
            pass_fds=(write_fd,),
            process_group=0,
        )
    finally:
        os.close(write_fd)
    try:
        proc.stdin.write(payload)
        proc.stdin.close()
    except BrokenPipeError:  # it died at start; its stderr says why, the result pipe says EOF
        pass
    return proc, Connection(read_fd, writable=False)


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


def _group_proc_dirs(pgid: int, living: bool = False) -> list[str]:
    """``/proc/<pid>/`` of every process in group ``pgid`` (``living``: zombies left out)."""
    found = []
    for stat in glob.glob("/proc/[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            with open(stat) as f:
                fields = f.read().rsplit(")", 1)[1].split()
            if int(fields[2]) == pgid and not (living and fields[0] in "ZX"):  # field 5: pgrp; field 3: state
                found.append(stat[: -len("stat")])
    return found


def run_with_timeout(fn: Callable[..., Any], *args: Any, timeout: float) -> Any:
    """``fn(*args)`` in a child interpreter; raises ``LavaTimeoutError`` after ``timeout`` seconds.

    ``fn`` must be importable by name (a module-level function) and ``args`` picklable."""
    status, payload = "hang", None
    shm_before, started = set(glob.glob("/dev/shm/*")), time.time()
    with _stop_signals_raise():
        proc, conn = _start_child(fn, args)
        try:
            status, payload = _wait(proc, conn, timeout)
        except EOFError:
            status, payload = "error", f"child died without a result (exit code {proc.wait()})"
        finally:
            if _reap(proc, grace=5 if status in ("ok", "error") else 0):
                _unlink_orphans(shm_before, started)
            conn.close()
    if status == "hang":
        raise LavaTimeoutError(f"lava run did not finish within {timeout:g} s (hang)")
    if status == "worker died":
        raise LavaWorkerDied(
            f"Lava process {payload} ended during the run (killed, or out of memory); the rest of the run was stopped"
        )
    if status != "ok":
        raise LavaRunError(f"lava run failed in its child process:\n{payload}")
    return payload


def _workers(pgid: int) -> tuple[set[str], set[str]]:
    """The forked Python processes of group ``pgid`` (same command line as its leader, so
    helpers a library runs through ``exec`` are left out): (living, zombie) ``/proc`` dirs."""
    try:
        with open(f"/proc/{pgid}/cmdline", "rb") as f:
            leader = f.read()
    except OSError:
        return set(), set()
    living, zombies = set(), set()
    alive = set(_group_proc_dirs(pgid, living=True))
    for proc_dir in _group_proc_dirs(pgid):
        if proc_dir not in alive:
            zombies.add(proc_dir)
            continue
        with contextlib.suppress(OSError), open(proc_dir + "cmdline", "rb") as f:
            if f.read() == leader:
                living.add(proc_dir)
    return living, zombies


def _wait(proc: subprocess.Popen, conn: Connection, timeout: float) -> tuple[str, Any]:
    """Wait for the child's result; ``("hang", None)`` after ``timeout`` seconds, and
    ``("worker died", pid)`` as soon as a worker of its group has died before the run
    announced its shutdown (Lava would wait for it forever).

    A worker is a process of the group running the leader's program, seen alive in two
    polls in a row (a helper the child forks to ``exec`` something else lives for
    milliseconds with the leader's command line); it has died when it is gone (reaped when
    Lava started another process) or still a zombie ``POLL_S`` later."""
    deadline = time.monotonic() + timeout
    workers: set[str] = set()
    previous: set[str] = set()
    zombies: set[str] = set()
    stopping = False
    while (remaining := deadline - time.monotonic()) > 0:
        if conn.poll(min(POLL_S, remaining)):
            kind, payload = conn.recv()
            if kind == "stopping":
                stopping = True
                continue
            return kind, payload
        if not stopping:
            living, now_zombies = _workers(proc.pid)
            dead = ((workers - living - now_zombies) | (zombies & now_zombies)) & workers
            if dead and proc.poll() is None and not conn.poll(0):  # not if "stopping" just arrived
                return "worker died", int(sorted(dead)[0].split("/")[2])
            workers |= living & previous
            previous, zombies = living, now_zombies
    return "hang", None


def _reap(proc: subprocess.Popen, grace: float) -> bool:
    """Wait for ``proc``; after ``grace`` seconds kill it with every process it forked, free
    its shm (the group is stopped first, so none maps a new segment while we list them).
    Returns whether it had to kill."""
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(grace)
    if proc.poll() is not None and not _group_proc_dirs(proc.pid, living=True):
        return False
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGSTOP)
    segments = _shm_segments_of_group(proc.pid)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    for path in segments:
        with contextlib.suppress(OSError):
            os.unlink(path)
    return True


def _unlink_orphans(before: set[str], started: float) -> None:
    """Segments of Python's multiprocessing (``psm_*``, ``sem.mp-*``, what Lava's channels use)
    created since the run started and mapped by no living process: left by the killed group
    between creating and mapping them."""
    candidates = set()
    for path in set(glob.glob("/dev/shm/psm_*")) | set(glob.glob("/dev/shm/sem.mp-*")):
        with contextlib.suppress(OSError):
            if path not in before and os.stat(path).st_ctime >= started - 1:
                candidates.add(path)
    if not candidates:
        return
    mapped: set[str] = set()
    for maps in glob.glob("/proc/[0-9]*/maps"):
        with contextlib.suppress(OSError), open(maps) as f:
            mapped.update(line.split(None, 5)[5].strip() for line in f if " /dev/shm/" in line)
    for path in candidates - mapped:
        with contextlib.suppress(OSError):
            os.unlink(path)


def _shm_segments_of_group(pgid: int) -> set[str]:
    """``/dev/shm`` files mapped by any process of group ``pgid`` (Linux /proc)."""
    segments: set[str] = set()
    for proc_dir in _group_proc_dirs(pgid):
        with contextlib.suppress(OSError, IndexError), open(proc_dir + "maps") as f:
            segments.update(line.split(None, 5)[5].strip() for line in f if " /dev/shm/" in line)
    return segments
