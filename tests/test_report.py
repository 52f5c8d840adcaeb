"""The study as the MLflow UI shows it: names, nesting, the parent's summary and figures."""

from __future__ import annotations

import json

import pytest
from mlflow.tracking import MlflowClient

from admire import Study
from admire.config import Fidelity
from admire.runners.base import TrialSpec
from admire.space import short_count
from admire.tracking import run_name


def test_run_names_read_at_a_glance() -> None:
    spec = TrialSpec(
        17,
        {"code": 0.31, "web": 0.22, "math": 0.2, "legal": 0.27},
        Fidelity(model_size="60M", tokens=1e9),
        1,
    )
    assert run_name(spec) == "t017 · 60M × 1B tok · code .31 legal .27 web .22 …"
    assert (
        run_name(spec, 3.41234) == "t017 · 60M × 1B tok · obj 3.412 · code .31 legal .27 web .22 …"
    )
    assert short_count(2.5e10) == "25B" and short_count(8192) == "8.19K"


def test_parent_run_carries_config_summary_recommendation_and_plots(finished_pile: str) -> None:
    client = MlflowClient(finished_pile)
    study = Study.load("pile-replay", tracking_uri=finished_pile)
    exp = client.get_experiment_by_name("pile-replay")
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"
    assert exp.tags["mlflow.note.content"] == study.config.description
    parent = client.get_run(study.parent_id)
    params = parent.data.params
    assert params["objective.direction"] == "minimize" and params["n_domains"] == "17"
    assert "1B × 25B tok" in params["fidelities"]
    m = parent.data.metrics
    assert m["trials.completed"] == 6 and m["trials.failed"] == 0
    assert m["trials.at.1M_1B"] + m["trials.at.60M_1B"] + m["trials.at.1B_25B"] == 6
    rec = study.best()
    assert rec is not None
    assert {f"rec.weight.{d}" for d in rec.weights} <= set(m)
    history = client.get_metric_history(study.parent_id, "rec.weight.pile_cc")
    assert [h.step for h in history] == list(range(6))
    assert history[-1].value == pytest.approx(rec.weights["pile_cc"])
    artifacts = {a.path for a in client.list_artifacts(study.parent_id)}
    assert {"study.yaml", "recommendation.json", "plots"} <= artifacts
    plots = {a.path for a in client.list_artifacts(study.parent_id, "plots")}
    assert plots == {
        f"plots/{p}.png"
        for p in ("progress", "fidelity_usage", "recommended_mixture", "domain_effect")
    }
    local = client.download_artifacts(study.parent_id, "recommendation.json")
    with open(local) as f:
        saved = json.load(f)
    assert saved["weights"] == pytest.approx(rec.weights) and saved["after_trial"] == "t005"
    assert "**Recommended mixture**" in parent.data.tags["mlflow.note.content"]


def test_trial_runs_are_named_nested_and_numbered_like_the_console(finished_pile: str) -> None:
    client = MlflowClient(finished_pile)
    study = Study.load("pile-replay", tracking_uri=finished_pile)
    for r in study.trials:
        run = client.get_run(r.run_id)
        assert run.info.run_name == run_name(r.spec, r.objective)
        assert run.info.run_name.startswith(f"t{r.spec.index:03d} · ")
        assert run.data.tags["mlflow.parentRunId"] == study.parent_id
        assert run.data.params["fidelity"].startswith(r.spec.fidelity.model_size + " × ")


def test_trials_dataframe_has_one_row_per_trial(finished_pile: str) -> None:
    study = Study.load("pile-replay", tracking_uri=finished_pile)
    df = study.trials_dataframe()
    assert list(df["name"]) == [f"t{i:03d}" for i in range(6)]
    assert set(df["state"]) == {"COMPLETED"}
    assert {"objective", "cost", "loss.pile_cc", "weight.github", "model_size"} <= set(df.columns)
    assert df.filter(like="weight.").sum(axis=1).tolist() == pytest.approx([1.0] * 6)
    assert df["cost"].sum() == pytest.approx(study.spent())
