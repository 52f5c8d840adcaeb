"""Study.attach: existing runs become completed trials in MLflow, checked before any write."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from admire import Study
from admire.config import ConfigError, parse_config
from admire.runners.replay import RunTable
from tests.conftest import pile_config

SMALL = {"budget": {"max_trials": 4, "max_cost": 20.0}, "optimizer": {"n_initial": 3}}


def _study(uri: str) -> Study:
    return Study.create(parse_config(pile_config(**SMALL)), tracking_uri=uri)


def _table_rows(n: int) -> list[dict]:
    """The first `n` 1M-parameter runs of the shipped RegMix table, as run mappings."""
    table = RunTable.load("regmix-pile")
    rows = [i for i, s in enumerate(table.model_size) if s == "1M"][:n]
    return [
        {
            "weights": dict(zip(table.domains, map(float, table.weights[i]), strict=True)),
            "model_size": "1M",
            "tokens": float(table.tokens[i]),
            "metrics": dict(zip(table.metrics, map(float, table.values[i]), strict=True)),
            "cost": float(table.cost[i]),
            "run_id": table.run_ids[i],
        }
        for i in rows
    ]


def test_attached_runs_are_completed_trials_outside_the_budget(tracking_uri: str) -> None:
    study = _study(tracking_uri)
    runs = _table_rows(3)
    attached = study.attach(runs)
    expected = [(i, "COMPLETED", "attached") for i in range(3)]
    assert [(r.spec.index, r.state, r.step) for r in attached] == expected
    # Runs of the replay pool take their row: the optimiser will not propose them again.
    assert [r.spec.pool_id for r in attached] == [r["run_id"] for r in runs]

    client = MlflowClient(tracking_uri)
    run = client.get_run(attached[0].run_id)
    assert run.data.tags["generation_step"] == "attached"
    assert run.data.tags["info.attached_from"] == "runs[0]"
    assert run.data.tags["info.attached_run_id"] == runs[0]["run_id"]
    assert run.data.tags["mlflow.parentRunId"] == study.parent_id
    assert run.info.status == "FINISHED"
    assert run.data.metrics["objective"] == pytest.approx(
        sum(runs[0]["metrics"][m] for m in study.metrics) / len(study.metrics)
    )

    # Another process (or a resume) reads them back from MLflow, the one source of truth.
    again = Study.load("pile-replay", tracking_uri=tracking_uri)
    assert [r.attached for r in again.trials] == [True] * 3
    assert again.spent() == 0.0  # paid for elsewhere
    assert again.best() is not None  # the optimiser already has observations

    again.optimize(progress=False)
    records = again.trials
    own = [r for r in records if not r.attached]
    assert len(own) == 4  # budget.max_trials counts the study's own trials only
    # Three attached runs at the cheapest fidelity fill the 3-point initial design.
    assert {r.step for r in own} <= {"mf-kg", "check-pick", "challenge", "hedge"}  # no "sobol"
    pool_ids = [r.spec.pool_id for r in records]
    assert len(set(pool_ids)) == len(pool_ids)


def test_attach_a_run_table_csv(tracking_uri: str, tmp_path: Path) -> None:
    study = _study(tracking_uri)
    runs = _table_rows(2)
    path = tmp_path / "earlier runs.csv"
    domains, metrics = list(runs[0]["weights"]), list(runs[0]["metrics"])
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(
            ["model_size", "tokens", "cost"]
            + [f"weight.{d}" for d in domains]
            + [f"metric.{m}" for m in metrics]
        )
        for r in runs:
            writer.writerow(
                [r["model_size"], r["tokens"], r["cost"]]
                + [r["weights"][d] for d in domains]
                + [r["metrics"][m] for m in metrics]
            )
    attached = study.attach(path)
    assert [r.spec.index for r in attached] == [0, 1]
    assert attached[1].spec.weights == pytest.approx(runs[1]["weights"])
    assert attached[0].metrics["cost.raw"] == pytest.approx(runs[0]["cost"])
    tags = MlflowClient(tracking_uri).get_run(attached[1].run_id).data.tags
    assert tags["info.attached_from"] == f"{path}:3"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda r: r["weights"].update(reddit=0.0), r"runs\[1\]\.weights: unknown domain 'reddit'"),
        (
            lambda r: r["weights"].update(github=r["weights"]["github"] + 0.2),
            r"runs\[1\]\.weights: sum to 1\.2",
        ),
        (lambda r: r.update(model_size="7B"), r"runs\[1\]\.model_size/tokens: \(7B, 1e\+09"),
        (lambda r: r.update(tokens=2e9), r"not a fidelity of the study"),
        (lambda r: r["metrics"].pop("loss.pile_cc"), r"\.metrics: missing 'loss\.pile_cc'"),
        (lambda r: r["metrics"].update({"loss.arxiv": float("nan")}), r"loss\.arxiv: not finite"),
        (lambda r: r.update(cost=-1.0), r"runs\[1\]\.cost: must be positive"),
        (lambda r: r.update(wieghts={}), r"runs\[1\]\.wieghts: unknown field"),
        (lambda r: r.pop("metrics"), r"runs\[1\]\.metrics: missing"),
    ],
)
def test_a_bad_run_is_refused_and_nothing_is_written(
    tracking_uri: str, change, message: str
) -> None:  # type: ignore[no-untyped-def]
    study = _study(tracking_uri)
    runs = _table_rows(2)
    change(runs[1])
    with pytest.raises(ValueError, match=message):
        study.attach(runs)
    assert study.trials == []  # the good first run was not written either


def test_a_bad_csv_is_refused(tracking_uri: str, tmp_path: Path) -> None:
    study = _study(tracking_uri)
    path = tmp_path / "runs.csv"
    path.write_text("model_size,tokens,weight.a,weight.b,metric.loss\n1M,1e9,0.5,0.5,3.0\n")
    with pytest.raises(ConfigError, match=r"runs\.csv:2\.weights: unknown domain 'a'"):
        study.attach(path)
    assert study.trials == []
