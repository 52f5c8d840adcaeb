"""Failed trials: each way a trial dies (the runner raises, a NaN, a real trial process
SIGKILLed, its timeout) leaves a FAILED run with the reason and is retried with the same spec;
retries are counted in MLflow across resumes; a study whose trials keep failing stops with one
line; a failed trial costs something."""

from __future__ import annotations

import math
import os
import signal
import threading
import time
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

from admire import Study, TooManyFailuresError
from admire.cli import main
from admire.config import load_config, parse_config
from admire.runners.replay import ReplayRunner, RunTable
from admire.tracking import ATTEMPT_TAG, COMPLETED, FAILED, RETRY_OF_TAG
from admire.trial import TrialResult, TrialSpec
from tests.conftest import STUDIES, pile_config


class _Flaky(ReplayRunner):
    """The replay runner, failing the calls that `fails(call number, spec)` picks: by raising,
    with a NaN metric, or with a failed result that measured `cost_share` of the row's cost."""

    def __init__(self, *args, fails, how: str = "raise", cost_share: float = 0.5, **kwargs):  # type: ignore[no-untyped-def]
        super().__init__(*args, **kwargs)
        self.fails, self.how, self.cost_share = fails, how, cost_share
        self.calls = 0
        self.lock = threading.Lock()

    def run(self, spec: TrialSpec) -> TrialResult:
        with self.lock:
            call, self.calls = self.calls, self.calls + 1
        result = super().run(spec)
        if not self.fails(call, spec):
            return result
        if self.how == "raise":
            raise RuntimeError(f"boom in call {call}")
        if self.how == "nan":
            result.metrics["loss.arxiv"] = math.nan
            return result
        return TrialResult({}, result.cost * self.cost_share, failed=True, error="it broke")


def _study(tracking_uri: str, fails, how: str = "raise", **sections):  # type: ignore[no-untyped-def]
    data = pile_config(
        budget={"max_trials": 4, "max_cost": 20.0},
        optimizer={"n_initial": 3, "n_candidates": 64},
    )
    for key, value in sections.items():
        data[key] = {**data[key], **value}
    config = parse_config(data)
    flaky = _Flaky(RunTable.load("regmix-pile"), config, fails=fails, how=how)
    return Study.create(config, tracking_uri=tracking_uri, runner=flaky), flaky


def _same_trial(a: TrialSpec, b: TrialSpec) -> bool:
    return (a.weights, a.fidelity, a.seed, a.pool_id) == (b.weights, b.fidelity, b.seed, b.pool_id)


@pytest.mark.parametrize(
    ("how", "reason"),
    [("raise", "RuntimeError: boom in call 1"), ("nan", "non-finite ['loss.arxiv']")],
)
def test_a_failed_trial_is_recorded_with_its_reason_and_retried(
    tracking_uri: str, how: str, reason: str
) -> None:
    study, _ = _study(tracking_uri, lambda call, spec: call == 1, how)
    study.optimize(progress=False)
    t = study.trials
    assert [r.state for r in t] == [COMPLETED, FAILED, COMPLETED, COMPLETED]
    assert reason in t[1].error
    assert (t[2].retry_of, t[2].attempt, t[2].step) == (1, 2, "retry")
    assert _same_trial(t[1].spec, t[2].spec)
    tags = MlflowClient(tracking_uri).get_run(t[2].run_id).data.tags
    assert (tags[RETRY_OF_TAG], tags[ATTEMPT_TAG]) == ("1", "2")
    assert MlflowClient(tracking_uri).get_run(t[1].run_id).info.status == "FAILED"


def test_retries_stop_at_max_retries_and_may_take_a_new_seed(tracking_uri: str) -> None:
    study, _ = _study(
        tracking_uri, lambda call, spec: call < 3, runner={"max_retries": 2, "retry_new_seed": True}
    )
    study.optimize(progress=False)
    t = study.trials
    assert [(r.state, r.retry_of, r.attempt) for r in t] == [
        (FAILED, None, 1),
        (FAILED, 0, 2),
        (FAILED, 0, 3),  # the second and last retry
        (COMPLETED, None, 1),
    ]
    assert t[1].spec.weights == t[0].spec.weights and t[1].spec.seed != t[0].spec.seed


def test_no_retry_with_max_retries_zero(tracking_uri: str) -> None:
    study, _ = _study(tracking_uri, lambda call, spec: call == 0, runner={"max_retries": 0})
    study.optimize(progress=False)
    assert [r.retry_of for r in study.trials] == [None] * 4


def test_a_resume_knows_which_failures_were_retried(tracking_uri: str) -> None:
    two = {"budget": {"max_trials": 2}, "optimizer": {"n_initial": 2}}
    study, flaky = _study(tracking_uri, lambda call, spec: call == 1, **two)
    study.optimize(progress=False)  # t001 fails; the budget ends before its retry
    healthy = ReplayRunner(flaky.table, study.config)
    again = Study.load("pile-replay", tracking_uri=tracking_uri, runner=healthy)
    again.resume(max_trials=1, progress=False)
    assert [(r.state, r.retry_of) for r in again.trials] == [
        (COMPLETED, None),
        (FAILED, None),
        (COMPLETED, 1),
    ]

    flaky.fails = lambda call, spec: True
    Study.create(study.config, tracking_uri=tracking_uri, runner=flaky, overwrite=True).optimize(
        progress=False
    )  # t000 and its one retry t001 fail
    again = Study.load("pile-replay", tracking_uri=tracking_uri, runner=healthy)
    again.resume(max_trials=1, progress=False)
    assert [r.retry_of for r in again.trials] == [None, 0, None]  # no third attempt


