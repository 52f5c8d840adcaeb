"""The runner interface: turns a TrialSpec into a TrialResult (admire.trial); nothing about BO."""

from __future__ import annotations

from typing import Protocol

from admire.config import Fidelity
from admire.trial import PoolRow, TrialResult, TrialRun, TrialSpec


class TrialTask(Protocol):
    """A trial made ready to run anywhere: picklable plain data whose call runs the trial in
    the calling process (the local runners) or in a Ray worker (the Ray runner). A task never
    raises for a failed trial: it returns a failed TrialResult with the reason."""

    def __call__(self) -> TrialResult: ...


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
