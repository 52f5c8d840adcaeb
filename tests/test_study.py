from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from admire import Study, StudyExistsError, StudyLockedError, StudyNotFoundError
from admire.config import parse_config
from admire.space import SIMPLEX_TOL
from admire.tracking import SPEC_TAG
from tests.conftest import pile_config


def small_pile(**overrides: object):
    data = pile_config(budget={"max_trials": 7, "max_cost": 20.0}, optimizer={"n_initial": 4})
    data.update(overrides)
    if data["budget"].get("max_trials", 4) < 4:  # n_initial may not exceed the trial cap
        data["optimizer"] = {k: v for k, v in data["optimizer"].items() if k != "n_initial"}
    return parse_config(data)


def test_pool_study_end_to_end_in_mlflow(tracking_uri: str) -> None:
    study = Study.create(small_pile(), tracking_uri=tracking_uri)
    rec = study.optimize(progress=False)
    client = MlflowClient(tracking_uri)
    exp = client.get_experiment_by_name("pile-replay")
    runs = client.search_runs([exp.experiment_id])
    parents = [r for r in runs if r.data.tags.get("admire.kind") == "study"]
    children = [r for r in runs if r.data.tags.get("admire.kind") == "trial"]
    assert len(parents) == 1 and parents[0].info.run_name == "pile-replay"
    assert parents[0].info.status == "FINISHED"
    assert len(children) == 7
    assert sorted(int(r.data.tags["trial"]) for r in children) == list(range(7))
    for run in children:
        assert run.data.tags["mlflow.parentRunId"] == study.parent_id
        assert run.data.tags["status"] == "COMPLETED" and run.info.status == "FINISHED"
        assert {"model_size", "tokens", "seed", "pool_id"} <= set(run.data.params)
        assert sum(
            float(v) for k, v in run.data.params.items() if k.startswith("weight.")
        ) == pytest.approx(1, abs=1e-3)  # rounded for reading
        assert {"objective", "cost", "loss.pile_cc", "loss.github"} <= set(run.data.metrics)
        assert run.data.tags["generation_step"] in {"sobol", "mf-kg", "check-pick", "challenge"}
        if run.data.tags["generation_step"] != "sobol":
            assert float(run.data.tags["predicted_sd"]) >= 0
    # initial design at the cheapest fidelity, then the acquisition
    by_index = sorted(children, key=lambda r: int(r.data.tags["trial"]))
    assert [r.data.params["model_size"] for r in by_index[:4]] == ["1M"] * 4
    # (a target run goes to the standing pick first if it has not been run there)
    steps = {r.data.tags["generation_step"] for r in by_index[4:]}
    assert steps <= {"mf-kg", "check-pick", "challenge"}
    # pool rows are never reused
    assert len({r.data.params["pool_id"] for r in children}) == 7
    history = client.get_metric_history(study.parent_id, "cumulative_cost")
    assert [m.step for m in history] == list(range(7))
    costs = sorted(r.data.metrics["cost"] for r in children)
    assert history[-1].value == pytest.approx(sum(costs))
    # the recommendation is a released 1B run, scored by its true value
    assert rec is not None and rec.pool_id is not None and rec.pool_id.startswith("test-1B-")
    assert rec.true is not None and 2.0 < rec.true < 2.5
    assert abs(sum(rec.weights.values()) - 1) <= SIMPLEX_TOL


def test_existing_study_is_never_overwritten_silently(tracking_uri: str) -> None:
    cfg = small_pile(budget={"max_trials": 2})
    Study.create(cfg, tracking_uri=tracking_uri).optimize(progress=False)
    with pytest.raises(StudyExistsError, match=r"make resume NAME=pile-replay"):
        Study.create(cfg, tracking_uri=tracking_uri)
    assert len(Study.load("pile-replay", tracking_uri=tracking_uri).trials) == 2
    fresh = Study.create(cfg, tracking_uri=tracking_uri, overwrite=True)
    assert fresh.trials == []
    with pytest.raises(StudyNotFoundError, match="studies there: pile-replay"):
        Study.load("nope", tracking_uri=tracking_uri)


def test_resume_extends_a_finished_study(tracking_uri: str) -> None:
    Study.create(small_pile(budget={"max_trials": 5}), tracking_uri=tracking_uri).optimize(
        progress=False
    )
    study = Study.load("pile-replay", tracking_uri=tracking_uri)
    assert study.resume(progress=False) is not None  # budget spent: nothing more to do
    assert len(study.trials) == 5
    study.resume(max_trials=2, progress=False)
    trials = study.trials
    assert [t.spec.index for t in trials] == list(range(7))
    assert all(t.state == "COMPLETED" for t in trials)


def test_interrupted_trial_is_finished_in_its_own_run(tracking_uri: str) -> None:
    study = Study.create(small_pile(budget={"max_trials": 4}), tracking_uri=tracking_uri)
    study.optimize(max_trials=2, progress=False)
    # A crash after the trial's run was recorded but before it finished:
    history = study.history()
    proposal = study.optimizer.propose(history, remaining=10.0)[0]
    spec = study._spec(history.next_index(), proposal)
    run_id = study.store.start_trial(study.parent_id, spec, proposal.step, proposal.predicted)
    study = Study.load("pile-replay", tracking_uri=tracking_uri)
    assert study.trials[-1].state == "RUNNING"
    study.resume(progress=False)
    trials = study.trials
    assert len(trials) == 4 and [t.spec.index for t in trials] == [0, 1, 2, 3]
    assert trials[2].run_id == run_id and trials[2].state == "COMPLETED"
    assert trials[2].spec == spec


