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
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

import numpy as np
import torch
import yaml
from filelock import Timeout

from admire import report
from admire.config import (
    ConfigError,
    Domain,
    Fidelity,
    ProxyRunnerConfig,
    StudyConfig,
    load_config,
    parse_config,
)
from admire.optim.acquisition import mf_mes_scores, predict
from admire.optim.cost import CostModel
from admire.optim.surrogate import encode, fit_surrogate
from admire.runners import Runner, TrialSpec, make_runner
from admire.runners.base import PoolRow, TrialResult
from admire.runners.replay import BUILTIN_TABLES
from admire.space import FidelitySpace, MixtureSpace, label
from admire.tracking import (
    COMPLETED,
    FAILED,
    RUNNING,
    StudyStore,
    TrialRecord,
    lock_for,
    trial_name,
)

if TYPE_CHECKING:
    import pandas as pd


class StudyExistsError(RuntimeError):
    """`Study.create` on a name the store already holds (and no overwrite)."""


class StudyNotFoundError(LookupError):
    """`Study.load` on a name the store does not hold."""


class StudyLockedError(RuntimeError):
    """Another live process is driving this study."""


@dataclass(frozen=True)
class Recommendation:
    """The mixture with the best predicted objective at the target fidelity."""

    weights: dict[str, float]
    predicted: float
    predicted_sd: float
    fidelity: str
    true: float | None = None
    pool_id: str | None = None

    def __str__(self) -> str:
        top = sorted(self.weights.items(), key=lambda kv: -kv[1])
        mix = ", ".join(f"{k} {v:.3f}" for k, v in top if v >= 0.0005)
        true = "" if self.true is None else f"; true {self.true:.4f}"
        return (
            f"recommended mixture at {self.fidelity}: {mix}\n"
            f"  predicted objective {self.predicted:.4f} +- {self.predicted_sd:.4f}{true}"
        )


def trial_seed(study_seed: int, index: int) -> int:
    """The seed of trial `index`: distinct per trial, reproducible from the study seed."""
    return (study_seed * 1_000_003 + index * 7919 + 1) % (2**31 - 1)


