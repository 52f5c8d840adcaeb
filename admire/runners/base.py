"""The runner interface: turns a TrialSpec into a TrialResult (admire.trial); nothing about BO."""

from __future__ import annotations

from typing import Protocol

from admire.config import Fidelity
from admire.trial import PoolRow, TrialResult, TrialSpec


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
        """Run one trial. Failures come back as `failed=True` with a reason, not as raises."""
        ...

    def reference(self, weights: dict[str, float], fidelity: Fidelity) -> dict[str, float] | None:
        """The true metrics of a mixture at a fidelity where the runner can tell them without
        charging a trial (replay only): for reporting a recommendation, never for optimising."""
        ...


__all__ = ["PoolRow", "Runner", "TrialResult", "TrialSpec"]
