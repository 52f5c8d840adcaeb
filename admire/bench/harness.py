"""The benchmark protocol, its summary table and its outputs.

Protocol, the same for every method: one budget in target-run units (a trial costs its
fidelity's declared cost); after every trial the method names its recommended target mixture
without seeing unpaid values; the score at that cost is the true target objective of that
recommendation (pool: the pool row's value; continuous: the replay surrogate's answer), as
simple regret against the best available target value. A cost before a method's first
recommendation scores the regret of the mean target value (an uninformed pick).
"""

from __future__ import annotations

import csv
import logging
import math
import multiprocessing as mp
import os
import shutil
import signal
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

import numpy as np

from admire.bench.methods import METHODS, method_optimizer
from admire.bench.problems import SUITE, PaidRunner, Problem, load_problem
from admire.bench.verdict import FINAL, STAYS, VERDICT_COLUMNS, format_verdict, verdict

REGRET_BUDGETS = (1, 2, 5, 10, 20)
COVERAGE_COSTS = (0.01, 0.1, 1, 10)
"""Costs (target-run units, a decade apart: a cheap design, cheap runs, the first target
runs, many) at which the share of seeds whose standing pick's ±2 sd held its true value is
reported."""
SUMMARY_COLUMNS = [
    "method",
    "seeds",
    "budget",
    "reached_best",
    "cost_to_best_median",
    "cost_to_best_q25",
    "cost_to_best_q75",
    "cost_to_0.5pct_median",
    "cost_to_1pct_median",
    *[f"regret_at_{b}" for b in REGRET_BUDGETS],
    "cost_to_best_stable_median",
    "cost_to_best_stable_q75",
    "ends_on_best",
    "final_regret_median",
    "sec_per_proposal_median",
    "trials_median",
    "cost_to_best_median_flops",
    "pick_changes_median",
    "coverage_2sd",
    *[f"coverage_at_{c:g}" for c in COVERAGE_COSTS],
]
TIE = 1e-9
NEAR_BEST = 0.02
"""On a continuous problem no pick hits the exact optimum of the simplex: there "the best"
means a regret within this share of the uninformed pick's regret."""


def best_tolerance(problem: Problem, uninformed: float) -> float:
    """The regret up to which a pick counts as the best: exact among a pool's target rows,
    within `NEAR_BEST` of the uninformed regret on a continuous problem."""
    return TIE if problem.target_pool is not None else max(TIE, NEAR_BEST * uninformed)


@dataclass(frozen=True)
class Trace:
    """One method, one seed: per trial, cost so far, regret of the pick, fidelity, seconds."""

    method: str
    seed: int
    costs: list[float]
    flops_costs: list[float]
    regrets: list[float]
    fidelities: list[str]
    seconds: list[float]
    picks: list[str] = field(default_factory=list)
    """An id of the recommended mixture after each trial (to count how often it changes)."""
    covered: list[float] = field(default_factory=list)
    """1 when the pick's true value lay within its predicted +- 2 sd, 0 when not, NaN when
    the method gave no sd or no prediction (before its first target run)."""


