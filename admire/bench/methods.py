"""The benchmarked methods, behind one interface: run on a problem, report after each trial.

Every method spends through `PaidRunner` (it sees only what it paid for) and after every trial
names the mixture it would recommend for the target fidelity right now. The GP methods are the
real `Study` (a throwaway MLflow store), so what is benchmarked is what users run.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from admire.bench.problems import PaidRunner, Problem
from admire.config import Fidelity, StudyConfig
from admire.runners.base import TrialSpec
from admire.space import MixtureSpace


@dataclass(frozen=True)
class Step:
    """One trial of a method: what it ran and what it recommends afterwards."""

    fidelity: Fidelity
    cost: float
    recommendation: np.ndarray
    seconds: float
    """Optimiser time for the proposal and recommendation (running the trial excluded)."""


Report = Callable[[Step], None]


def _space(problem: Problem) -> MixtureSpace:
    return MixtureSpace.from_domains(list(problem.config.domains))


def _target_candidates(problem: Problem, rng: np.random.Generator, n: int = 2048) -> np.ndarray:
    if problem.target_pool is not None:
        return problem.target_pool
    return _space(problem).sample(n, int(rng.integers(2**31)))


class _Spender:
    """Runs trials through a PaidRunner and times the method between them."""

    def __init__(self, problem: Problem, runner: PaidRunner, report: Report) -> None:
        self.problem, self.runner, self.report = problem, runner, report
        self.costs = problem.costs
        self.spent, self.trials = 0.0, 0
        self.clock = time.perf_counter()
        self.pool = runner.pool()
        self.used: set[str] = set()
        objective = problem.config.objective
        self.metrics = objective.resolve(runner.metric_names())
        self.sign = 1.0 if objective.direction == "minimize" else -1.0

    def can_afford(self, fid: Fidelity, budget: float, max_trials: int) -> bool:
        return self.trials < max_trials and self.spent + self.costs[fid] <= budget + 1e-9

    def rows(self, fid: Fidelity) -> list:
        return [p for p in self.pool or [] if p.fidelity == fid and p.pool_id not in self.used]

    def random_pick(
        self, fid: Fidelity, rng: np.random.Generator
    ) -> tuple[np.ndarray, str | None] | None:
        """A uniformly random unused pool row at `fid`, or a uniform mixture within the
        bounds when there is no pool; None when the pool at `fid` is used up."""
        if self.pool is None:
            return _space(self.problem).sample(1, int(rng.integers(2**31)))[0], None
        rows = self.rows(fid)
        if not rows:
            return None
        row = rows[int(rng.integers(len(rows)))]
        return row.weights, row.pool_id

    def run(self, w: np.ndarray, fid: Fidelity, seed: int, pool_id: str | None) -> float:
        names = self.problem.config.domain_names
        spec = TrialSpec(
            self.trials, dict(zip(names, map(float, w), strict=True)), fid, seed, pool_id
        )
        thinking = time.perf_counter() - self.clock
        result = self.runner.run(spec)
        if pool_id is not None:
            self.used.add(pool_id)
        self.trials += 1
        self.spent += self.costs[fid]
        self.clock = time.perf_counter()
        self._thinking = thinking
        self._last = fid
        return self.sign * self.problem.config.objective.combine(result.metrics, self.metrics)

    def recommend(self, w: np.ndarray) -> None:
        """Report the last trial with the mixture recommended after it."""
        seconds = self._thinking + time.perf_counter() - self.clock
        self.report(Step(self._last, self.spent, w, seconds))
        self.clock = time.perf_counter()


def random_search(problem: Problem, seed: int, report: Report, runner: PaidRunner) -> None:
    """Uniform mixtures (Dirichlet(1) within the bounds, or random pool rows) at the target
    fidelity; the recommendation is the best observed."""
    rng = np.random.default_rng(seed)
    s = _Spender(problem, runner, report)
    target = problem.config.fidelities.target
    budget, cap = _limits(problem)
    best_w, best_y = None, np.inf
    while s.can_afford(target, budget, cap):
        pick = s.random_pick(target, rng)
        if pick is None:
            break
        w, pid = pick
        y = s.run(w, target, seed, pid)
        if y < best_y:
            best_w, best_y = w, y
        assert best_w is not None
        s.recommend(best_w)


def _features(w: np.ndarray) -> np.ndarray:
    """Weights, their square roots and pairwise products: a quadratic-in-mixture model."""
    i, j = np.triu_indices(w.shape[1], k=1)
    return np.concatenate([np.ones((len(w), 1)), w, np.sqrt(w), w[:, i] * w[:, j]], axis=1)


def _ridge(x: np.ndarray, y: np.ndarray, alpha: float = 1e-3) -> np.ndarray:
    mu, sd = x.mean(0), x.std(0) + 1e-12
    mu[0], sd[0] = 0.0, 1.0
    z = (x - mu) / sd
    coef = np.linalg.solve(z.T @ z + alpha * len(y) * np.eye(z.shape[1]), z.T @ y)
    return coef / sd, mu


def regression(problem: Problem, seed: int, report: Report, runner: PaidRunner) -> None:
    """RegMix-style: many random runs at the cheapest fidelity, a regression model over the
    mixture (ridge on weights, square roots and pairwise products), recommendation = its best
    predicted target mixture; then the top predictions are run at the target fidelity and the
    best observed of those is recommended."""
    rng = np.random.default_rng(seed)
    s = _Spender(problem, runner, report)
    fids = problem.config.fidelities
    cheap, target = fids.grid()[0], fids.target
    budget, cap = _limits(problem)
    n_cheap = max(8, cap // 2)
    xs, ys = [], []
    candidates = _target_candidates(problem, rng)
    while len(xs) < n_cheap and s.can_afford(cheap, budget, cap):
        pick = s.random_pick(cheap, rng)
        if pick is None:
            break
        w, pid = pick
        xs.append(w)
        ys.append(s.run(w, cheap, seed, pid))
        coef, mu = _ridge(_features(np.array(xs)), np.array(ys))
        pred = (_features(candidates) - mu) @ coef
        order = np.argsort(pred)
        s.recommend(candidates[order[0]])
    best_w, best_y = None, np.inf
    for i in order:
        if not s.can_afford(target, budget, cap):
            break
        pid = None
        if s.pool is not None:
            match = [p for p in s.rows(target) if np.allclose(p.weights, candidates[i])]
            if not match:
                continue
            pid = match[0].pool_id
        y = s.run(candidates[i], target, seed, pid)
        if y < best_y:
            best_w, best_y = candidates[i], y
        assert best_w is not None
        s.recommend(best_w)


def _limits(problem: Problem) -> tuple[float, int]:
    b = problem.config.budget
    return (b.max_cost if b.max_cost is not None else np.inf), (b.max_trials or 10**9)


def _study_config(
    problem: Problem,
    seed: int,
    pairs: list[Fidelity],
    target: Fidelity,
    n_initial: int | None = None,
) -> StudyConfig:
    fids = problem.config.fidelities.model_copy(
        update={"pairs": pairs, "target": target, "tokens": []}
    )
    opt = problem.config.optimizer
    if n_initial is not None:
        opt = opt.model_copy(update={"n_initial": n_initial})
    return problem.config.model_copy(
        update={"seed": seed, "fidelities": fids, "optimizer": opt, "name": f"bench-{seed}"}
    )


def _run_study(
    problem: Problem,
    config: StudyConfig,
    report: Report,
    runner: PaidRunner,
    tracking_uri: str,
    transfer: bool,
    budget: float,
    cap: int,
) -> None:
    from admire.study import Study

    costs = problem.costs
    study = Study.create(config, tracking_uri=tracking_uri, runner=runner)
    spent = 0.0
    clock, answered = time.perf_counter(), runner.seconds
    rng = np.random.default_rng(config.seed)
    candidates = _target_candidates(problem, rng)

    def after(record) -> None:  # type: ignore[no-untyped-def]
        nonlocal spent, clock, answered
        fid = record.spec.fidelity
        spent += costs[fid]
        if transfer:
            mean, _ = study.predict(candidates, fid)
            pick = (
                candidates[int(np.argmin(mean))]
                if config.objective.direction == "minimize"
                else candidates[int(np.argmax(mean))]
            )
        else:
            rec = study.best()
            assert rec is not None
            pick = np.array([rec.weights[n] for n in config.domain_names])
        seconds = time.perf_counter() - clock - (runner.seconds - answered)
        report(Step(fid, spent, pick, seconds))
        clock, answered = time.perf_counter(), runner.seconds

    study.optimize(
        max_trials=cap,
        max_cost=budget if transfer is False else None,
        progress=False,
        callback=after,
    )


def admire_bo(
    problem: Problem, seed: int, report: Report, runner: PaidRunner, tracking_uri: str
) -> None:
    """admire's multi-fidelity BO, as configured in the problem's study config."""
    fids = problem.config.fidelities
    config = _study_config(problem, seed, fids.grid(), fids.target)
    budget, cap = _limits(problem)
    _run_study(problem, config, report, runner, tracking_uri, False, budget, cap)


def sf_target(
    problem: Problem, seed: int, report: Report, runner: PaidRunner, tracking_uri: str
) -> None:
    """Single-fidelity GP BO (the same GP and acquisition) at the target fidelity only."""
    target = problem.config.fidelities.target
    budget, cap = _limits(problem)
    n_init = max(2, min(problem.config.optimizer.n_initial, int(budget) // 4))
    config = _study_config(problem, seed, [target], target, n_init)
    _run_study(problem, config, report, runner, tracking_uri, False, budget, cap)


def sf_cheap(
    problem: Problem, seed: int, report: Report, runner: PaidRunner, tracking_uri: str
) -> None:
    """Single-fidelity GP BO at the cheapest fidelity; its best predicted mixture (by the
    cheap model) among the target candidates is the recommendation (transferred)."""
    cheap = problem.config.fidelities.grid()[0]
    budget, cap = _limits(problem)
    config = _study_config(problem, seed, [cheap], cheap)
    # Half the trial cap: cheap trials cost next to nothing, the GP refits are the bench's time.
    _run_study(problem, config, report, runner, tracking_uri, True, budget, max(4, cap // 2))


METHODS = {
    "random": random_search,
    "regression": regression,
    "sf-target": sf_target,
    "sf-cheap": sf_cheap,
    "admire": admire_bo,
}
GP_METHODS = {"sf-target", "sf-cheap", "admire"}


def run_method(
    name: str,
    problem: Problem,
    seed: int,
    runner: PaidRunner,
    report: Report,
) -> None:
    """Run one method on one problem with one seed, reporting every trial."""
    method = METHODS[name]
    if name not in GP_METHODS:
        method(problem, seed, report, runner)  # type: ignore[call-arg]
        return
    with tempfile.TemporaryDirectory() as tmp:
        method(problem, seed, report, runner, f"sqlite:///{Path(tmp) / 'mlflow.db'}")  # type: ignore[call-arg]