def test_a_second_driver_is_locked_out(tracking_uri: str, tmp_path: Path) -> None:
    study = Study.create(small_pile(budget={"max_trials": 1}), tracking_uri=tracking_uri)
    lock = Path(tracking_uri.removeprefix("sqlite:///")).parent / ".locks" / "pile-replay.lock"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"from filelock import FileLock; l = FileLock({str(lock)!r}); l.acquire(); "
            "print('held', flush=True); import time; time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(StudyLockedError, match="another process"):
            study.optimize(progress=False)
    finally:
        holder.kill()  # SIGKILL: the OS drops the lock with the process
        holder.wait()
    study.optimize(progress=False)
    assert len(study.trials) == 1


def test_twenty_domain_continuous_study_proposes_only_feasible_mixtures(
    tracking_uri: str, tmp_path: Path
) -> None:
    k = 20
    rng = np.random.default_rng(1)
    optimum = rng.dirichlet(np.ones(k))
    names = [f"d{i:02d}" for i in range(k)]
    lines = [
        "model_size,tokens,model_params," + ",".join(f"weight.{n}" for n in names) + ",metric.loss"
    ]
    for size, params, offset, n in [("S", 1e6, 2.0, 80), ("L", 1e8, 0.0, 30)]:
        for w in rng.dirichlet(np.ones(k), size=n):
            y = 3 + offset + 10 * ((w - optimum) ** 2).sum() + 0.3 * (size == "S") * w[0]
            lines.append(f"{size},1e9,{params}," + ",".join(str(float(x)) for x in w) + f",{y}")
    (tmp_path / "runs.csv").write_text("\n".join(lines))
    domains = [{"name": n, "min": 0.01 if i < 5 else 0.0, "max": 0.3} for i, n in enumerate(names)]
    cfg = parse_config(
        {
            "name": "twenty",
            "seed": 5,
            "domains": domains,
            "objective": {"metrics": "loss"},
            "fidelities": {
                "model_sizes": {"S": 1e6, "L": 1e8},
                "tokens": [1e9],
                "target": {"model_size": "L", "tokens": 1e9},
            },
            "budget": {"max_trials": 9},
            "runner": {"kind": "replay", "table": str(tmp_path / "runs.csv"), "mode": "continuous"},
            "optimizer": {"n_initial": 4, "n_candidates": 256},
        }
    )
    study = Study.create(cfg, tracking_uri=tracking_uri)
    rec = study.optimize(progress=False)
    trials = study.trials
    assert len(trials) == 9 and {t.spec.fidelity.model_size for t in trials} <= {"S", "L"}
    w = np.array([[t.spec.weights[n] for n in names] for t in trials])
    assert study.mixtures.violation(w) <= SIMPLEX_TOL
    assert (
        rec is not None
        and study.mixtures.violation(np.array([list(rec.weights.values())])) <= SIMPLEX_TOL
    )


def test_trial_spec_tag_is_the_source_of_truth(tracking_uri: str) -> None:
    study = Study.create(small_pile(budget={"max_trials": 1}), tracking_uri=tracking_uri)
    study.optimize(progress=False)
    run = MlflowClient(tracking_uri).get_run(study.trials[0].run_id)
    assert '"pool_id"' in run.data.tags[SPEC_TAG]
    # The params are rounded for reading; the spec tag keeps the exact weights.
    params = {
        k.removeprefix("weight."): v for k, v in run.data.params.items() if k.startswith("weight.")
    }
    assert params == {k: f"{w:.4f}" for k, w in study.trials[0].spec.weights.items()}


def test_progress_line_per_trial(tracking_uri: str, capsys: pytest.CaptureFixture[str]) -> None:
    Study.create(small_pile(budget={"max_trials": 2}), tracking_uri=tracking_uri).optimize()
    out = capsys.readouterr().out
    assert "[pile-replay] t000 (1 of 2) 1M × 1B tok" in out
    assert "[pile-replay] t001 (2 of 2)" in out
    assert "recommended mixture at 1B" in out


def test_numerical_notices_are_quiet_during_decisions_and_only_those() -> None:
    import warnings

    import torch
    from gpytorch.distributions import MultivariateNormal
    from linear_operator.operators import DiagLinearOperator
    from linear_operator.utils.cholesky import psd_safe_cholesky

    from admire.optim import quiet_numerics

    singular = torch.ones(3, 3, dtype=torch.float64)  # rank one: Cholesky needs jitter
    rounded = MultivariateNormal(
        torch.zeros(2, dtype=torch.float64),
        DiagLinearOperator(torch.tensor([-1e-9, 1.0], dtype=torch.float64)),
    )
    with warnings.catch_warnings(record=True) as outside:
        warnings.simplefilter("always")
        psd_safe_cholesky(singular)
        assert rounded.variance.min() > 0
    notices = [str(w.message) for w in outside]
    assert any("added jitter" in m for m in notices)
    assert any("Negative variance" in m for m in notices)
    with warnings.catch_warnings(record=True) as inside:
        warnings.simplefilter("always")
        with quiet_numerics():
            psd_safe_cholesky(singular)
            assert rounded.variance.min() > 0
            warnings.warn("something else", UserWarning, stacklevel=1)
    assert [str(w.message) for w in inside] == ["something else"]
