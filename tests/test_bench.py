"""The benchmark protocol: no peeking, costs that add up, reproducible seeds, the outputs."""

from __future__ import annotations

import csv
import dataclasses
import math
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil
import pytest

from admire.bench.harness import (
    SUMMARY_COLUMNS,
    Trace,
    _scratch,
    _write,
    coverage_at,
    judge,
    read_traces,
    run_bench,
    run_one,
    run_suite,
    summarise,
)
from admire.bench.methods import METHODS
from admire.bench.problems import Problem, load_problem
from admire.config import Budget, OptimizerConfig
from admire.runners.replay import ReplayRunner, RunTable
from admire.trial import TrialSpec


class _Guarded:
    """A table's values that raise when read outside a paid trial."""

    def __init__(self, values: np.ndarray) -> None:
        self.values = values
        self.paying = False

    def __getitem__(self, index):  # type: ignore[no-untyped-def]
        if not self.paying:
            raise AssertionError("a method read a true value it has not paid for")
        return self.values[index]

    def __len__(self) -> int:
        return len(self.values)


class _GuardedReplay(ReplayRunner):
    def run(self, spec):  # type: ignore[no-untyped-def]
        self.table.values.paying = True
        try:
            return super().run(spec)
        finally:
            self.table.values.paying = False


def _small(problem: Problem, max_cost: float, max_trials: int) -> Problem:
    config = problem.config.model_copy(
        update={
            "budget": Budget(max_cost=max_cost, max_trials=max_trials),
            "optimizer": OptimizerConfig(n_initial=4, n_candidates=64),
        }
    )
    return dataclasses.replace(problem, config=config)


@pytest.fixture(scope="module")
def guarded_pile() -> Problem:
    problem = _small(load_problem("pile-pool"), max_cost=2.5, max_trials=8)
    table = RunTable.load("regmix-pile")
    guarded = dataclasses.replace(table, values=_Guarded(table.values))
    return dataclasses.replace(problem, make_runner=lambda: _GuardedReplay(guarded, problem.config))


@pytest.mark.parametrize("method", list(METHODS))
def test_no_method_reads_an_unpaid_value_and_costs_add_up(
    guarded_pile: Problem, method: str
) -> None:
    trace = run_one(guarded_pile, method, seed=0)
    assert trace.costs, "the method ran no trial"
    unit = {f.model_size: c for f, c in guarded_pile.costs.items()}
    assert trace.costs[-1] == pytest.approx(sum(unit[f] for f in trace.fidelities))
    assert all(b >= a for a, b in zip(trace.costs, trace.costs[1:], strict=False))
    assert trace.costs[-1] <= 2.5 + 1e-9 and len(trace.costs) <= 8
    assert min(trace.regrets) >= -1e-12  # nothing beats the best available target value


def test_the_guard_does_catch_a_peek(guarded_pile: Problem) -> None:
    runner = guarded_pile.make_runner()
    with pytest.raises(AssertionError, match="not paid"):
        runner.table.values[0]


@pytest.mark.parametrize("method", ["random", "admire"])
def test_a_seed_reproduces_its_curve(method: str) -> None:
    problem = _small(load_problem("synth-3"), max_cost=2.0, max_trials=8)
    one, two = run_one(problem, method, seed=4), run_one(problem, method, seed=4)
    assert one.costs == two.costs and one.regrets == two.regrets
    assert one.fidelities == two.fidelities


def test_bench_writes_the_summary_plots_and_mlflow_run(
    tmp_path: Path,
    tracking_uri: str,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_uri)
    # The worker process builds its stores' migrated template in a temporary folder of ours.
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setenv("TMPDIR", str(scratch))
    lines: list[str] = []
    rows = run_bench("synth-3", 2, tmp_path, ["random", "regression"], workers=1, log=lines.append)
    assert [r["method"] for r in rows] == ["random", "regression"]
    # Seed by seed, every method in turn, each line telling the time left.
    jobs = [line for line in lines if line.lstrip().startswith("[")]
    assert [line.split()[1:4] for line in jobs] == [
        [m, "seed", s] for s in "01" for m in ("random", "regression")
    ]
    assert all(" s left)" in line for line in jobs) and "about 0 s left" in jobs[-1]
    with (tmp_path / "summary.csv").open() as fh:
        summary = list(csv.DictReader(fh))
    assert list(summary[0]) == SUMMARY_COLUMNS
    assert {r["seeds"] for r in summary} == {"2"}
    with (tmp_path / "results.csv").open() as fh:
        results = list(csv.DictReader(fh))
    assert {(r["method"], r["seed"]) for r in results} == {
        (m, s) for m in ("random", "regression") for s in ("0", "1")
    }
    assert {r["covered"] for r in results} == {""}, "neither method gives its pick an sd"
    for png in ("best_so_far.png", "fidelity_usage.png", "coverage.png"):
        assert (tmp_path / png).read_bytes()[:4] == b"\x89PNG"
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    exp = client.get_experiment_by_name("bench-synth-3")
    run = client.search_runs([exp.experiment_id])[0]
    assert "random.final_regret_median" in run.data.metrics
    assert list(scratch.iterdir()) == [], "the worker left files behind"
    # The worker ran out of jobs and exited: it was not killed, so it printed no traceback.
    assert "Traceback" not in capfd.readouterr().err


