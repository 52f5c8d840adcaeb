"""The benchmark protocol: no peeking, costs that add up, reproducible seeds, the outputs."""

from __future__ import annotations

import csv
import dataclasses
from pathlib import Path

import numpy as np
import pytest

from admire.bench.harness import SUMMARY_COLUMNS, run_bench, run_one
from admire.bench.methods import METHODS
from admire.bench.problems import Problem, load_problem
from admire.config import Budget, OptimizerConfig
from admire.runners.replay import ReplayRunner, RunTable


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
    tmp_path: Path, tracking_uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_uri)
    rows = run_bench(
        "synth-3", 2, tmp_path, ["random", "regression"], workers=1, log=lambda _: None
    )
    assert [r["method"] for r in rows] == ["random", "regression"]
    with (tmp_path / "summary.csv").open() as fh:
        summary = list(csv.DictReader(fh))
    assert list(summary[0]) == SUMMARY_COLUMNS
    assert {r["seeds"] for r in summary} == {"2"}
    with (tmp_path / "results.csv").open() as fh:
        results = list(csv.DictReader(fh))
    assert {(r["method"], r["seed"]) for r in results} == {
        (m, s) for m in ("random", "regression") for s in ("0", "1")
    }
    for png in ("best_so_far.png", "fidelity_usage.png"):
        assert (tmp_path / png).read_bytes()[:4] == b"\x89PNG"
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    exp = client.get_experiment_by_name("bench-synth-3")
    run = client.search_runs([exp.experiment_id])[0]
    assert "random.final_regret_median" in run.data.metrics


def test_any_run_table_csv_is_a_problem(tmp_path: Path) -> None:
    table = RunTable.load("regmix-pile")
    src = Path(__file__).resolve().parent.parent / "admire" / "data" / "regmix_pile.csv"
    with src.open() as fh:
        rows = list(csv.DictReader(fh))
    keep = [r for r in rows if r["model_size"] in ("1M", "1B")][:200] + [
        r for r in rows if r["model_size"] == "1B"
    ]
    keep = list({r["run_id"]: r for r in keep}.values())
    path = tmp_path / "my runs.csv"
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(keep)
    problem = load_problem(str(path), target="1B", objective=["loss.pile_cc"], budget=3.0)
    assert problem.config.fidelities.target.model_size == "1B"
    assert problem.name == "my-runs"  # a file name with a space makes a valid study name
    assert problem.target_pool is not None and len(problem.target_pool) == 64
    assert len(table.domains) == len(problem.config.domain_names)
    trace = run_one(_small(problem, 3.0, 10), "regression", seed=1)
    assert trace.costs[-1] <= 3.0 + 1e-9
    with pytest.raises(ValueError, match="needs --target"):
        load_problem(str(path))