def run_one(problem: Problem, method: str, seed: int, concurrent: int = 1) -> Trace:
    """Run a method on a problem for one seed, through `Study` on a throwaway MLflow store,
    and score the recommendation standing after every trial. With `concurrent` > 1 that many
    trials are in flight at once (each proposal made with the others pending)."""
    from admire.study import Study

    config = problem.config.model_copy(
        update={
            "seed": seed,
            "name": f"bench-{method}-{seed}",
            "optimizer": method_optimizer(method, problem),
        }
    )
    costs, flops, regrets, fids, secs = [], [], [], [], []
    picks: list[str] = []
    covered: list[float] = []
    sign = 1.0 if config.objective.direction == "minimize" else -1.0
    records: list = []
    names = config.domain_names
    uninformed = _uninformed_regret(problem)
    global _STORE
    with tempfile.TemporaryDirectory(dir=_scratch()) as tmp:
        _STORE = Path(tmp)
        study = Study.create(
            config,
            tracking_uri=_throwaway_store(Path(tmp)),
            runner=PaidRunner(problem.make_runner()),
        )
        study.figures = False

        def after(record) -> None:  # type: ignore[no-untyped-def]
            records.append(record)
            rec = study.last_recommendation
            costs.append(study.spent(records))
            flops.append(
                (flops[-1] if flops else 0.0)
                + problem.flops_cost.get(record.spec.fidelity, math.nan)
            )
            if rec is None:  # no pick yet: an uninformed one stands
                regrets.append(uninformed)
                picks.append("")
                covered.append(math.nan)
            else:
                pick = np.array([rec.weights[n] for n in names])
                truth = problem.truth(pick)
                regrets.append(truth - problem.best)
                picks.append(",".join(f"{x:.6f}" for x in pick))
                sd = rec.predicted_sd
                inside = abs(sign * truth - rec.predicted) <= 2 * sd
                covered.append(float(inside) if math.isfinite(sd) and sd > 0 else math.nan)
            fids.append(record.spec.fidelity.model_size)
            secs.append(study.last_optimizer_seconds)

        study.optimize(progress=False, callback=after, workers=concurrent)
    _STORE = None
    return Trace(method, seed, costs, flops, regrets, fids, secs, picks, covered)


def _throwaway_store(folder: Path) -> str:
    """A fresh SQLite MLflow store in `folder`, copied from a migrated template held in
    memory (running MLflow's migrations costs seconds per store; a template left on disk
    would outlive the pool's workers, which are terminated, not shut down)."""
    global _TEMPLATE
    if _TEMPLATE is None:
        from mlflow.tracking import MlflowClient

        # MLflow announces its migrations at INFO, once per worker: noise between progress lines.
        migrations = logging.getLogger("mlflow.store.db.utils")
        level = migrations.level
        migrations.setLevel(logging.WARNING)
        try:
            with tempfile.TemporaryDirectory(prefix="admire-bench-") as tmp:
                db = Path(tmp) / "template.db"
                MlflowClient(tracking_uri=f"sqlite:///{db}").search_experiments()
                _TEMPLATE = db.read_bytes()
        finally:
            migrations.setLevel(level)
    (folder / "mlflow.db").write_bytes(_TEMPLATE)
    return f"sqlite:///{folder / 'mlflow.db'}"


_TEMPLATE: bytes | None = None


def _scratch() -> str | None:
    """Where a run's throwaway store lives: in memory (/dev/shm) where the machine has it,
    as SQLite's syncs to disk after every trial's writes were a third of the harness's own
    time per trial; else the system's temporary folder."""
    shm = Path("/dev/shm")
    return str(shm) if shm.is_dir() and os.access(shm, os.W_OK) else None


def _first_cost(costs: list[float], ok: list[bool], default: float) -> float:
    """The cost at the first trial where `ok` holds, else `default`."""
    return next((c for c, good in zip(costs, ok, strict=True) if good), default)


def _stable_cost(trace: Trace, budget: float, tol: float = TIE) -> float:
    """The cost from which every later recommendation is the best (regret within `tol`)."""
    stable = budget
    for c, r in zip(reversed(trace.costs), reversed(trace.regrets), strict=True):
        if r > tol:
            break
        stable = c
    return stable


def _standing(costs: list[float], values: list[float], cost: float, default: float) -> float:
    """The value recorded after the last trial paid for once `cost` has been spent."""
    standing = [v for c, v in zip(costs, values, strict=True) if c <= cost + 1e-9]
    return standing[-1] if standing else default


def regret_at(trace: Trace, cost: float, uninformed: float) -> float:
    """Regret of the recommendation standing once `cost` has been spent."""
    return _standing(trace.costs, trace.regrets, cost, uninformed)


def coverage_at(traces: list[Trace], cost: float) -> float:
    """The share of seeds whose pick standing once `cost` has been spent lay within its
    predicted ±2 sd, among those whose pick then came with an sd (NaN when none did)."""
    return _mean_finite(
        [_standing(t.costs, t.covered, cost, math.nan) for t in traces if t.covered]
    )