def _small_table(path: Path, score: bool = False) -> Path:
    """A slice of the RegMix table as a user's CSV: the 1M runs and all 1B runs; with `score`,
    a score column to maximise (`score.pile_cc` = 10 - `loss.pile_cc`)."""
    src = Path(__file__).resolve().parent.parent / "admire" / "data" / "regmix_pile.csv"
    with src.open() as fh:
        rows = list(csv.DictReader(fh))
    keep = [r for r in rows if r["model_size"] in ("1M", "1B")][:200] + [
        r for r in rows if r["model_size"] == "1B"
    ]
    keep = list({r["run_id"]: r for r in keep}.values())
    fields = list(rows[0])
    if score:
        fields.append("metric.score.pile_cc")
        for r in keep:
            r["metric.score.pile_cc"] = repr(10.0 - float(r["metric.loss.pile_cc"]))
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=fields)
        w.writeheader()
        w.writerows(keep)
    return path


def test_any_run_table_csv_is_a_problem(tmp_path: Path) -> None:
    table = RunTable.load("regmix-pile")
    path = _small_table(tmp_path / "my runs.csv")
    problem = load_problem(str(path), target="1B", objective=["loss.pile_cc"], budget=3.0)
    assert problem.config.fidelities.target.model_size == "1B"
    assert problem.name == "my-runs"  # a file name with a space makes a valid study name
    assert problem.target_pool is not None and len(problem.target_pool) == 64
    assert len(table.domains) == len(problem.config.domain_names)
    trace = run_one(_small(problem, 3.0, 10), "regression", seed=1)
    assert trace.costs[-1] <= 3.0 + 1e-9
    with pytest.raises(ValueError, match="needs --target"):
        load_problem(str(path))


