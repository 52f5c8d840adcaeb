"""The study: the ask/run/tell loop, budgets, resume and the one-driver lock.

Why not Ax for experiment state: the trial records in MLflow are already a complete, durable
log of the study, and keeping a second store (an Ax experiment in JSON or SQL) in step with it
would reopen the window in which a crash leaves the two disagreeing. The optimiser is instead a
pure function of the records: on every proposal (and on load) it rebuilds the GP from the
completed trials, and the initial design is regenerated from the study seed. Ax's own simplex
handling (a `sum <= 1` constraint over k-1 free weights, rejection sampling that gives up from
about 8 domains) would also break the symmetric, exactly-feasible design we want; BoTorch's
models and acquisitions are used directly instead.
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, TextIO

import numpy as np
from filelock import Timeout

from admire import report
from admire.attach import check_runs, runs_from_table
from admire.config import (
    CommandRunnerConfig,
    ConfigError,
    Domain,
    ProxyRunnerConfig,
    RayRunnerConfig,
    StudyConfig,
    load_config,
)
from admire.failures import FailurePolicy, TooManyFailuresError
from admire.optim import (
    History,
    Optimizer,
    Proposal,
    Recommendation,
    SearchSpace,
    make_optimizer,
    quiet_numerics,
)
from admire.optim.cost import CostModel
from admire.runners import Runner, make_runner
from admire.runners.replay import BUILTIN_TABLES
from admire.space import FidelitySpace, MixtureSpace
from admire.tracking import StudyStore, TrackingStoreError, lock_for, refused_write, trial_name
from admire.trial import (
    ATTACHED,
    COMPLETED,
    FAILED,
    RUNNING,
    TrialRecord,
    TrialResult,
    TrialRun,
    TrialSpec,
    budget_trials,
    trial_seed,
)

if TYPE_CHECKING:
    import pandas as pd


class StudyExistsError(RuntimeError):
    """`Study.create` on a name the store already holds (and no overwrite)."""


class StudyNotFoundError(LookupError):
    """`Study.load` on a name the store does not hold."""


class StudyLockedError(RuntimeError):
    """Another live process is driving this study."""


class _Started(NamedTuple):
    """A trial in flight: its run, spec, how it was generated, its future result, and for a
    retry (index of the first attempt, attempt)."""

    run_id: str
    spec: TrialSpec
    step: str
    future: Future[TrialResult]
    retry: tuple[int, int] | None


class Study:
    """A mixture-optimisation study, stored in MLflow; create, load, optimise, resume.

    The study owns the life cycle (the loop, the budget, the lock, running trials, progress);
    what to run next and what to recommend are its `optimizer`'s (`optimizer.kind` in the
    study file), which sees only the trial history read back from MLflow.

    >>> import tempfile
    >>> uri = f"sqlite:///{tempfile.mkdtemp()}/mlflow.db"  # the default is mlruns/mlflow.db
    >>> study = Study.create("studies/pile-replay.yaml", tracking_uri=uri)
    >>> rec = study.optimize(max_trials=4, progress=False)  # no arguments: the whole budget
    >>> rec.fidelity, round(sum(rec.weights.values()), 6)
    ('1B × 25B tok', 1.0)
    >>> again = Study.load("pile-replay", tracking_uri=uri)  # e.g. in a new process
    >>> _ = again.resume(max_trials=2, progress=False)
    >>> [r.spec.index for r in again.trials]
    [0, 1, 2, 3, 4, 5]
    """

    def __init__(
        self, config: StudyConfig, store: StudyStore, parent_id: str, runner: Runner
    ) -> None:
        self.config = config
        self.store = store
        self.parent_id = parent_id
        self.runner = runner
        self.mixtures = MixtureSpace.from_domains(_capped_domains(config, runner))
        self.fidelities = FidelitySpace.from_config(config.fidelities)
        self.metrics = config.objective.resolve(runner.metric_names())
        pool = runner.pool()
        grid = set(self.fidelities.fidelities)
        # A runner may hold runs at fidelities this study does not use; they are not options.
        space = SearchSpace(
            mixtures=self.mixtures,
            fidelities=self.fidelities,
            pool=None if pool is None else tuple(p for p in pool if p.fidelity in grid),
            maximize=config.objective.direction == "maximize",
            seed=config.seed,
        )
        self.optimizer: Optimizer = make_optimizer(
            config.optimizer.kind, space, config.optimizer.options
        )
        self.failures = FailurePolicy(config)
        self._rec_cache: tuple[tuple[int, int, str], Recommendation | None] | None = None
        self._pick = store.last_pick(parent_id, self.mixtures.names)
        self._out: TextIO = sys.stdout
        self.last_recommendation: Recommendation | None = None
        """The recommendation after the latest finished trial of this process."""
        self.last_optimizer_seconds = 0.0
        """Optimiser time spent on the latest trial: its proposal and the recommendation."""
        self.figures = True
        """Redraw the parent run's figures as trials finish (the benchmark, which keeps no
        store, turns this off: drawing costs more than a replayed trial)."""

    # ---- construction ----------------------------------------------------------------------
    @classmethod
    def create(
        cls,
        config: StudyConfig | str | Path,
        *,
        tracking_uri: str | None = None,
        overwrite: bool = False,
        runner: Runner | None = None,
    ) -> Study:
        """Start a new study from a config (or a YAML path). Refuses to replace an existing
        study unless `overwrite=True`, which soft-deletes the old runs first. `runner` replaces
        the one the config names (a custom runner, or a wrapped one as the benchmark uses).

        >>> import tempfile
        >>> uri = f"sqlite:///{tempfile.mkdtemp()}/mlflow.db"
        >>> study = Study.create("studies/pile-replay.yaml", tracking_uri=uri)
        >>> study.name, len(study.trials), study.mixtures.names[:2]
        ('pile-replay', 0, ('arxiv', 'freelaw'))
        >>> Study.create("studies/pile-replay.yaml", tracking_uri=uri)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        admire.study.StudyExistsError: study 'pile-replay' already exists in ... (0 trials). ...
        >>> Study.create("studies/pile-replay.yaml", tracking_uri=uri, overwrite=True).name
        'pile-replay'
        """
        base = None
        if not isinstance(config, StudyConfig):
            base = Path(config).resolve().parent
            config = load_config(config)
        config = _absolute_paths(config, base)
        if runner is None:
            runner = make_runner(config, check_data=True)  # refuses bad input before any write
        config.objective.resolve(runner.metric_names())
        _capped_domains(config, runner)  # a too-small corpus is refused before any write
        store = StudyStore(tracking_uri)
        with _lock(store, config.name):
            existing = store.find_study(config.name)
            if existing is not None:
                if not overwrite:
                    n = len(store.trials(existing))
                    raise StudyExistsError(
                        f"study '{config.name}' already exists in {store.uri} ({n} trials). "
                        f"Continue it with `make resume NAME={config.name}` "
                        f"(Study.load('{config.name}').resume()), or start over with "
                        f"`make study NAME={config.name} OVERWRITE=1` (overwrite=True)."
                    )
                with refused_write(store.uri, f"replace the study {config.name!r}"):
                    store.delete_study(existing)
            parent = store.create_study(config)
        return cls(config, store, parent, runner)

    @classmethod
    def load(
        cls, name: str, *, tracking_uri: str | None = None, runner: Runner | None = None
    ) -> Study:
        """Open an existing study by name, with the config it was created with; `runner`
        replaces the one the config names (a custom runner, as in `create`).

        >>> import tempfile
        >>> uri = f"sqlite:///{tempfile.mkdtemp()}/mlflow.db"
        >>> _ = Study.create("studies/pile-replay.yaml", tracking_uri=uri)
        >>> Study.load("pile-replay", tracking_uri=uri).config.budget.max_trials
        40
        >>> Study.load("pile-cc", tracking_uri=uri)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        admire.study.StudyNotFoundError: no study 'pile-cc' in ...; studies there: pile-replay
        """
        store = StudyStore(tracking_uri, create=False)
        parent = store.find_study(name)
        if parent is None:
            known = store.list_studies()
            raise StudyNotFoundError(
                f"no study '{name}' in {store.uri}"
                + (f"; studies there: {', '.join(known)}" if known else "")
            )
        config = store.study_config(parent, name)
        return cls(config, store, parent, runner if runner is not None else make_runner(config))

    # ---- reading ---------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.config.name

    @property
    def trials(self) -> list[TrialRecord]:
        """Every trial so far, in index order, as stored in MLflow."""
        return [self._with_objective_curve(r) for r in self.store.trials(self.parent_id)]

    def _with_objective_curve(self, record: TrialRecord) -> TrialRecord:
        combine = self.config.objective.combine
        curve = [
            (t, combine(m, self.metrics))
            for t, m in record.curve
            if all(k in m and math.isfinite(m[k]) for k in self.metrics)
        ]
        return replace(record, objective_curve=curve)

    def trials_dataframe(self) -> pd.DataFrame:
        """The trials as a pandas DataFrame, one row per trial (like Optuna's): `trial`,
        `name`, `state`, `model_size`, `tokens`, `step`, `objective`, `cost` (target-run
        units), `cost.raw`, `weight.<domain>` for every domain, every metric, `seed`,
        `pool_id`, `error`, `run_id`.

        >>> import tempfile
        >>> uri = f"sqlite:///{tempfile.mkdtemp()}/mlflow.db"
        >>> study = Study.create("studies/pile-replay.yaml", tracking_uri=uri)
        >>> _ = study.optimize(max_trials=3, progress=False)
        >>> df = study.trials_dataframe()
        >>> df[["name", "state", "model_size"]].values.tolist()
        [['t000', 'COMPLETED', '1M'], ['t001', 'COMPLETED', '1M'], ['t002', 'COMPLETED', '1M']]
        >>> round(float(df.filter(like="weight.").sum(axis=1).min()), 6)
        1.0
        """
        return report.trials_frame(self.trials, self.mixtures.names)

    def _cost_model(self, records: list[TrialRecord]) -> CostModel:
        prior = []
        for i, fid in enumerate(self.fidelities.fidelities):
            declared = self.runner.expected_cost(fid)
            prior.append(declared if declared is not None else self.fidelities.flops(i))
        model = CostModel(prior, self.fidelities.target_index)
        for r in records:
            if r.state == COMPLETED:
                model.observe(self.fidelities.index(r.spec.fidelity), r.raw_cost)
        return model

    def history(self, records: list[TrialRecord] | None = None) -> History:
        """The trials as the optimiser sees them, with the current cost of each fidelity."""
        records = self.trials if records is None else records
        return History(records, self._cost_model(records).relative(), pick=self._pick)

    def spent(self, records: list[TrialRecord] | None = None) -> float:
        """Cost spent so far, in target-run units, failed trials included (see `_units`;
        attached runs were paid for elsewhere)."""
        records = self.trials if records is None else records
        costs = self._cost_model(records)
        calibrated = _calibrated(records)
        return sum(self._units(r, costs, calibrated) for r in records if not r.attached)

    def _units(self, record: TrialRecord, costs: CostModel, calibrated: bool) -> float:
        """A trial's cost in target-run units: its measured cost, converted as the cost model
        converts it. A failed trial costs its fidelity's expected cost instead when it has no
        measured cost (its runner raised) or nothing has completed yet: a wall time cannot be
        converted until one trial's time is known (the prior is in FLOPs), and charging it
        nothing let a study whose every trial fails run forever."""
        if record.state == FAILED and not (calibrated and record.raw_cost > 0):
            return float(costs.relative()[self.fidelities.index(record.spec.fidelity)])
        return costs.to_units(record.raw_cost)

    def best(self) -> Recommendation | None:
        """The optimiser's recommended mixture for the target fidelity (None before any
        trial has completed): its weights for every domain, predicted objective and sd
        (NaN until the target fidelity has been run: cheaper runs rank mixtures but do not
        tell the target's loss level).

        >>> import tempfile
        >>> uri = f"sqlite:///{tempfile.mkdtemp()}/mlflow.db"
        >>> study = Study.create("studies/pile-replay.yaml", tracking_uri=uri)
        >>> study.best() is None
        True
        >>> _ = study.optimize(max_trials=3, progress=False)
        >>> best = study.best()
        >>> len(best.weights) == len(study.mixtures.names), best.prediction()
        (True, 'unknown until a run at 1B × 25B tok')
        """
        return self._recommend(self.trials)

    @property
    def workers(self) -> int:
        """How many trials run at once: the runner's `workers`; `auto` is one per visible
        GPU, else one per `threads` CPU cores."""
        workers = self.config.runner.workers
        if workers != "auto":
            return workers
        import torch

        if torch.cuda.is_available():
            return torch.cuda.device_count()
        threads = getattr(self.config.trial_runner, "threads", 1)
        return max(1, (os.cpu_count() or 1) // threads)

    def predict(self, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """The optimiser's predicted objective and sd for mixtures (n, domains in the study's
        order) at the target fidelity; None when it has no model or nothing completed yet."""
        with quiet_numerics():
            return self.optimizer.predict(self.history(), weights)

    # ---- the loop --------------------------------------------------------------------------
    def optimize(
        self,
        max_trials: int | None = None,
        max_cost: float | None = None,
        *,
        progress: bool = True,
        callback: Callable[[TrialRecord], None] | None = None,
        workers: int | None = None,
    ) -> Recommendation | None:
        """Run trials until the budget is spent, then return the recommendation.

        With no arguments the study runs to its configured budget (after a crash: picks up
        where it stopped, finishing an interrupted trial first). `max_trials` / `max_cost`
        instead allow that many *more* trials / target-run units in this call, also beyond a
        finished budget, like Optuna's `n_trials`. `callback` is called with each finished
        trial's record. `workers` trials run at once (default: the runner's `workers`); the
        optimiser proposes each new one knowing those still running, and the cost budget
        counts them at their expected cost, so it is overshot by at most one trial per worker.
        """
        with _lock(self.store, self.name):
            self.store.mark_study(self.parent_id, running=True)
            records = self.trials
            records = self._finish_interrupted(records, progress)
            n0, c0 = budget_trials(records), self.spent(records)
            if max_trials is None and max_cost is None:
                trial_cap, cost_cap = self.config.budget.max_trials, self.config.budget.max_cost
            else:
                trial_cap = None if max_trials is None else n0 + max_trials
                cost_cap = None if max_cost is None else c0 + max_cost
            workers = self.workers if workers is None else workers
            in_flight: deque[_Started] = deque()
            finished: list[TrialRecord] = []
            stop: str | None = None
            with ThreadPoolExecutor(max_workers=workers) as pool:
                while True:
                    while stop is None and len(in_flight) < workers:
                        started = self._start_next(records, in_flight, trial_cap, cost_cap, pool)
                        if started is None:
                            break
                        in_flight.append(started)
                    if not in_flight:
                        break
                    # Trials are told in the order they were started: with instant runners
                    # (replay) the study is then the same whatever the threads' timing.
                    s = in_flight.popleft()
                    result = _result(s.future)
                    record = self._finish(s.run_id, s.spec, s.step, result, records, s.retry)
                    records.append(record)
                    finished.append(record)
                    self._after_trial(records, trial_cap, cost_cap, progress)
                    if callback is not None:
                        callback(record)
                    # Trials in flight still finish and are recorded; no new one starts.
                    stop = stop or self.failures.stop_reason(finished)
            report.finish(self, records)
            self.store.mark_study(self.parent_id, running=False)
        if stop is not None:
            raise TooManyFailuresError(stop)
        rec = self._recommend(records)
        if progress and rec is not None:
            print(rec, file=self._out, flush=True)
        return rec

    def _start_next(
        self,
        records: list[TrialRecord],
        in_flight: deque[_Started],
        trial_cap: int | None,
        cost_cap: float | None,
        pool: ThreadPoolExecutor,
    ) -> _Started | None:
        """Start the next trial, recorded as RUNNING first: a failed trial's retry, else what
        the optimiser proposes; None when the budget (counting the trials in flight at their
        expected cost) is spent or the optimiser has nothing more to propose."""
        pending = [s.spec for s in in_flight]
        history = self.history(records)
        if trial_cap is not None:
            done = budget_trials(records)
            if trial_cap - done - len(pending) <= 0:
                return None
            history = replace(history, trials_left=trial_cap - done)
        committed = sum(history.costs[self.fidelities.index(p.fidelity)] for p in pending)
        remaining = math.inf if cost_cap is None else cost_cap - self.spent(records) - committed
        if remaining <= 1e-12:
            return None
        retry = self.failures.next_retry(records, [s.retry for s in in_flight if s.retry])
        if retry is not None:
            spec = self.failures.retry_spec(retry, history.next_index(pending))
            # A retry that no longer fits in the budget is not made; the optimiser picks instead.
            if history.costs[self.fidelities.index(spec.fidelity)] <= remaining + 1e-12:
                where = (retry.of, retry.attempt)
                run_id = self.store.start_trial(self.parent_id, spec, "retry", None, where)
                return _Started(run_id, spec, "retry", pool.submit(self._run, run_id, spec), where)
        start = time.perf_counter()
        with quiet_numerics():
            proposals = self.optimizer.propose(history, remaining, pending)
        self.last_optimizer_seconds = time.perf_counter() - start
        if not proposals:
            return None
        spec = self._spec(history.next_index(pending), proposals[0])
        step = proposals[0].step
        run_id = self.store.start_trial(self.parent_id, spec, step, proposals[0].predicted)
        return _Started(run_id, spec, step, pool.submit(self._run, run_id, spec), None)

    def resume(
        self, max_trials: int | None = None, max_cost: float | None = None, *, progress: bool = True
    ) -> Recommendation | None:
        """Continue the study (see `optimize`): after a crash, to its configured budget; with
        `max_trials`/`max_cost`, for that many more trials/cost units."""
        return self.optimize(max_trials, max_cost, progress=progress)

    def attach(self, runs: str | Path | list[dict[str, Any]]) -> list[TrialRecord]:
        """Add existing runs to the study as completed trials (a warm start): a run-table CSV
        (README, "Run tables"; `regmix-pile` works too) or a list of mappings
        `{weights: {domain: w}, model_size, tokens, metrics: {name: value}, cost, run_id}`
        (`cost` in the runner's unit and `run_id` optional; a domain left out has weight 0).

        Every run is checked first: an unknown domain, weights that do not sum to 1, a
        (model_size, tokens) that is not a fidelity of the study or a missing objective metric
        is a ValueError naming the run and the field, and nothing is written. Each run then
        becomes a COMPLETED trial in MLflow (`generation_step` `attached`, tag
        `info.attached_from`) that the optimiser, `best()` and `resume` see like any other;
        attached runs do not count against the budget (`max_trials`, `max_cost`). In pool mode a
        run that is one of the pool's rows takes that row, so it is not proposed again.

        >>> import tempfile
        >>> uri = f"sqlite:///{tempfile.mkdtemp()}/mlflow.db"
        >>> study = Study.create("studies/pile-replay.yaml", tracking_uri=uri)
        >>> uniform = {d: 1 / len(study.mixtures.names) for d in study.mixtures.names}
        >>> run = {"weights": uniform, "model_size": "1M", "tokens": 1e9,
        ...        "metrics": {m: 4.0 for m in study.metrics}, "cost": 0.001}
        >>> [(r.spec.index, r.state, r.step) for r in study.attach([run])]
        [(0, 'COMPLETED', 'attached')]
        >>> study.attach([{**run, "weights": {"arxiv": 0.5, "reddit": 0.5}}])  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        admire.config.ConfigError: runs[0].weights: unknown domain 'reddit'; ...
        >>> _ = study.optimize(max_trials=2, progress=False)
        >>> [r.step for r in study.trials], study.spent() < 0.01
        (['attached', 'sobol', 'sobol'], True)
        """
        if isinstance(runs, str | Path):
            labelled = runs_from_table(runs)
        else:
            labelled = [(f"runs[{i}]", run) for i, run in enumerate(runs)]
        checked = check_runs(
            labelled, self.mixtures.names, list(self.fidelities.fidelities), self.metrics
        )
        out: list[TrialRecord] = []
        with _lock(self.store, self.name):
            records = self.trials
            pool = self.runner.pool() or []
            for run in checked:
                history = self.history(records)
                used = history.used_pool_ids()
                weights = np.array([run.weights[d] for d in self.mixtures.names])
                pool_id = next(
                    (
                        p.pool_id
                        for p in pool
                        if p.fidelity == run.fidelity
                        and p.pool_id not in used
                        and np.abs(p.weights - weights).max() < 1e-9
                    ),
                    None,
                )
                index = history.next_index()
                # The seed the run was trained with is not known: -1 says so.
                spec = TrialSpec(index, run.weights, run.fidelity, -1, pool_id)
                run_id = self.store.start_trial(self.parent_id, spec, ATTACHED, None)
                result = TrialResult(metrics=run.metrics, cost=run.cost, info=run.info)
                record = self._finish(run_id, spec, ATTACHED, result, records)
                records.append(record)
                out.append(record)
        return out

    def _spec(self, index: int, proposal: Proposal) -> TrialSpec:
        """The trial a proposal becomes; an optimiser's infeasible mixture is refused here."""
        self.mixtures.check(proposal.weights)
        seed = trial_seed(self.config.seed, index)
        weights = self.mixtures.as_dict(proposal.weights)
        return TrialSpec(index, weights, proposal.fidelity, seed, proposal.pool_id)

    def _finish_interrupted(self, records: list[TrialRecord], progress: bool) -> list[TrialRecord]:
        out = []
        for r in records:
            if r.state != RUNNING and not r.closed:
                self.store.close_trial(r)
            if r.state == RUNNING and r.attached:
                # An attach that crashed before the run's results were written: the run is
                # not a trial the study can run; it goes (soft-deleted) and can be attached again.
                self.store.client.delete_run(r.run_id)
                continue
            if r.state == RUNNING:
                if progress:
                    print(
                        f"[{self.name}] {trial_name(r.spec.index)} was interrupted; "
                        "running it again",
                        file=self._out,
                        flush=True,
                    )
                self.store.reopen_trial(r.run_id, r.spec)
                retry = None if r.retry_of is None else (r.retry_of, r.attempt)
                r = self._finish(r.run_id, r.spec, r.step, self._run(r.run_id, r.spec), out, retry)
            out.append(r)
        return out

    def _run(self, run_id: str, spec: TrialSpec) -> TrialResult:
        """Run one trial (in a worker thread when there are several workers)."""
        tracking = TrialRun(run_id, self.parent_id, _absolute_uri(self.store.uri))
        try:
            return self.runner.run(replace(spec, tracking=tracking))
        except Exception as err:  # a runner bug must not kill the study; the trial fails
            return TrialResult(
                metrics={}, cost=0.0, failed=True, error=f"{type(err).__name__}: {err}"
            )

    def _finish(
        self,
        run_id: str,
        spec: TrialSpec,
        step: str,
        result: TrialResult,
        records: list[TrialRecord],
        retry: tuple[int, int] | None = None,
    ) -> TrialRecord:
        """Check a trial's result, write it to its run and return its record (`retry`: the
        first attempt's index and this attempt's number, for a retry)."""
        objective = None
        if not result.failed:
            missing = [m for m in self.metrics if m not in result.metrics]
            bad = [
                m
                for m in self.metrics
                if m in result.metrics and not math.isfinite(result.metrics[m])
            ]
            if missing or bad:
                result.failed = True
                result.error = f"missing metrics {missing}, non-finite {bad}"
            else:
                objective = self.config.objective.combine(result.metrics, self.metrics)
        record = TrialRecord(
            run_id=run_id,
            spec=spec,
            state=FAILED if result.failed else COMPLETED,
            step=step,
            metrics=dict(result.metrics),
            error=result.error,
            curve=[] if result.failed else result.curve,
            retry_of=None if retry is None else retry[0],
            attempt=1 if retry is None else retry[1],
        )
        record = self._with_objective_curve(record)
        record.metrics["cost.raw"] = result.cost
        units = self._units(record, self._cost_model(records), _calibrated(records))
        self.store.finish_trial(run_id, result, objective, units, record.objective_curve)
        if objective is not None:
            record.metrics["objective"] = objective
        return record

    def _after_trial(
        self,
        records: list[TrialRecord],
        trial_cap: int | None,
        cost_cap: float | None,
        progress: bool,
    ) -> None:
        last = records[-1]
        spent = self.spent(records)
        start = time.perf_counter()
        rec = self._recommend(records)
        self.last_optimizer_seconds += time.perf_counter() - start
        self.last_recommendation = rec
        target = self.fidelities.target
        at_target = [
            r.objective for r in records if r.objective is not None and r.spec.fidelity == target
        ]
        values = {"cumulative_cost": spent}
        if at_target:
            maximize = self.config.objective.direction == "maximize"
            values["best_objective_target"] = (max if maximize else min)(at_target)
        if rec is not None and math.isfinite(rec.predicted):
            values["recommended_predicted"] = rec.predicted
            if math.isfinite(rec.predicted_sd):
                values["recommended_predicted_sd"] = rec.predicted_sd
        self.store.log_study_progress(self.parent_id, last.spec.index, values)
        report.after_trial(self, records, rec)
        if progress:
            line = report.trial_line(self.name, records, spent, trial_cap, cost_cap, rec)
            print(line, file=self._out, flush=True)

    def _recommend(self, records: list[TrialRecord]) -> Recommendation | None:
        done = [r for r in records if r.state == COMPLETED]
        # Progress logging and `best()` ask for the same recommendation after each trial.
        key = (len(records), len(done), done[-1].run_id if done else "")
        if self._rec_cache is not None and self._rec_cache[0] == key:
            return self._rec_cache[1]
        with quiet_numerics():
            rec = self.optimizer.recommend(self.history(records))
        if rec is not None:
            self._pick = dict(rec.weights)
            truth = self.runner.reference(rec.weights, self.fidelities.target)
            if truth is not None:
                rec = replace(rec, true=self.config.objective.combine(truth, self.metrics))
        self._rec_cache = (key, rec)
        return rec


def _calibrated(records: list[TrialRecord]) -> bool:
    """Whether a measured cost can be converted to target-run units: some trial completed
    with a measured cost, which fixes the runner's unit against the cost prior's."""
    return any(r.state == COMPLETED and r.raw_cost > 0 for r in records)


def _result(future: Future[TrialResult]) -> TrialResult:
    try:
        return future.result()
    except Exception as err:  # `_run` catches the runner's errors; this is the thread's own
        return TrialResult(metrics={}, cost=0.0, failed=True, error=f"{type(err).__name__}: {err}")


def _absolute_paths(config: StudyConfig, base: Path | None) -> StudyConfig:
    """Pin the paths a study file names (a replay table, proxy domains, a tokenizer file)
    to the study file's folder, so the stored config works from anywhere."""
    if base is None:
        return config

    def pin(path: str) -> str:
        p = Path(path).expanduser()
        return str(p if p.is_absolute() else (base / p).resolve())

    def pin_runner(runner):  # type: ignore[no-untyped-def]
        if isinstance(runner, RayRunnerConfig):
            return runner.model_copy(update={"trial": pin_runner(runner.trial)})
        if isinstance(runner, CommandRunnerConfig):
            out_dir = None if runner.out_dir is None else pin(runner.out_dir)
            return runner.model_copy(update={"cwd": pin(runner.cwd), "out_dir": out_dir})
        if isinstance(runner, ProxyRunnerConfig):
            sources = {
                k: v.model_copy(update={"path": pin(v.path)}) if v.path else v
                for k, v in runner.sources.items()
            }
            tok = runner.tokenizer
            if tok.file:
                tok = tok.model_copy(update={"file": pin(tok.file)})
            return runner.model_copy(update={"sources": sources, "tokenizer": tok})
        if runner.table not in BUILTIN_TABLES:
            return runner.model_copy(update={"table": pin(runner.table)})
        return runner

    return config.model_copy(update={"runner": pin_runner(config.runner)})


def _absolute_uri(uri: str) -> str:
    """The tracking URI with a relative SQLite path made absolute: a trial's own process
    (the command runner's) may run in another folder."""
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        return "sqlite:///" + str(Path(uri.removeprefix("sqlite:///")).resolve())
    return uri


def _capped_domains(config: StudyConfig, runner: Runner) -> list[Domain]:
    """The study's domains with their maximum weight lowered where the runner caps repetition
    (a domain too small for its share of a target-fidelity run)."""
    caps_of = getattr(runner, "domain_caps", None)
    caps = caps_of(config.fidelities.target.tokens) if caps_of is not None else {}
    if not caps:
        return list(config.domains)
    domains = [
        d.model_copy(update={"max": min(d.max, caps.get(d.name, 1.0))}) for d in config.domains
    ]
    for d in domains:
        if d.max < d.min:
            raise ConfigError(
                f"domain '{d.name}': min {d.min:g} needs more tokens than its max_epochs allows "
                f"(at most {d.max:.3g} of a {config.fidelities.target.tokens:g}-token run)"
            )
    if sum(d.max for d in domains) < 1.0:
        raise ConfigError(
            "runner.max_epochs: the domains are too small for a "
            f"{config.fidelities.target.tokens:g}-token target run without repeating one more "
            "often than max_epochs; raise max_epochs or add data"
        )
    return domains


@contextmanager
def _lock(store: StudyStore, name: str) -> Iterator[None]:
    """Hold the lock that lets one process drive a study. It is an OS file lock (flock), so
    a holder that dies, even by SIGKILL, releases it. For a remote tracking URI the lock is
    per machine (under ~/.cache/admire/locks)."""
    lock = lock_for(store.uri, name)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise StudyLockedError(
            f"study '{name}' is being driven by another process (lock {lock.lock_file}); "
            "wait for it to finish, or stop it first"
        ) from None
    except OSError as err:  # after Timeout, which is one too
        raise TrackingStoreError(
            f"tracking URI {store.uri}: cannot take the study's lock {lock.lock_file} "
            f"({err.strerror or err}); make the store writable, or pass another --tracking-uri"
        ) from None
    try:
        yield
    finally:
        lock.release()


__all__ = [
    "ConfigError",
    "Recommendation",
    "Study",
    "StudyExistsError",
    "StudyLockedError",
    "StudyNotFoundError",
    "TooManyFailuresError",
]