class Study:
    """A mixture-optimisation study, stored in MLflow; create, load, optimise, resume.

    >>> study = Study.create("studies/pile-replay.yaml")
    >>> study.optimize()
    >>> Study.load("pile-replay").resume(max_trials=10)
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
        self._sign = -1.0 if config.objective.direction == "minimize" else 1.0
        pool = runner.pool()
        grid = set(self.fidelities.fidelities)
        # A runner may hold runs at fidelities this study does not use; they are not options.
        self._pool = None if pool is None else [p for p in pool if p.fidelity in grid]
        self._model_cache: tuple[int, object] | None = None
        self._rec_cache: tuple[tuple[int, int, str], Recommendation] | None = None
        self._out: TextIO = sys.stdout

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
        the one the config names (a custom runner, or a wrapped one as the benchmark uses)."""
        base = None
        if not isinstance(config, StudyConfig):
            base = Path(config).resolve().parent
            config = load_config(config)
        config = _absolute_paths(config, base)
        if runner is None:
            runner = make_runner(config)  # validates the config against the runner before any write
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
                store.delete_study(existing)
            parent = store.create_study(config)
        return cls(config, store, parent, runner)

    @classmethod
    def load(
        cls, name: str, *, tracking_uri: str | None = None, runner: Runner | None = None
    ) -> Study:
        """Open an existing study by name, with the config it was created with; `runner`
        replaces the one the config names (a custom runner, as in `create`)."""
        store = StudyStore(tracking_uri)
        parent = store.find_study(name)
        if parent is None:
            known = store.list_studies()
            raise StudyNotFoundError(
                f"no study '{name}' in {store.uri}"
                + (f"; studies there: {', '.join(known)}" if known else "")
            )
        config = parse_config(yaml.safe_load(store.study_config_yaml(parent)), f"study {name}")
        return cls(config, store, parent, runner or make_runner(config))

    # ---- reading ---------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.config.name

    @property
    def trials(self) -> list[TrialRecord]:
        """Every trial so far, in index order, as stored in MLflow."""
        return self.store.trials(self.parent_id)

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

    def spent(self, records: list[TrialRecord] | None = None) -> float:
        """Cost spent so far, in target-run units."""
        records = self.trials if records is None else records
        costs = self._cost_model(records)
        return sum(costs.to_units(r.raw_cost) for r in records)

    def best(self) -> Recommendation | None:
        """The recommended mixture: best posterior mean at the target fidelity (None before
        any trial has completed)."""
        return self._recommend(self.trials)

    def predict(
        self, weights: np.ndarray, fidelity: Fidelity | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Posterior mean and sd of the objective (in its own direction) for mixtures
        (n, domains, in the study's domain order) at `fidelity` (default: the target)."""
        done = self._completed(self.trials)
        if len(done) < 1:
            raise ValueError("no completed trial yet: nothing to predict from")
        fid = self.fidelities.target if fidelity is None else fidelity
        coords = self.fidelities.coords()[self.fidelities.index(fid)]
        pred = predict(self._model(done), np.atleast_2d(weights), coords)
        return self._sign * pred.mean, pred.sd

    # ---- the loop --------------------------------------------------------------------------
    def optimize(
        self,
        max_trials: int | None = None,
        max_cost: float | None = None,
        *,
        progress: bool = True,
        callback: Callable[[TrialRecord], None] | None = None,
    ) -> Recommendation | None:
        """Run trials until the budget is spent, then return the recommendation.

        With no arguments the study runs to its configured budget (after a crash: picks up
        where it stopped, finishing an interrupted trial first). `max_trials` / `max_cost`
        instead allow that many *more* trials / target-run units in this call, also beyond a
        finished budget, like Optuna's `n_trials`.
        """
        with _lock(self.store, self.name):
            self.store.mark_study(self.parent_id, running=True)
            records = self.trials
            records = self._finish_interrupted(records, progress)
            n0, c0 = len(records), self.spent(records)
            if max_trials is None and max_cost is None:
                trial_cap, cost_cap = self.config.budget.max_trials, self.config.budget.max_cost
            else:
                trial_cap = None if max_trials is None else n0 + max_trials
                cost_cap = None if max_cost is None else c0 + max_cost
            while True:
                spent = self.spent(records)
                if trial_cap is not None and len(records) >= trial_cap:
                    break
                remaining = math.inf if cost_cap is None else cost_cap - spent
                if remaining <= 1e-12:
                    break
                proposal = self._propose(records, remaining)
                if proposal is None:
                    break
                spec, step, predicted = proposal
                run_id = self.store.start_trial(self.parent_id, spec, step, predicted)
                record = self._execute(run_id, spec, step, records)
                records.append(record)
                self._after_trial(records, trial_cap, cost_cap, progress)
                if callback is not None:
                    callback(record)
            report.finish(self, records)
            self.store.mark_study(self.parent_id, running=False)
        rec = self._recommend(records)
        if progress and rec is not None:
            print(rec, file=self._out, flush=True)
        return rec

    def resume(
        self, max_trials: int | None = None, max_cost: float | None = None, *, progress: bool = True
    ) -> Recommendation | None:
        """Continue the study (see `optimize`): after a crash, to its configured budget; with
        `max_trials`/`max_cost`, for that many more trials/cost units."""
        return self.optimize(max_trials, max_cost, progress=progress)

    def _finish_interrupted(self, records: list[TrialRecord], progress: bool) -> list[TrialRecord]:
        out = []
        for r in records:
            if r.state != RUNNING and not r.closed:
                self.store.close_trial(r)
            if r.state == RUNNING:
                if progress:
                    print(
                        f"[{self.name}] {trial_name(r.spec.index)} was interrupted; "
                        "running it again",
                        file=self._out,
                        flush=True,
                    )
                self.store.reopen_trial(r.run_id, r.spec)
                r = self._execute(r.run_id, r.spec, r.step, out)
            out.append(r)
        return out

    def _execute(
        self, run_id: str, spec: TrialSpec, step: str, records: list[TrialRecord]
    ) -> TrialRecord:
        try:
            result = self.runner.run(spec)
        except Exception as err:  # a runner bug must not kill the study; the trial fails
            result = TrialResult(
                metrics={}, cost=0.0, failed=True, error=f"{type(err).__name__}: {err}"
            )
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
        curve = [
            (t, self.config.objective.combine(m, self.metrics))
            for t, m in result.curve
            if all(k in m and math.isfinite(m[k]) for k in self.metrics)
        ]
        units = self._cost_model(records).to_units(result.cost) if result.cost > 0 else 0.0
        self.store.finish_trial(run_id, result, objective, units, curve)
        metrics = dict(result.metrics)
        metrics["cost.raw"] = result.cost
        if objective is not None:
            metrics["objective"] = objective
        return TrialRecord(
            run_id=run_id,
            spec=spec,
            state=FAILED if result.failed else COMPLETED,
            step=step,
            metrics=metrics,
            error=result.error,
            curve=[] if result.failed else result.curve,
        )

    def _after_trial(
        self,
        records: list[TrialRecord],
        trial_cap: int | None,
        cost_cap: float | None,
        progress: bool,
    ) -> None:
        last = records[-1]
        spent = self.spent(records)
        rec = self._recommend(records)
        target = self.fidelities.target
        at_target = [
            r.objective for r in records if r.objective is not None and r.spec.fidelity == target
        ]
        values = {
            "cumulative_cost": spent,
            "trials_completed": sum(r.state == COMPLETED for r in records),
        }
        if at_target:
            values["best_objective_target"] = (min if self._sign < 0 else max)(at_target)
        if rec is not None:
            values["recommended_predicted"] = rec.predicted
            values["recommended_predicted_sd"] = rec.predicted_sd
        self.store.log_study_progress(self.parent_id, last.spec.index, values)
        report.after_trial(self, records, rec)
        if progress:
            line = report.trial_line(self.name, records, spent, trial_cap, cost_cap, rec)
            print(line, file=self._out, flush=True)

    # ---- proposals -------------------------------------------------------------------------
    def _completed(self, records: list[TrialRecord]) -> list[TrialRecord]:
        return [r for r in records if r.state == COMPLETED and r.objective is not None]

    def _model(self, records: list[TrialRecord]):  # type: ignore[no-untyped-def]
        done = self._completed(records)
        key = len(done), done[-1].run_id if done else ""
        if self._model_cache is not None and self._model_cache[0] == key:
            return self._model_cache[1]
        coords = self.fidelities.coords()
        w = torch.tensor(
            np.array([[r.spec.weights[n] for n in self.mixtures.names] for r in done]),
            dtype=torch.float64,
        )
        f = torch.tensor(
            np.array([coords[self.fidelities.index(r.spec.fidelity)] for r in done]),
            dtype=torch.float64,
        )
        y = torch.tensor([[self._sign * r.objective] for r in done], dtype=torch.float64)
        with torch.random.fork_rng():
            torch.manual_seed(self.config.seed)
            model = fit_surrogate(encode(w, f), y)
        self._model_cache = (key, model)
        return model

    def _used_pool_ids(self, records: list[TrialRecord]) -> set[str]:
        return {r.spec.pool_id for r in records if r.spec.pool_id is not None}

    def _propose(
        self, records: list[TrialRecord], remaining: float
    ) -> tuple[TrialSpec, str, tuple[float, float] | None] | None:
        index = max((r.spec.index for r in records), default=-1) + 1
        seed = trial_seed(self.config.seed, index)
        costs = self._cost_model(records).relative()
        affordable = [i for i, c in enumerate(costs) if c <= remaining + 1e-12]
        if not affordable:
            return None
        done = self._completed(records)
        n_init = self.config.optimizer.n_initial
        if index < n_init or len(done) < 2:
            return self._initial(index, seed, records, affordable)
        return self._bayesian(index, seed, records, affordable, costs)

    def _initial(
        self, index: int, seed: int, records: list[TrialRecord], affordable: list[int]
    ) -> tuple[TrialSpec, str, None] | None:
        """Space-filling design at the cheapest fidelity, regenerated from the study seed."""
        n_design = max(self.config.optimizer.n_initial, index + 1)
        design = self.mixtures.space_filling(n_design, self.config.seed)
        point = design[index]
        fid_i = min(affordable, key=lambda i: self._cost_model(records).relative()[i])
        fid = self.fidelities.fidelities[fid_i]
        if self._pool is None:
            return self._spec(index, point, fid, seed, None), "sobol", None
        used = self._used_pool_ids(records)
        rows = [p for p in self._pool if p.fidelity == fid and p.pool_id not in used]
        if not rows:
            return None
        nearest = min(rows, key=lambda p: float(((p.weights - point) ** 2).sum()))
        return self._spec(index, nearest.weights, fid, seed, nearest.pool_id), "sobol", None

    def _spec(self, index: int, w: np.ndarray, fid, seed: int, pool_id: str | None) -> TrialSpec:  # type: ignore[no-untyped-def]
        self.mixtures.check(w)
        return TrialSpec(index, self.mixtures.as_dict(w), fid, seed, pool_id)

    def _target_candidates(
        self, records: list[TrialRecord], seed: int
    ) -> tuple[np.ndarray, list[PoolRow] | None]:
        """Mixtures among which the target-fidelity optimum is sought."""
        target = self.fidelities.target
        if self._pool is not None:
            rows = [p for p in self._pool if p.fidelity == target]
            return np.array([p.weights for p in rows]), rows
        n = self.config.optimizer.n_candidates
        cloud = self.mixtures.sample(n, seed)
        done = self._completed(records)
        observed = np.array([[r.spec.weights[k] for k in self.mixtures.names] for r in done])
        pred = predict(
            self._model(records), observed, self.fidelities.coords()[self.fidelities.target_index]
        )
        top = observed[np.argsort(-pred.mean)[: min(8, len(observed))]]
        local = self.mixtures.neighbours(top, n // 2, seed + 1)
        return np.concatenate([cloud, local, observed]), None

    def _bayesian(
        self,
        index: int,
        seed: int,
        records: list[TrialRecord],
        affordable: list[int],
        costs: np.ndarray,
    ) -> tuple[TrialSpec, str, tuple[float, float]] | None:
        model = self._model(records)
        coords = self.fidelities.coords()
        target_w, _ = self._target_candidates(records, seed)
        if self._pool is not None:
            used = self._used_pool_ids(records)
            rows = [
                p
                for p in self._pool
                if p.pool_id not in used and self.fidelities.index(p.fidelity) in affordable
            ]
            if not rows:
                return None
            cand_w = np.array([p.weights for p in rows])
            cand_f = np.array([self.fidelities.index(p.fidelity) for p in rows])
            ids: list[str | None] = [p.pool_id for p in rows]
        else:
            cand_w = np.repeat(target_w, len(affordable), axis=0)
            cand_f = np.tile(np.array(affordable), len(target_w))
            # Observed mixtures are candidates for the recommendation, not for another run at
            # the same fidelity.
            seen = {
                (self.fidelities.index(r.spec.fidelity), *r.spec.weights.values()) for r in records
            }
            fresh = [
                (int(f), *self.mixtures.as_dict(w).values()) not in seen
                for w, f in zip(cand_w, cand_f, strict=True)
            ]
            cand_w, cand_f = cand_w[fresh], cand_f[fresh]
            ids = [None] * len(cand_w)
        eff_costs = costs + self.config.optimizer.fixed_cost
        scores = mf_mes_scores(
            model, cand_w, cand_f, coords, eff_costs, self.fidelities.target_index, target_w, seed
        )
        best = int(np.argmax(scores))
        fid = self.fidelities.fidelities[int(cand_f[best])]
        pred = predict(model, cand_w[best : best + 1], coords[int(cand_f[best])])
        predicted = (self._sign * float(pred.mean[0]), float(pred.sd[0]))
        spec = self._spec(index, cand_w[best], fid, seed, ids[best])
        return spec, "mf-mes", predicted

    def _recommend(self, records: list[TrialRecord]) -> Recommendation | None:
        done = self._completed(records)
        if not done:
            return None
        # Progress logging and `best()` ask for the same recommendation after each trial.
        key = (len(records), len(done), done[-1].run_id)
        if self._rec_cache is not None and self._rec_cache[0] == key:
            return self._rec_cache[1]
        seed = trial_seed(self.config.seed, len(records)) + 17
        target_w, rows = self._target_candidates(records, seed)
        coords = self.fidelities.coords()[self.fidelities.target_index]
        pred = predict(self._model(records), target_w, coords)
        best = int(np.argmax(pred.mean))
        weights = self.mixtures.as_dict(target_w[best])
        target = self.fidelities.target
        truth = self.runner.reference(weights, target)
        true = None if truth is None else self.config.objective.combine(truth, self.metrics)
        rec = Recommendation(
            weights=weights,
            predicted=self._sign * float(pred.mean[best]),
            predicted_sd=float(pred.sd[best]),
            fidelity=label(target),
            true=true,
            pool_id=None if rows is None else rows[best].pool_id,
        )
        self._rec_cache = (key, rec)
        return rec


def _absolute_paths(config: StudyConfig, base: Path | None) -> StudyConfig:
    """Pin the paths a study file names (a replay table, proxy domains, a tokenizer file)
    to the study file's folder, so the stored config works from anywhere."""
    if base is None:
        return config

    def pin(path: str) -> str:
        p = Path(path).expanduser()
        return str(p if p.is_absolute() else (base / p).resolve())

    runner = config.runner
    if isinstance(runner, ProxyRunnerConfig):
        sources = {
            k: v.model_copy(update={"path": pin(v.path)}) if v.path else v
            for k, v in runner.sources.items()
        }
        tok = runner.tokenizer
        if tok.file:
            tok = tok.model_copy(update={"file": pin(tok.file)})
        runner = runner.model_copy(update={"sources": sources, "tokenizer": tok})
    elif runner.table not in BUILTIN_TABLES:
        runner = runner.model_copy(update={"table": pin(runner.table)})
    return config.model_copy(update={"runner": runner})


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
                f"domain '{d.name}': min {d.min:g} needs more tokens than max_epochs allows "
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
]
