"""Running one trial's process: its own process group, a deadline, its output relayed.

Shared by the proxy and command runners, so both kill a trial the same way, in whatever process
runs the trial (the study's, or a Ray worker's): the whole process group is killed at the
deadline, and whatever it left behind when it exits on its own, so that a trainer's helpers
(data loaders, torchrun's workers) never outlive their trial.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

TAIL_LINES = 30


@dataclass(frozen=True)
class ProcessOutcome:
    """How a trial's process ended: exit code (None if it never started or was killed at the
    deadline), its last output lines, and its wall time."""

    code: int | None
    tail: str
    timed_out: bool
    elapsed: float
    start_error: str = ""

    @property
    def ended(self) -> str:
        """How the process ended, in words, e.g. `was killed by SIGKILL`."""
        if self.start_error:
            return f"could not start: {self.start_error}"
        if self.timed_out:
            return "timed out"
        assert self.code is not None
        if self.code < 0:
            try:
                return f"was killed by {signal.Signals(-self.code).name}"
            except ValueError:
                return f"was killed by signal {-self.code}"
        return f"exited with code {self.code}"


def run_process(
    argv: list[str],
    *,
    timeout_s: float,
    label: str,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> ProcessOutcome:
    """Run `argv` until it exits or `timeout_s` passes, relaying each output line to stdout as
    `    <label> | line` (with several trials at once, the label tells them apart)."""
    t0 = time.perf_counter()
    try:
        proc = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            errors="replace",
            env=env,
            cwd=cwd,
            start_new_session=True,
        )
    except OSError as err:
        return ProcessOutcome(None, "", False, time.perf_counter() - t0, start_error=str(err))
    tail: deque[str] = deque(maxlen=TAIL_LINES)

    def relay() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            tail.append(line.rstrip())
            print(f"    {label} | {line.rstrip()}", file=sys.stdout, flush=True)

    reader = threading.Thread(target=relay, daemon=True)
    reader.start()
    timed_out = False
    try:
        code: int | None = proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        code, timed_out = None, True
    finally:
        # Also on an interrupt of the caller: the group is in its own session, so it would
        # not receive the caller's Ctrl-C.
        _kill_group(proc.pid)
        proc.wait()
    reader.join(timeout=5)
    return ProcessOutcome(code, "\n".join(tail), timed_out, time.perf_counter() - t0)


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)