def test_workers_retry_each_failure_once(tracking_uri: str) -> None:
    seen: set[str | None] = set()

    def first_attempts(call: int, spec: TrialSpec) -> bool:
        new = spec.pool_id not in seen
        seen.add(spec.pool_id)
        return new and call % 2 == 0

    study, _ = _study(
        tracking_uri,
        first_attempts,
        budget={"max_trials": 10, "max_consecutive_failures": None, "max_failure_rate": 1.0},
        runner={"workers": 3},
    )
    study.optimize(progress=False)
    t = study.trials
    retries = [r for r in t if r.retry_of is not None]
    assert retries and all(r.state == COMPLETED for r in retries)
    assert len({r.retry_of for r in retries}) == len(retries)  # never two of one failure
    assert all(t[r.retry_of].state == FAILED for r in retries)
    assert all(_same_trial(t[r.retry_of].spec, r.spec) for r in retries)


def test_consecutive_failures_stop_the_study(tracking_uri: str) -> None:
    study, _ = _study(tracking_uri, lambda call, spec: True, budget={"max_trials": 30})
    with pytest.raises(TooManyFailuresError) as err:
        study.optimize(progress=False)
    message = str(err.value)
    assert "5 trials failed in a row (budget.max_consecutive_failures)" in message
    assert "t004: RuntimeError: boom in call 4" in message
    assert "make resume NAME=pile-replay" in message and "\n" not in message
    assert len(study.trials) == 5
    assert MlflowClient(tracking_uri).get_run(study.parent_id).info.status == "FINISHED"


def test_the_failure_rate_stops_the_study(tracking_uri: str) -> None:
    study, _ = _study(
        tracking_uri,
        lambda call, spec: spec.index % 3 != 2,
        budget={"max_trials": 30, "max_consecutive_failures": None},
    )
    with pytest.raises(TooManyFailuresError, match=r"5 of 7 trials failed, more than budget"):
        study.optimize(progress=False)
    assert len(study.trials) == 7


def test_failed_trials_cost_their_measured_share(tracking_uri: str) -> None:
    study, _ = _study(tracking_uri, lambda call, spec: call == 1, how="result")
    study.optimize(progress=False)
    t = study.trials
    assert t[1].state == FAILED
    client = MlflowClient(tracking_uri)
    cost = [client.get_run(r.run_id).data.metrics["cost"] for r in t]
    assert cost[1] == pytest.approx(0.5 * cost[2])  # half the row's cost, measured
    assert study.spent() == pytest.approx(sum(cost))


def test_always_failing_with_only_max_cost_stops_at_the_cost_budget(tracking_uri: str) -> None:
    study, _ = _study(
        tracking_uri,
        lambda call, spec: True,
        budget={
            "max_trials": None,
            "max_cost": 0.005,
            "max_consecutive_failures": None,
            "max_failure_rate": 1.0,
        },
    )
    study.optimize(progress=False)
    t = study.trials
    assert all(r.state == FAILED for r in t) and 3 <= len(t) <= 10
    assert study.spent() >= 0.005 - 1e-12
    client = MlflowClient(tracking_uri)
    assert all(client.get_run(r.run_id).data.metrics["cost"] > 0 for r in t)


# ---- real trial processes (the command runner) ----------------------------------------------

TRAINER = """
import json, os, pathlib, sys, time
marker = pathlib.Path(sys.argv[1])
if not marker.exists():  # the first attempt dies
    marker.write_text(str(os.getpid()))
    time.sleep(60)
trial = json.load(open(os.environ["ADMIRE_TRIAL_JSON"]))
with open(os.environ["ADMIRE_RESULTS"], "w") as f:
    metrics = {f"loss.{d}": 2.0 + w for d, w in trial["weights"].items()}
    f.write(json.dumps({"metrics": metrics}) + "\\n")
"""


def _kill_when_started(marker: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if marker.exists() and marker.read_text():
            os.kill(int(marker.read_text()), signal.SIGKILL)
            return
        time.sleep(0.05)


@pytest.mark.parametrize(
    ("fault", "reason"),
    [("sigkill", "the command was killed by SIGKILL"), ("timeout", "timed out after 2 s")],
)
def test_a_trial_process_killed_or_past_its_timeout_is_retried(
    tracking_uri: str, tmp_path: Path, fault: str, reason: str
) -> None:
    (tmp_path / "trainer.py").write_text(TRAINER)
    marker = tmp_path / "first-attempt"
    data = load_config(STUDIES / "command-example.yaml").model_dump(mode="json")
    data["runner"] |= {
        "command": f"{{python}} {tmp_path / 'trainer.py'} {marker}",
        "timeout_s": 2 if fault == "timeout" else 60,
    }
    data["budget"] = {"max_trials": 2}
    data["optimizer"] = {"n_initial": 2, "n_candidates": 64}
    study = Study.create(parse_config(data), tracking_uri=tracking_uri)
    killer = threading.Thread(target=_kill_when_started, args=(marker,), daemon=True)
    if fault == "sigkill":
        killer.start()
    study.optimize(progress=False)
    first, retry = study.trials
    assert first.state == FAILED and reason in first.error
    assert retry.state == COMPLETED and retry.retry_of == 0 and _same_trial(first.spec, retry.spec)
    assert first.metrics["cost"] > 0


def test_the_cli_stops_a_failing_study_with_one_line(
    tracking_uri: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = load_config(STUDIES / "command-example.yaml").model_dump(mode="json")
    data["runner"] |= {"command": ["{python}", "-c", "raise SystemExit('no GPU here')"]}
    data["budget"] = {"max_cost": 50.0}
    path = tmp_path / "failing.yaml"
    path.write_text(yaml.safe_dump(data))
    assert main(["--tracking-uri", tracking_uri, "run", str(path)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert "5 trials failed in a row" in err[0] and "no GPU here" in err[0]
    assert "make resume NAME=command-example" in err[0]