def seed_measures(
    traces: list[Trace], problem: Problem, budget: float, uninformed: float
) -> dict[str, dict[str, list[float]]]:
    """Per method, the verdict's measures seed by seed: the cost from which the pick stays
    the best (`STAYS`) and the final regret (`FINAL`), the columns whose medians they are."""
    tol = best_tolerance(problem, uninformed)
    measures: dict[str, dict[str, list[float]]] = {}
    for t in traces:
        m = measures.setdefault(t.method, {STAYS: [], FINAL: []})
        m[STAYS].append(_stable_cost(t, budget, tol))
        m[FINAL].append(t.regrets[-1] if t.regrets else uninformed)
    return measures


def summarise(
    traces: list[Trace],
    problem: Problem,
    budget: float,
    uninformed: float,
    per_seed: dict[str, dict[str, list[float]]] | None = None,
) -> list[dict]:
    """One row per method (see SUMMARY_COLUMNS); costs in target-run units. `per_seed` is
    `seed_measures` of the same traces, where the caller has it already."""
    rows = []
    best = abs(problem.best) or 1.0
    tol = best_tolerance(problem, uninformed)
    per_seed = per_seed or seed_measures(traces, problem, budget, uninformed)
    for method in per_seed:
        ts = [t for t in traces if t.method == method]
        hit = [_first_cost(t.costs, [r <= tol for r in t.regrets], budget) for t in ts]
        flops_hit = [
            _first_cost(t.flops_costs, [r <= tol for r in t.regrets], math.nan) for t in ts
        ]
        within = {
            p: [_first_cost(t.costs, [r <= p * best for r in t.regrets], budget) for t in ts]
            for p in (0.005, 0.01)
        }
        q25, q50, q75 = np.percentile(hit, [25, 50, 75])
        stable = per_seed[method][STAYS]
        row = {
            "method": method,
            "seeds": len(ts),
            "budget": budget,
            "reached_best": sum(any(r <= tol for r in t.regrets) for t in ts) / len(ts),
            "cost_to_best_median": q50,
            "cost_to_best_q25": q25,
            "cost_to_best_q75": q75,
            "cost_to_0.5pct_median": float(np.median(within[0.005])),
            "cost_to_1pct_median": float(np.median(within[0.01])),
            **{
                f"regret_at_{b}": float(np.median([regret_at(t, b, uninformed) for t in ts]))
                for b in REGRET_BUDGETS
            },
            "cost_to_best_stable_median": float(np.median(stable)),
            # A median hides a method that settles early on some seeds and on the wrong
            # mixture on the rest: the upper quartile and the share ending on the best show it.
            "cost_to_best_stable_q75": float(np.percentile(stable, 75)),
            "ends_on_best": sum(bool(t.regrets) and t.regrets[-1] <= tol for t in ts) / len(ts),
            "final_regret_median": float(np.median(per_seed[method][FINAL])),
            "sec_per_proposal_median": float(
                np.median([s for t in ts for s in t.seconds] or [0.0])
            ),
            "trials_median": float(np.median([len(t.costs) for t in ts])),
            "cost_to_best_median_flops": float(np.nanmedian(flops_hit))
            if not all(math.isnan(x) for x in flops_hit)
            else math.nan,
            "pick_changes_median": float(
                np.median(
                    [sum(a != b for a, b in zip(t.picks, t.picks[1:], strict=False)) for t in ts]
                )
            ),
            "coverage_2sd": _mean_finite([c for t in ts for c in t.covered]),
            **{f"coverage_at_{c:g}": coverage_at(ts, c) for c in COVERAGE_COSTS},
        }
        rows.append(row)
    return rows


def _mean_finite(xs: list[float]) -> float:
    finite = [x for x in xs if math.isfinite(x)]
    return float(np.mean(finite)) if finite else math.nan


