"""Several trials at once: the optimiser proposes knowing what is in flight, the budget counts
in-flight cost, every trial lands in MLflow once, and the study is reproducible."""

from __future__ import annotations

import threading
import time

from admire.config import parse_config
from admire.runners.replay import ReplayRunner, RunTable
from admire.study import Study
from admire.trial import TrialResult, TrialSpec
from tests.conftest import pile_config


class _SlowReplay(ReplayRunner):
    """The replay runner with a pause per trial, recording how many run at once."""

    def __init__(self, *args, pause: float = 0.3, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(*args, **kwargs)
        self.pause = pause
        self.lock = threading.Lock()
        self.running = 0
        self.most = 0

    def run(self, spec: TrialSpec) -> TrialResult:
        with self.lock:
            self.running += 1
            self.most = max(self.most, self.running)
        try:
            time.sleep(self.pause)
            return super().run(spec)
        finally:
            with self.lock:
                self.running -= 1


def _study(tracking_uri: str, **budget: float) -> tuple[Study, _SlowReplay]:
    config = parse_config(
        pile_config(
            budget=budget,
            optimizer={"n_initial": 3, "n_candidates": 64},
            runner={"kind": "replay", "table": "regmix-pile", "mode": "pool", "workers": 4},
        )
    )
    runner = _SlowReplay(RunTable.load("regmix-pile"), config)
    return Study.create(config, tracking_uri=tracking_uri, runner=runner), runner


def test_four_workers_run_trials_at_once_and_lose_none(tracking_uri: str) -> None:
    study, runner = _study(tracking_uri, max_trials=8, max_cost=20.0)
    assert study.workers == 4
    study.optimize(progress=False)
    trials = study.trials
    assert [t.spec.index for t in trials] == list(range(8))
    assert all(t.state == "COMPLETED" for t in trials)
    assert 2 <= runner.most <= 4
    ids = [t.spec.pool_id for t in trials]
    assert len(set(ids)) == len(ids), "a pool row was proposed twice while in flight"


def test_the_cost_budget_counts_trials_in_flight(tracking_uri: str) -> None:
    study, _ = _study(tracking_uri, max_trials=12, max_cost=1.5)
    study.optimize(progress=False)
    # At most one trial per worker past the budget, each at most one target run (cost 1).
    assert study.spent() <= 1.5 + 4 * 1.0


def test_workers_give_the_same_study_every_time(tracking_uri: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    one, _ = _study(tracking_uri, max_trials=6, max_cost=20.0)
    one.optimize(progress=False)
    (tmp_path / "mlruns-2").mkdir()
    two, _ = _study(f"sqlite:///{tmp_path / 'mlruns-2' / 'mlflow.db'}", max_trials=6, max_cost=20.0)
    two.optimize(progress=False)
    assert [t.spec for t in one.trials] == [t.spec for t in two.trials]