def test_a_maximised_score_is_benched_as_its_negated_loss(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _small_table(tmp_path / "scores.csv", score=True)
    common = {"target": "1B", "budget": 3.0}
    loss = load_problem(str(path), objective=["loss.pile_cc"], **common)
    score = load_problem(str(path), objective=["score.pile_cc"], direction="maximize", **common)
    assert score.config.objective.direction == "maximize"
    # the bench minimises sign * objective: the best score is the best loss, negated
    assert score.best == pytest.approx(loss.best - 10.0)
    for method in ("random", "sf-target"):
        a = run_one(_small(loss, 3.0, 8), method, seed=2)
        b = run_one(_small(score, 3.0, 8), method, seed=2)
        assert b.costs == a.costs
        assert min(b.regrets) >= 0.0
        np.testing.assert_allclose(b.regrets, a.regrets, atol=1e-6)
    from admire.cli import main

    out = tmp_path / "bench"
    argv = ["bench", str(path), "--target", "1B", "--objective", "score.pile_cc"]
    argv += ["--direction", "maximize", "--budget", "2", "--seeds", "2", "--methods", "random"]
    assert main([*argv, "--workers", "1", "--out", str(out)]) == 0
    with (out / "summary.csv").open() as fh:
        (row,) = list(csv.DictReader(fh))
    assert row["method"] == "random" and float(row["final_regret_median"]) >= 0.0


def _row(method: str, stays: float, final: float, budget: float = 20.0) -> dict:
    return {
        "method": method,
        "budget": budget,
        "cost_to_best_stable_median": stays,
        "final_regret_median": final,
    }


def test_the_verdict_is_against_the_best_other_method_per_problem() -> None:
    from admire.bench.verdict import format_verdict, verdict

    rows = [
        _row("admire", 0.03, 0.0),
        _row("admire-nocheck", 0.01, 0.0),  # an ablation is admire itself, not a rival
        _row("sf-cheap", 0.05, 0.0),
        _row("regression", 3.5, 0.0),
        _row("admire-ref", 19.0, 0.0),
    ]
    v = verdict("pile-pool", rows)
    assert v is not None and v["measure"] == "stays-from" and v["best_other"] == "sf-cheap"
    assert v["ratio"] == pytest.approx(0.6) and v["meets"]
    assert v["vs_admire_ref"] == pytest.approx(0.03 / 19.0)
    # no pick ever settles on the best: the final regrets decide, and 1.69x is not met
    unsettled = [_row("admire", 10, 0.0914, 10), _row("sf-target", 10, 0.054, 10)]
    w = verdict("pile-continuous", unsettled)
    assert w is not None and w["measure"] == "final regret" and not w["meets"]
    assert w["ratio"] == pytest.approx(0.0914 / 0.054)
    assert verdict("x", [_row("random", 20, 0.1)]) is None
    text = format_verdict([v, w])
    assert "pile-pool" in text and "NOT met" in text and text.endswith("met on 1 of 2 problems")


def _settling(method: str, settles_at: list[int], budget: int = 10, first: int = 0) -> list[Trace]:
    """One trace per seed (from seed `first`): a trial per unit of cost, the pick the best
    (regret 0) from the unit in `settles_at` on, wrong (0.3) before."""
    costs = [float(c) for c in range(1, budget + 1)]
    return [
        Trace(
            method,
            seed,
            costs,
            [c * 1e9 for c in costs],
            [0.3 if c < at else 0.0 for c in costs],
            ["L"] * budget,
            [0.25] * budget,
            covered=[float(c >= at) for c in costs],
        )
        for seed, at in enumerate(settles_at, start=first)
    ]


def test_a_verdict_joins_bench_runs_made_apart(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """admire's run and a rival's, made by separate `bench` commands, judged together from
    their results.csv: the same verdict as one run of both, with its bootstrap interval."""
    from admire.bench.verdict import verdict
    from admire.cli import main

    mine, theirs = _settling("admire", [1, 2, 3]), _settling("sf-target", [4, 4, 8])
    for name, traces in (("a", mine), ("b", theirs)):
        (tmp_path / name).mkdir()
        _write(tmp_path / name, traces, [])
    assert read_traces(tmp_path / "a" / "results.csv") == mine
    judged = judge("synth-3", [tmp_path / "a", tmp_path / "b"])
    assert judged is not None and judged["measure"] == "stays-from"
    assert judged["best_other"] == "sf-target" and judged["ratio"] == pytest.approx(0.5)
    # medians of three resampled seeds: 1, 2 or 3 against 4 or 8
    assert 0.125 <= judged["ratio_lo"] < 0.5 < judged["ratio_hi"] <= 0.75
    problem = load_problem("synth-3")
    rows = summarise(mine + theirs, problem, 10.0, 0.3)
    assert verdict("synth-3", rows)["ratio"] == judged["ratio"]
    assert main(["verdict", "synth-3", str(tmp_path / "a"), str(tmp_path / "b")]) == 0
    line = capsys.readouterr().out.splitlines()[1]
    assert "ratio 0.5 [" in line and line.endswith(" met") and "NOT" not in line
    # more seeds of admire, from a later run (`bench --first-seed 3`), join the first three
    (tmp_path / "c").mkdir()
    _write(tmp_path / "c", _settling("admire", [1, 1, 2], first=3), [])
    more = judge("synth-3", [tmp_path / "a", tmp_path / "c", tmp_path / "b"])
    assert more is not None and more["ratio"] == pytest.approx(1.5 / 4)
    assert main(["verdict", "synth-3", str(tmp_path / "a"), str(tmp_path / "a")]) == 2
    assert "admire seed 0 is in both" in capsys.readouterr().err
    assert main(["verdict", "synth-3", str(tmp_path / "a"), str(tmp_path / "d")]) == 2
    assert "no such file" in capsys.readouterr().err
    assert main(["verdict", "synth-3", str(tmp_path / "a")]) == 2
    assert "at least one other method" in capsys.readouterr().err
    # synth-3's sizes are S, M and L: pile-pool's are 1M, 60M and 1B
    assert main(["verdict", "pile-pool", str(tmp_path / "a"), str(tmp_path / "b")]) == 2
    assert "ran model sizes ['L'] that pile-pool does not have" in capsys.readouterr().err


def test_the_suite_judges_each_problem_from_its_results(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tracking_uri: str
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_uri)
    lines: list[str] = []
    rows = run_suite(1, tmp_path, ["random", "admire"], 2, ["synth-3"], log=lines.append)
    assert [(r["problem"], r["method"]) for r in rows] == [
        ("synth-3", "random"),
        ("synth-3", "admire"),
    ]
    with (tmp_path / "verdict.csv").open() as fh:
        (v,) = list(csv.DictReader(fh))
    assert v["problem"] == "synth-3" and v["best_other"] == "random"
    # one seed: nothing to resample, the interval is the ratio itself
    assert float(v["ratio_lo"]) == float(v["ratio"]) == float(v["ratio_hi"])
    assert any(line.startswith("verdict") for line in lines)


def test_a_bench_can_run_later_seeds(tmp_path: Path, tracking_uri: str) -> None:
    from admire.cli import main

    out = tmp_path / "more"
    argv = ["bench", "synth-3", "--seeds", "2", "--first-seed", "5", "--methods", "random"]
    argv += ["--workers", "1", "--out", str(out), "--tracking-uri", tracking_uri]
    assert main(argv) == 0
    assert {t.seed for t in read_traces(out / "results.csv")} == {5, 6}
    for wrong in (["--first-seed", "-1"], ["--seeds", "0"]):
        with pytest.raises(SystemExit) as bad:
            main(["bench", "synth-3", *wrong])
        assert bad.value.code == 2


def test_the_ratio_interval_resamples_each_methods_seeds() -> None:
    from admire.bench.verdict import ratio_interval

    same = [0.1 * i for i in range(1, 21)]
    lo, hi = ratio_interval(same, same)
    assert lo < 1.0 < hi
    assert ratio_interval(same, same) == (lo, hi), "a fixed seed: the same interval again"
    apart = ratio_interval([1.0] * 10 + [2.0] * 10, [4.0] * 10 + [8.0] * 10)
    assert apart[1] < 1.0
    # the rival is exact (0) where admire is not: infinitely worse, not NaN
    assert ratio_interval([0.1, 0.2], [0.0, 0.0]) == (np.inf, np.inf)
    assert ratio_interval([0.0, 0.0], [0.0, 0.0]) == (1.0, 1.0)


def test_the_summary_shows_seeds_that_end_on_the_wrong_mixture() -> None:
    """Three seeds settle on the best early, two never do: the median stays-from cost is
    early, the upper quartile is the whole budget and two seeds in five end wrong."""
    problem = load_problem("synth-3")

    def trace(seed: int, regrets: list[float]) -> Trace:
        n = len(regrets)
        costs = [0.1 * (i + 1) for i in range(n)]
        return Trace("m", seed, costs, costs, regrets, ["S"] * n, [0.0] * n)

    traces = [trace(s, [0.3, 0.0, 0.0, 0.0]) for s in range(3)]
    traces += [trace(s, [0.3, 0.0, 0.0, 0.2]) for s in (3, 4)]
    (row,) = summarise(traces, problem, budget=10.0, uninformed=0.3)
    assert row["cost_to_best_stable_median"] == pytest.approx(0.2)
    assert row["cost_to_best_stable_q75"] == 10.0
    assert row["ends_on_best"] == 0.6 and row["reached_best"] == 1.0


def test_coverage_is_told_at_each_cost_from_the_picks_standing_then() -> None:
    """Seed 0's first pick comes with no sd, then one that holds its truth, then one that
    misses; seed 1 pays nothing before 0.05. At each cost the share counts only the seeds
    whose standing pick has an sd, and the summary carries it at `COVERAGE_COSTS`."""
    nan = math.nan

    def trace(seed: int, costs: list[float], covered: list[float]) -> Trace:
        n = len(costs)
        return Trace("m", seed, costs, costs, [0.1] * n, ["S"] * n, [0.0] * n, [], covered)

    traces = [trace(0, [0.001, 0.5, 2.0], [nan, 1.0, 0.0]), trace(1, [0.05, 3.0], [0.0, 1.0])]
    assert math.isnan(coverage_at(traces, 0.01))
    assert [coverage_at(traces, c) for c in (0.1, 1.0, 10.0)] == [0.0, 0.5, 0.5]
    (row,) = summarise(traces, load_problem("synth-3"), budget=10.0, uninformed=0.3)
    assert math.isnan(row["coverage_at_0.01"]) and row["coverage_at_1"] == 0.5
    assert row["coverage_2sd"] == pytest.approx(0.5)


@pytest.mark.parametrize(
    ("name", "faithful"),
    [
        ("synth-pool", True),
        ("synth-mislead-pool", False),
        ("synth-sweep", False),
        ("synth-steps", True),
    ],
)
def test_a_sweep_of_sizes_and_steps_is_a_pool_with_checkpoints(name: str, faithful: bool) -> None:
    problem = load_problem(name)
    runner = problem.make_runner()
    pool = runner.pool()
    assert pool is not None
    fids = problem.config.fidelities
    cheap = min(fids.grid(), key=lambda f: problem.costs[f])
    steps = sorted(
        (f for f in fids.grid() if f.model_size == cheap.model_size), key=lambda f: f.tokens
    )
    full_cheap = steps[-1]
    at = {f: [p for p in pool if p.fidelity == f] for f in fids.grid()}
    # Every target mixture was also trained at the cheapest size.
    pairs = [
        (p, next(q for q in at[full_cheap] if np.abs(q.weights - p.weights).max() < 1e-12))
        for p in at[fids.target]
    ]
    assert len(pairs) == len(at[fids.target]) <= len(at[full_cheap])
    values = dict(zip(runner.table.run_ids, runner.table.values[:, 0], strict=True))
    target_y = np.array([values[p.pool_id] for p, _ in pairs])
    cheap_y = np.array([values[q.pool_id] for _, q in pairs])
    assert target_y.min() == pytest.approx(problem.best)
    transferred = target_y[np.argmin(cheap_y)] - problem.best
    assert (transferred == 0.0) if faithful else (transferred > 0.05)
    # A full run answers with every checkpoint of the run as its curve.
    row = at[full_cheap][0]
    weights = dict(zip(problem.config.domain_names, row.weights, strict=True))
    curve = runner.run(TrialSpec(0, weights, full_cheap, 0, row.pool_id)).curve
    assert [t for t, _ in curve] == [int(f.tokens) for f in steps]
    checkpoints = [next(p for p in at[f] if p.run == row.run) for f in steps[:-1]]
    assert [v["loss"] for _, v in curve[:-1]] == [values[p.pool_id] for p in checkpoints]


def test_a_killed_bench_takes_its_worker_processes_with_it(tmp_path: Path) -> None:
    """SIGTERM to `admire bench` (a `kill`, a `timeout`) ends its pool's workers too, and
    they remove their studies' throwaway stores: left behind, each worker would run its
    studies to the end on a machine the user thinks is free."""
    scratch = Path(_scratch() or tempfile.gettempdir())
    command = [sys.executable, "-m", "admire", "bench", "synth-3", "--seeds", "4"]
    command += ["--methods", "admire", "--workers", "2", "--out", str(tmp_path / "out")]
    command += ["--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}"]
    bench = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    parent = psutil.Process(bench.pid)
    deadline = time.monotonic() + 120
    workers: list[psutil.Process] = []
    while len(workers) < 2 and time.monotonic() < deadline and bench.poll() is None:
        time.sleep(0.5)
        workers = [p for p in parent.children(recursive=True) if _is_pool_worker(p)]
    assert len(workers) == 2, "the bench's pool did not start"
    ours: set[Path] = set()
    while time.monotonic() < deadline and not ours:
        time.sleep(0.5)  # until a worker's first study has its store open
        ours = _stores(workers, scratch)
    assert ours, "no study started"
    bench.send_signal(signal.SIGTERM)
    assert bench.wait(timeout=60) == 128 + signal.SIGTERM
    _, alive = psutil.wait_procs(workers, timeout=30)
    assert not alive, [p.cmdline() for p in alive]
    assert not (tmp_path / "out" / "summary.csv").exists()
    assert not ours & _dirs(scratch)


def _dirs(folder: Path) -> set[Path]:
    return {p for p in folder.iterdir() if p.is_dir()}


def _stores(workers: list[psutil.Process], scratch: Path) -> set[Path]:
    """The folders in `scratch` in which the workers hold files open: their studies' stores
    (not those of another bench on the same machine)."""
    found = set()
    for worker in workers:
        try:
            files = worker.open_files()
        except psutil.NoSuchProcess:
            continue
        for f in files:
            path = Path(f.path)
            if path.is_relative_to(scratch) and path != scratch:
                found.add(scratch / path.relative_to(scratch).parts[0])
    return found


def _is_pool_worker(process: psutil.Process) -> bool:
    try:
        return "multiprocessing.spawn" in " ".join(process.cmdline())
    except psutil.NoSuchProcess:  # a helper that came and went between the two calls
        return False