def exit_on_sigterm() -> None:
    """Make SIGTERM (a `kill`, a `timeout`) raise SystemExit in the bench's own process, so
    that it unwinds and ends its pool's workers. By default Python ends at once, and the
    workers, orphaned, run their studies to the end."""
    signal.signal(signal.SIGTERM, _raise_exit)


def _raise_exit(signum: int, frame: object) -> NoReturn:
    raise SystemExit(128 + signum)


_STORE: Path | None = None
"""The folder of the study a pool worker is running now (its throwaway store)."""


def _worker_ends_on_sigterm() -> None:
    """A pool worker's SIGTERM: remove the running study's store and end at once. Not an
    exception: one raised from a signal handler is lost ("Exception ignored") when it lands
    in a finaliser, as it does in MLflow's, and the worker would run on."""
    signal.signal(signal.SIGTERM, _end_worker)


def _end_worker(signum: int, frame: object) -> NoReturn:
    if _STORE is not None:
        shutil.rmtree(_STORE, ignore_errors=True)
    os._exit(128 + signum)


def _job(args: tuple[str, dict, str, int, int]) -> Trace:
    name, byo, method, seed, concurrent = args
    import logging

    import torch

    torch.set_num_threads(1)
    # Each GP method's throwaway store would announce its schema migration.
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    return run_one(load_problem(name, **byo), method, seed, concurrent)


def run_bench(
    name: str,
    seeds: int,
    out: Path,
    methods: list[str] | None = None,
    workers: int | None = None,
    byo: dict | None = None,
    log=print,  # type: ignore[no-untyped-def]
    concurrent: int = 1,
    first_seed: int = 0,
) -> list[dict]:
    """Run every method for `seeds` seeds (from `first_seed` on: more seeds for an earlier
    run, judged together by `judge`), write results.csv, summary.csv and plots to `out`, log
    them to MLflow as a study-comparison run, and return the summary rows."""
    byo = byo or {}
    problem = load_problem(name, **byo)
    methods = methods or list(METHODS)
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"unknown methods {unknown}; known: {', '.join(METHODS)}")
    out.mkdir(parents=True, exist_ok=True)
    budget = problem.config.budget.max_cost or math.inf
    # Seed by seed, every method in turn: the time left can be told from the jobs done, and
    # a bench stopped early has every method on its first seeds.
    jobs = [
        (name, byo, m, s, concurrent)
        for s in range(first_seed, first_seed + seeds)
        for m in methods
    ]
    workers = workers or min(len(jobs), os.cpu_count() or 1)
    log(
        f"bench {problem.name}: {len(methods)} methods x {seeds} seeds, budget {budget:g} "
        f"target-run units, best target value {problem.best:.4f}, {workers} workers"
    )
    traces: list[Trace] = []
    t0 = time.perf_counter()
    # Each worker ends on SIGTERM at once, removing its study's store. On the normal path the
    # workers drain the queue and exit, and are never sent it.
    with ProcessPoolExecutor(
        workers, mp_context=mp.get_context("spawn"), initializer=_worker_ends_on_sigterm
    ) as pool:
        try:
            for done in as_completed([pool.submit(_job, job) for job in jobs]):
                trace = done.result()
                traces.append(trace)
                final = trace.regrets[-1] if trace.regrets else math.nan
                elapsed = time.perf_counter() - t0
                left = elapsed / len(traces) * (len(jobs) - len(traces))
                log(
                    f"  [{len(traces)}/{len(jobs)}] {trace.method:<10} seed {trace.seed:<3} "
                    f"{len(trace.costs):>3} trials, final regret {final:.4f} "
                    f"({elapsed:.0f} s, about {left:.0f} s left)"
                )
        except BaseException:
            # A kill, a timeout or a failed job: end the workers now. Shutting the pool down
            # would wait for their running studies; with the workers gone it does not wait.
            for child in mp.active_children():
                child.terminate()
            pool.shutdown(wait=False, cancel_futures=True)
            raise
    traces.sort(key=lambda t: (methods.index(t.method), t.seed))
    uninformed = _uninformed_regret(problem)
    rows, judged = _scored(traces, problem, budget, uninformed)
    _write(out, traces, rows)
    from admire.plots import plot_best_so_far, plot_coverage, plot_fidelity_usage

    plot_best_so_far(traces, budget, uninformed, out / "best_so_far.png", problem.name)
    plot_fidelity_usage(traces, problem, out / "fidelity_usage.png")
    plot_coverage(traces, budget, out / "coverage.png", problem.name)
    _log_mlflow(problem, out, rows, range(first_seed, first_seed + seeds))
    if judged is not None:
        _write_table(out / "verdict.csv", VERDICT_COLUMNS, [judged])
        log(format_verdict([judged]))
    return rows


