"""The runner interface: turns a TrialSpec into a TrialResult (admire.trial); nothing about BO."""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Protocol

from admire.config import Fidelity
from admire.trial import PoolRow, TrialResult, TrialRun, TrialSpec


class TrialTask(Protocol):
    """A trial made ready to run anywhere: picklable plain data whose call runs the trial in
    the calling process (the local runners) or in a Ray worker (the Ray runner). A task never
    raises for a failed trial: it returns a failed TrialResult with the reason."""

    scratch: str
    """The name of the trial's scratch folder under the temporary folder of the machine
    that runs it (`scratch_folder`)."""

    def __call__(self) -> TrialResult: ...


def scratch_name(index: int) -> str:
    """A fresh name for trial `index`'s scratch folder, fixed when its task is made: every
    attempt of that task (Ray's retries) uses the same folder."""
    return f"admire-trial-{index}-{uuid.uuid4().hex[:12]}"


@contextmanager
def scratch_folder(name: str) -> Iterator[Path]:
    """The scratch folder `name`, empty, removed afterwards. An attempt whose worker was
    killed never reaches its clean-up, so the next attempt starts by removing what it left."""
    path = Path(tempfile.gettempdir()) / name
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def discard_scratch(name: str) -> None:
    """Remove the scratch folder `name` on this machine, if a killed attempt left it."""
    shutil.rmtree(Path(tempfile.gettempdir()) / name, ignore_errors=True)


class Runner(Protocol):
    """Turns TrialSpecs into TrialResults."""

    def metric_names(self) -> list[str]:
        """Every metric a trial reports."""
        ...

    def pool(self) -> list[PoolRow] | None:
        """The finite set of runs to choose from, or None when any mixture may be proposed."""
        ...

    def expected_cost(self, fidelity: Fidelity) -> float | None:
        """A trial's cost at `fidelity` when it is known in advance, in the runner's unit."""
        ...

    def run(self, spec: TrialSpec) -> TrialResult:
        """Run one trial. Failures come back as `failed=True` with a reason, not as raises.
        Runners that train may be called from several threads at once."""
        ...

    def reference(self, weights: dict[str, float], fidelity: Fidelity) -> dict[str, float] | None:
        """The true metrics of a mixture at a fidelity where the runner can tell them without
        charging a trial (replay only): for reporting a recommendation, never for optimising."""
        ...


__all__ = ["PoolRow", "Runner", "TrialResult", "TrialRun", "TrialSpec", "TrialTask"]
