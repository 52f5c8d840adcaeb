"""The optimiser interface: every method, admire's own and the baselines, is an `Optimizer`.

Like Optuna's samplers, an optimiser is a swappable policy with no state of its own that
matters: `Study` owns the life cycle (the loop, the budget, the lock, the store) and hands the
optimiser the trial history, rebuilt from MLflow, each time it needs a decision. Everything an
optimiser returns is therefore a function of (its space, its options, the history, the
pending trials), and a study resumed after a crash gets the same decisions it would have got
without the crash. Caches are allowed; they must never change an answer.
"""

from __future__ import annotations

import math
import warnings
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict

from admire.config import Fidelity
from admire.space import FidelitySpace, MixtureSpace, label
from admire.trial import COMPLETED, PoolRow, TrialRecord, TrialSpec, trial_seed


class Options(BaseModel):
    """An optimiser's own settings (the `optimizer:` section of a study file, minus `kind`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass(frozen=True)
class SearchSpace:
    """What an optimiser decides over: mixtures, fidelities (with the target), the pool of
    runs to choose from in pool mode, the direction and the study seed."""

    mixtures: MixtureSpace
    fidelities: FidelitySpace
    pool: tuple[PoolRow, ...] | None
    maximize: bool
    seed: int

    @property
    def sign(self) -> float:
        """Multiplies an objective into the maximised scale every optimiser works in."""
        return 1.0 if self.maximize else -1.0

    def weights(self, spec: TrialSpec) -> np.ndarray:
        return np.array([spec.weights[n] for n in self.mixtures.names])


@dataclass(frozen=True)
class History:
    """The trials of a study so far, and what each fidelity costs now (target-run units)."""

    records: Sequence[TrialRecord]
    costs: np.ndarray
    """Estimated cost of a trial at each fidelity of `SearchSpace.fidelities`."""
    trials_left: int | None = None
    """Trials the budget still allows (None: no trial cap)."""
    pick: Mapping[str, float] | None = None
    """The recommendation the study reported last (kept in its store, so a resumed or
    reloaded study hands over the same one); an optimiser may keep it standing."""

    @property
    def completed(self) -> list[TrialRecord]:
        return [r for r in self.records if r.state == COMPLETED and r.objective is not None]

    def next_index(self, pending: Sequence[TrialSpec] = ()) -> int:
        used = [r.spec.index for r in self.records] + [p.index for p in pending]
        return max(used, default=-1) + 1

    def used_pool_ids(self, pending: Sequence[TrialSpec] = ()) -> set[str]:
        specs = [r.spec for r in self.records] + list(pending)
        return {s.pool_id for s in specs if s.pool_id is not None}

    def affordable(self, remaining: float, allowed: Sequence[int] | None = None) -> list[int]:
        """Fidelity indices whose trial fits in `remaining` (optionally among `allowed`)."""
        idx = range(len(self.costs)) if allowed is None else allowed
        return [i for i in idx if self.costs[i] <= remaining + 1e-12]


@dataclass(frozen=True)
class Proposal:
    """A trial an optimiser asks for: a mixture at a fidelity (a pool row in pool mode)."""

    weights: np.ndarray
    fidelity: Fidelity
    pool_id: str | None = None
    step: str = ""
    """How it was generated (`sobol`, `mf-mes`, `random`, ...), tagged on the trial."""
    predicted: tuple[float, float] | None = None
    """The model's mean and sd of its objective (the objective's own direction), if any."""


@dataclass(frozen=True)
class Recommendation:
    """The mixture an optimiser would train the target model on, now."""

    weights: dict[str, float]
    predicted: float
    predicted_sd: float
    fidelity: str
    true: float | None = None
    """The true objective when a replay runner can tell it (reporting only)."""
    pool_id: str | None = None
    p_better_than_uniform: float | None = None
    p_better_than_best_observed: float | None = None

    def prediction(self, sd_digits: int = 4) -> str:
        """The predicted objective as text: `2.2718 ± 0.0123`, without the sd for methods
        that give none, or `unknown until a run at <fidelity>` while the target has not been
        run (cheaper runs rank mixtures; they do not tell the target's level)."""
        if math.isnan(self.predicted):
            return f"unknown until a run at {self.fidelity}"
        sd = "" if math.isnan(self.predicted_sd) else f" ± {self.predicted_sd:.{sd_digits}f}"
        return f"{self.predicted:.4f}{sd}"

    def __str__(self) -> str:
        top = sorted(self.weights.items(), key=lambda kv: -kv[1])
        mix = ", ".join(f"{k} {v:.3f}" for k, v in top if v >= 0.0005)
        true = "" if self.true is None else f"; true {self.true:.4f}"
        probs = ""
        if self.p_better_than_uniform is not None:
            probs = f"\n  P(better than uniform) {self.p_better_than_uniform:.2f}"
            if self.p_better_than_best_observed is not None:
                probs += f", P(better than best target run) {self.p_better_than_best_observed:.2f}"
        return (
            f"recommended mixture at {self.fidelity}: {mix}\n"
            f"  predicted objective {self.prediction()}{true}{probs}"
        )


class Optimizer(ABC):
    """A mixture-optimisation policy: which trials to run next, and which mixture to pick.

    When each method is called (by `Study`, and by the benchmark through the same `Study`):

    - `propose(history, remaining, pending, n)`: before each new trial, with every finished
      trial in `history`, the budget left in target-run units (`math.inf` without a cost
      limit), and the trials still running (`pending`, whose results are not known yet; never
      propose one of them again). Returns up to `n` distinct proposals, each affordable within
      `remaining`; an empty list ends the study (nothing affordable or left to try).
    - `recommend(history)`: after every finished trial (progress, MLflow), on `Study.best()`
      and at the end of a study. Returns the mixture to train at the target fidelity, or
      None while nothing is known. It must not look at anything but `history`.

    Subclasses declare `name` (the `optimizer.kind` of a study file) and `Options`, the
    pydantic model of their settings, validated when the study file is read.
    """

    name: ClassVar[str]
    Options: ClassVar[type[Options]] = Options

    def __init__(self, space: SearchSpace, options: Options | None = None) -> None:
        self.space = space
        self.options = options if options is not None else self.Options()

    @abstractmethod
    def propose(
        self,
        history: History,
        remaining: float,
        pending: Sequence[TrialSpec] = (),
        n: int = 1,
    ) -> list[Proposal]:
        """Up to `n` trials to run next (see the class docstring)."""

    @abstractmethod
    def recommend(self, history: History) -> Recommendation | None:
        """The mixture to train the target model on, given `history` (None: nothing known)."""

    def predict(
        self, history: History, weights: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray] | None:
        """Predicted objective (its own direction) and sd of mixtures (n, k) at the target
        fidelity, for optimisers with a model (None otherwise): what reports use to show the
        objective's sensitivity to each domain."""
        return None

    # ---- helpers shared by the methods -----------------------------------------------------
    def seed_for(self, history: History, pending: Sequence[TrialSpec] = (), offset: int = 0) -> int:
        """The seed of the next trial (the one the proposal becomes)."""
        return trial_seed(self.space.seed, history.next_index(pending) + offset)

    def value(self, record: TrialRecord) -> float:
        """A record's objective on the maximised scale."""
        assert record.objective is not None
        return self.space.sign * record.objective

    def free_rows(
        self, history: History, fidelities: Sequence[int], pending: Sequence[TrialSpec] = ()
    ) -> list[PoolRow]:
        """Pool rows at the given fidelity indices that no trial has used or is using."""
        assert self.space.pool is not None
        used = history.used_pool_ids(pending)
        by_id = {p.pool_id: p for p in self.space.pool}
        # A run's checkpoints came with it: (run, size) -> the most tokens already seen.
        seen: dict[tuple[str, str], float] = {}
        for pid in used:
            row = by_id.get(pid)
            if row is not None and row.run is not None:
                key = (row.run, row.fidelity.model_size)
                seen[key] = max(seen.get(key, 0.0), row.fidelity.tokens)
        fids = {self.space.fidelities.fidelities[i] for i in fidelities}

        def free(p: PoolRow) -> bool:
            if p.pool_id in used or p.fidelity not in fids:
                return False
            covered = p.run is not None and seen.get((p.run, p.fidelity.model_size), 0.0)
            return not (covered and p.fidelity.tokens <= covered)

        return [p for p in self.space.pool if free(p)]

    def target_rows(self) -> list[PoolRow]:
        assert self.space.pool is not None
        target = self.space.fidelities.target
        return [p for p in self.space.pool if p.fidelity == target]

    def observed_recommendation(self, history: History) -> Recommendation | None:
        """The best observed target-fidelity trial (no model): random search's pick."""
        target = self.space.fidelities.target
        runs = [r for r in history.completed if r.spec.fidelity == target]
        if not runs:
            return None
        best = max(runs, key=self.value)
        return Recommendation(
            weights=dict(best.spec.weights),
            predicted=float(best.objective),  # type: ignore[arg-type]
            predicted_sd=math.nan,
            fidelity=label(target),
            pool_id=best.spec.pool_id,
        )

    def recommendation_at(
        self,
        history: History,
        weights: np.ndarray,
        mean: float,
        sd: float,
        pool_id: str | None = None,
    ) -> Recommendation:
        """A Recommendation from a maximised-scale prediction at the target fidelity. Until
        the target has been run, the prediction is left out (NaN): a model of cheaper runs
        extrapolates the target's loss level with an sd near zero and is wrong by the whole
        gap between scales (5.03 predicted where 2.27 was true, on RegMix before any 1B run),
        while the ranking it picks by holds."""
        target = self.space.fidelities.target
        known = any(r.spec.fidelity == target for r in history.completed)
        return Recommendation(
            weights=self.space.mixtures.as_dict(weights),
            predicted=self.space.sign * mean if known else math.nan,
            predicted_sd=sd if known else math.nan,
            fidelity=label(self.space.fidelities.target),
            pool_id=pool_id,
        )


@contextmanager
def quiet_numerics() -> Iterator[None]:
    """Silence GPyTorch's routine numerical notices during an optimiser's decision: "added
    jitter" (a kernel matrix over near-duplicate mixtures is nearly singular; the jitter is the
    standard remedy) and "negative variance values" (rounding below zero, set to 1e-10). A
    warning per Cholesky factor buried a study's progress lines and a benchmark's table."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"A not p\.d\., added jitter")
        warnings.filterwarnings("ignore", message=r"Negative variance values detected")
        yield