def judge(name: str, folders: list[Path], byo: dict | None = None) -> dict | None:
    """The verdict on problem `name` from the results.csv of one or more bench runs (their
    methods and seeds together, each seed of a method from one run only), or None without
    admire or a rival."""
    problem = load_problem(name, **(byo or {}))
    traces: list[Trace] = []
    found: dict[tuple[str, int], Path] = {}
    for folder in folders:
        path = folder / "results.csv"
        if not path.is_file():
            raise ValueError(f"{path}: no such file (a bench run's --out folder holds one)")
        mine = read_traces(path)
        sizes = {f.model_size for f in problem.config.fidelities.grid()}
        for t in mine:
            if not set(t.fidelities) <= sizes:
                raise ValueError(
                    f"{path}: {t.method} seed {t.seed} ran model sizes "
                    f"{sorted(set(t.fidelities) - sizes)} that {problem.name} does not have: "
                    "a run of another problem?"
                )
            if (t.method, t.seed) in found:
                raise ValueError(
                    f"{t.method} seed {t.seed} is in both {found[t.method, t.seed]} and {path}"
                )
            found[t.method, t.seed] = path
        traces += mine
    budget = problem.config.budget.max_cost or math.inf
    return _scored(traces, problem, budget, _uninformed_regret(problem))[1]


def _scored(
    traces: list[Trace], problem: Problem, budget: float, uninformed: float
) -> tuple[list[dict], dict | None]:
    """The summary rows and the verdict of `traces`, from one pass over their seeds."""
    per_seed = seed_measures(traces, problem, budget, uninformed)
    rows = summarise(traces, problem, budget, uninformed, per_seed)
    return rows, verdict(problem.name, rows, per_seed)


def run_suite(
    seeds: int,
    out: Path,
    methods: list[str] | None = None,
    workers: int | None = None,
    problems: list[str] | None = None,
    log=print,  # type: ignore[no-untyped-def]
    first_seed: int = 0,
) -> list[dict]:
    """Every method on every suite problem (`problems.SUITE`): one folder per problem as
    `run_bench` writes it, and `summary.csv` with one row per (problem, method)."""
    start = time.perf_counter()
    rows = []
    for name in problems or SUITE:
        rows += [
            {"problem": name, **r}
            for r in run_bench(
                name, seeds, out / name, methods, workers, log=log, first_seed=first_seed
            )
        ]
    _write_table(out / "summary.csv", ["problem", *SUMMARY_COLUMNS], rows)
    log(f"suite: {len(rows)} rows in {time.perf_counter() - start:.0f} s -> {out / 'summary.csv'}")
    verdicts = [
        v
        for name in dict.fromkeys(r["problem"] for r in rows)
        if (v := judge(name, [out / name])) is not None
    ]
    if verdicts:
        _write_table(out / "verdict.csv", VERDICT_COLUMNS, verdicts)
        log(format_verdict(verdicts))
    return rows


def _write_table(path: Path, columns: list[str], rows: list[dict]) -> None:
    """Rows as a CSV, floats to six significant digits."""
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=columns)
        w.writeheader()
        for row in rows:
            w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})


