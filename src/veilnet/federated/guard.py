"""``python -m veilnet.federated.guard PARENT COMMAND…``: run COMMAND and take its whole process
tree down with it, and with the process PARENT that started the guard.

Flower's SuperLink and SuperNode start a SuperExec, which starts the server or client app, each
in its own process (the SuperLink's SuperExec in a session of its own); each watches its parent's
PID and stops when that PID is gone. That fails where nothing reaps an orphan: a dead parent
stays a zombie, its PID still exists, and its children run on (a SuperNode keeps training for
the server after ``veilnet fl client`` was killed). So :mod:`veilnet.federated.deployment` starts
each Flower command through this guard, which

* stops with PARENT, even when that one is SIGKILLed (Linux: ``prctl(PR_SET_PDEATHSIG,
  SIGTERM)``; a guard whose parent is not PARENT any more, because it died before the guard
  asked, stops at once);
* is the subreaper of COMMAND's tree (``PR_SET_CHILD_SUBREAPER``): every orphan in it becomes
  the guard's child, so the guard reaps it (Flower's PID watch then works) and finds it;
* on SIGTERM, SIGINT or SIGHUP, or when COMMAND exits, sends SIGTERM to every process of the
  tree (Flower's processes shut down gracefully: a SuperNode leaves the federation, a SuperLink
  frees its port), waits up to :data:`GRACE` seconds, SIGKILLs what is left, and exits with
  COMMAND's status (128 + the signal when it was stopped).

This module imports nothing of veilnet's, so the guard starts in a few milliseconds.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

__all__ = ["GRACE", "command", "descendants", "main"]

#: Seconds the tree gets to exit after SIGTERM before it is SIGKILLed.
GRACE = 10.0

_PR_SET_PDEATHSIG, _PR_SET_CHILD_SUBREAPER = 1, 36


def _prctl(option: int, value: int) -> None:
    """prctl(2) where there is one (Linux); elsewhere nothing."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(option, value, 0, 0, 0)


def command(argv: list[str]) -> list[str]:
    """The command line that runs ``argv`` under a guard tied to this process."""
    return [sys.executable, "-m", __name__, str(os.getpid()), *argv]


def _table() -> dict[int, tuple[int, str]]:
    """Every process's PID -> (parent PID, state letter), from /proc."""
    table = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rpartition(")")[2].split()
            except OSError:  # it exited meanwhile
                continue
            table[int(entry.name)] = (int(fields[1]), fields[0])
    return table


def descendants(pid: int, *, living: bool = True) -> list[int]:
    """The PIDs of ``pid``'s children, their children and so on (with ``living``, zombies left
    out: they have exited and only wait to be reaped)."""
    table = _table()
    children: dict[int, list[int]] = {}
    for child, (parent, _) in table.items():
        children.setdefault(parent, []).append(child)
    found, todo = [], list(children.get(pid, []))
    while todo:
        child = todo.pop()
        found.append(child)
        todo += children.get(child, [])
    return [p for p in found if not living or table.get(p, (0, "Z"))[1] not in "ZX"]


def _signal(pids: list[int], sig: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def _reap() -> dict[int, int]:
    """Reap every child that has exited; their PIDs -> wait statuses."""
    done = {}
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return done
        if pid == 0:
            return done
        done[pid] = status


def main(argv: list[str]) -> int:
    if len(argv) < 2 or not argv[0].isdigit():
        print("usage: python -m veilnet.federated.guard PARENT_PID COMMAND...", file=sys.stderr)
        return 2
    stopped: list[int] = []
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda number, _: stopped.append(number))
    _prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != int(argv[0]):  # the parent died before the line above
        return 128 + signal.SIGTERM
    _prctl(_PR_SET_CHILD_SUBREAPER, 1)
    child = subprocess.Popen(argv[1:], start_new_session=True)  # the terminal's Ctrl-C reaches the guard only
    status = None
    while status is None and not stopped:
        status = _reap().get(child.pid, status)
        time.sleep(0.1)
    _signal(descendants(os.getpid()), signal.SIGTERM)
    deadline = time.monotonic() + GRACE
    while (left := descendants(os.getpid())) and time.monotonic() < deadline:
        status = _reap().get(child.pid, status)
        time.sleep(0.1)
    _signal(left, signal.SIGKILL)
    time.sleep(0.1)
    status = _reap().get(child.pid, status)
    if stopped:
        return 128 + stopped[0]
    return os.waitstatus_to_exitcode(status) if status is not None else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