def _uninformed_regret(problem: Problem) -> float:
    if problem.target_pool is not None:
        return float(np.mean([problem.truth(w) for w in problem.target_pool]) - problem.best)
    from admire.space import MixtureSpace

    cloud = MixtureSpace.from_domains(list(problem.config.domains)).sample(256, seed=7)
    return float(np.mean([problem.truth(w) for w in cloud]) - problem.best)


def _write(out: Path, traces: list[Trace], rows: list[dict]) -> None:
    with (out / "results.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(
            [
                "method",
                "seed",
                "trial",
                "fidelity",
                "cost",
                "cost_flops",
                "regret",
                "seconds",
                "covered",
            ]
        )
        for t in traces:
            for i, (c, f, r, fid, s, cov) in enumerate(
                zip(
                    t.costs,
                    t.flops_costs,
                    t.regrets,
                    t.fidelities,
                    t.seconds,
                    t.covered,
                    strict=True,
                )
            ):
                # covered: 1 or 0 when the pick came with an sd, empty when it did not.
                inside = "" if math.isnan(cov) else int(cov)
                w.writerow(
                    [
                        t.method,
                        t.seed,
                        i,
                        fid,
                        f"{c:.6g}",
                        f"{f:.6g}",
                        f"{r:.6g}",
                        f"{s:.4g}",
                        inside,
                    ]
                )
    _write_table(out / "summary.csv", SUMMARY_COLUMNS, rows)


def read_traces(path: Path) -> list[Trace]:
    """The traces a bench run wrote to `path` (its results.csv), in its order; the picks
    themselves are not written, so `Trace.picks` is empty."""
    traces: dict[tuple[str, int], Trace] = {}
    with path.open(newline="") as fh:
        for row in csv.DictReader(fh):
            key = (row["method"], int(row["seed"]))
            if key not in traces:
                traces[key] = Trace(key[0], key[1], [], [], [], [], [])
            t = traces[key]
            t.costs.append(float(row["cost"]))
            t.flops_costs.append(float(row["cost_flops"]))
            t.regrets.append(float(row["regret"]))
            t.fidelities.append(row["fidelity"])
            t.seconds.append(float(row["seconds"]))
            t.covered.append(float(row["covered"]) if row["covered"] else math.nan)
    return list(traces.values())


def format_summary(rows: list[dict], columns: list[str] | None = None) -> str:
    """The summary as an aligned text table (all columns, or `columns`)."""
    cols = columns or list(rows[0])
    cells = [[f"{r[c]:.4g}" if isinstance(r[c], float) else str(r[c]) for c in cols] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    lines = ["  ".join(c.rjust(w) for c, w in zip(cols, widths, strict=True))]
    lines += ["  ".join(x.rjust(w) for x, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(lines)


def _log_mlflow(problem: Problem, out: Path, rows: list[dict], seeds: range) -> None:
    from mlflow.tracking import MlflowClient

    from admire.tracking import resolve_tracking_uri

    client = MlflowClient(resolve_tracking_uri())
    name = f"bench-{problem.name}"
    exp = client.get_experiment_by_name(name)
    exp_id = exp.experiment_id if exp is not None else client.create_experiment(name)
    label = f"{len(seeds)}seeds" if seeds.start == 0 else f"seeds{seeds.start}-{seeds.stop - 1}"
    run = client.create_run(
        exp_id, run_name=f"{problem.name}-{label}", tags={"admire.kind": "bench"}
    )
    rid = run.info.run_id
    client.log_param(rid, "problem", problem.name)
    client.log_param(rid, "seeds", len(seeds))
    client.log_param(rid, "first_seed", seeds.start)
    for row in rows:
        for k, v in row.items():
            if isinstance(v, float | int) and k != "seeds" and math.isfinite(float(v)):
                client.log_metric(rid, f"{row['method']}.{k}", float(v))
    for f in (
        "results.csv",
        "summary.csv",
        "best_so_far.png",
        "fidelity_usage.png",
        "coverage.png",
    ):
        client.log_artifact(rid, str(out / f))
    client.set_terminated(rid)
