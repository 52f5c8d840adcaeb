"""What a study shows while it runs: its parent run in MLflow, the console line, a trial table.

After every trial the study hands its records and current recommendation to `after_trial`:
the finished trial's run is renamed with its result, and the parent run gets the recommended
mixture (`rec.weight.<domain>` metrics at step = trial index, `recommendation.json`, a summary
in its description), counts of trials by state and fidelity, and, every few trials and at the
end (`finish`), its figures under `plots/`. Everything here is derived from the trial records
and the parent's metric history, so it is the same after a resume.
"""

from __future__ import annotations

import json
import math
import time
from collections import Counter
from typing import TYPE_CHECKING, Any

import numpy as np
from mlflow.entities import Metric
from mlflow.utils.mlflow_tags import MLFLOW_RUN_NOTE

from admire import figures
from admire.space import label
from admire.tracking import (
    COMPLETED,
    COST,
    FAILED,
    OBJECTIVE,
    RUNNING,
    TrialRecord,
    run_name,
    trial_name,
)
from admire.trial import budget_trials

if TYPE_CHECKING:
    import pandas as pd

    from admire.config import Fidelity
    from admire.study import Recommendation, Study

REFRESH_EVERY = 5
"""Figures are redrawn after every this many trials (and at the end): drawing them all takes
about a second, which a replay study would otherwise spend more on than on its trials."""

PROGRESS_KEYS = (
    "cumulative_cost",
    "recommended_predicted",
    "recommended_predicted_sd",
    "best_objective_target",
)


def metric_key(fid: Fidelity) -> str:
    """A fidelity as a metric-name part: `60M_1B`."""
    return label(fid).removesuffix(" tok").replace(" × ", "_")


def after_trial(study: Study, records: list[TrialRecord], rec: Recommendation | None) -> None:
    """Update the MLflow view of the study after its latest trial (`records[-1]`)."""
    last = records[-1]
    client = study.store.client
    client.update_run(last.run_id, name=run_name(last.spec, last.objective))
    now = int(time.time() * 1000)
    metrics = [Metric(k, v, now, last.spec.index) for k, v in summary(study, records).items()]
    if rec is not None:
        metrics += [
            Metric(f"rec.weight.{k}", float(v), now, last.spec.index)
            for k, v in rec.weights.items()
        ]
    client.log_batch(study.parent_id, metrics=metrics)
    if rec is not None:
        data = recommendation_dict(study, rec, records)
        client.log_text(study.parent_id, json.dumps(data, indent=2), "recommendation.json")
        client.set_tag(study.parent_id, MLFLOW_RUN_NOTE, _note(study, data, rec))
    if study.figures and len(records) % REFRESH_EVERY == 0:
        draw(study, records, rec)


def finish(study: Study, records: list[TrialRecord]) -> None:
    """Once the loop stops: name trials that were re-run after a crash, and redraw the figures
    (the last trials may fall between refreshes)."""
    study.store.name_trials(study.parent_id, records)
    if study.figures and records and len(records) % REFRESH_EVERY != 0:
        draw(study, records, study.best())


def summary(study: Study, records: list[TrialRecord]) -> dict[str, float]:
    """Counts of trials by state and by fidelity."""
    states = Counter(r.state for r in records)
    values = {f"trials.{s.lower()}": float(states.get(s, 0)) for s in (COMPLETED, FAILED, RUNNING)}
    by_fid = Counter(r.spec.fidelity for r in records)
    for fid in study.fidelities.fidelities:
        values[f"trials.at.{metric_key(fid)}"] = float(by_fid.get(fid, 0))
    return values


def recommendation_dict(
    study: Study, rec: Recommendation, records: list[TrialRecord]
) -> dict[str, Any]:
    """The recommendation as plain data: what `recommendation.json` and `admire best --json`
    hold. A trial still running has not informed the pick, so it is not counted."""
    done = [r for r in records if r.state != RUNNING]
    return {
        "study": study.name,
        "after_trial": trial_name(done[-1].spec.index) if done else None,
        "trials": len(done),
        "objective": study.metrics,
        "direction": study.config.objective.direction,
        "fidelity": rec.fidelity,
        # JSON has no NaN: an unknown prediction (no target run yet), or sd, is null.
        "predicted": None if math.isnan(rec.predicted) else rec.predicted,
        "predicted_sd": None if math.isnan(rec.predicted_sd) else rec.predicted_sd,
        "true": rec.true,
        "pool_id": rec.pool_id,
        "weights": dict(rec.weights),
    }


def _note(study: Study, data: dict[str, Any], rec: Recommendation) -> str:
    """The parent run's description: the study's own, then the current recommendation."""
    rows = sorted(data["weights"].items(), key=lambda kv: -kv[1])
    table = "\n".join(f"| {k} | {v:.4f} |" for k, v in rows)
    head = f"{study.config.description}\n\n" if study.config.description else ""
    return (
        f"{head}**Recommended mixture** at {data['fidelity']} after {data['trials']} trials: "
        f"predicted objective {rec.prediction()}\n\n"
        f"| domain | weight |\n|---|---|\n{table}\n"
    )


def trial_line(
    study_name: str,
    records: list[TrialRecord],
    spent: float,
    trial_cap: int | None,
    cost_cap: float | None,
    rec: Recommendation | None,
) -> str:
    """The console line printed after a trial; it names the trial as its MLflow run does."""
    last = records[-1]
    n = f" ({budget_trials(records)} of {trial_cap})" if trial_cap else ""
    budget = f" of {cost_cap:.3g}" if cost_cap is not None else ""
    result = (
        f"{last.objective:.4f}" if last.objective is not None else f"FAILED ({last.error[:60]})"
    )
    best = "" if rec is None else f" | best (pred.) {rec.prediction()}"
    return (
        f"[{study_name}] {trial_name(last.spec.index)}{n} {label(last.spec.fidelity):<15} "
        f"{last.step:<7} -> {result} | cost {spent:.4g}{budget}{best}"
    )


def trials_frame(records: list[TrialRecord], domains: list[str]) -> pd.DataFrame:
    """One row per trial: name, state, fidelity, weights, objective and metrics, cost."""
    import pandas as pd

    rows = []
    for r in records:
        row: dict[str, Any] = {
            "trial": r.spec.index,
            "name": trial_name(r.spec.index),
            "state": r.state,
            "model_size": r.spec.fidelity.model_size,
            "tokens": r.spec.fidelity.tokens,
            "step": r.step,
            OBJECTIVE: r.objective,
            COST: r.metrics.get(COST),
            f"{COST}.raw": r.metrics.get(f"{COST}.raw"),
        }
        row |= {f"weight.{d}": r.spec.weights.get(d) for d in domains}
        row |= {
            k: v for k, v in sorted(r.metrics.items()) if k not in (OBJECTIVE, COST, f"{COST}.raw")
        }
        row |= {
            "seed": r.spec.seed,
            "pool_id": r.spec.pool_id,
            "error": r.error,
            "run_id": r.run_id,
        }
        rows.append(row)
    return pd.DataFrame(rows)


# ---- figures ---------------------------------------------------------------------------------
def draw(study: Study, records: list[TrialRecord], rec: Recommendation | None) -> None:
    """Redraw the parent run's figures (`plots/*.png`) from the records and metric history."""
    client = study.store.client
    history = {
        k: _last_per_step(client.get_metric_history(study.parent_id, k)) for k in PROGRESS_KEYS
    }
    cost_at = history["cumulative_cost"]
    logged = [r for r in records if r.spec.index in cost_at]
    out = {}
    if logged:
        out["fidelity_usage"] = figures.fidelity_usage(
            [cost_at[r.spec.index] for r in logged],
            [label(r.spec.fidelity) for r in logged],
            [label(f) for f in study.fidelities.fidelities],
        )
    steps = sorted(s for s in history["recommended_predicted"] if s in cost_at)
    if steps:
        best = history["best_objective_target"]
        out["progress"] = figures.progress(
            [cost_at[s] for s in steps],
            [history["recommended_predicted"][s] for s in steps],
            [history["recommended_predicted_sd"].get(s, 0.0) for s in steps],
            [best.get(s) for s in steps],
            study.name,
        )
    if rec is not None:
        title = f"recommended mixture at {rec.fidelity}: predicted {rec.prediction()}"
        out["recommended_mixture"] = figures.mixture(rec.weights, title)
        effects = domain_effects(study, rec)
        if effects is not None:
            out["domain_effect"] = figures.domain_effect(effects, study.config.objective.direction)
    curves = _curves(records)
    if curves:
        out["loss_curves"] = figures.loss_curves(curves)
    for name, fig in out.items():
        client.log_figure(study.parent_id, fig, f"plots/{name}.png")


def domain_effects(
    study: Study, rec: Recommendation, step: float = 0.05
) -> dict[str, float] | None:
    """The surrogate's predicted change of the objective per unit of weight moved into each
    domain (taken from all others in proportion) at the recommended mixture; None when the
    optimiser has no model."""
    names = study.mixtures.names
    w = np.array([rec.weights[n] for n in names])
    moved = (1 - step) * w + step * np.eye(len(names))
    predicted = study.predict(np.vstack([w, moved]))
    if predicted is None:
        return None
    mean, _ = predicted
    return {n: float((mean[i + 1] - mean[0]) / step) for i, n in enumerate(names)}


def _curves(records: list[TrialRecord]) -> dict[str, tuple[str, list]]:
    # The study computes each trial's objective curve (`TrialRecord.objective_curve`).
    return {
        trial_name(r.spec.index): (label(r.spec.fidelity), r.objective_curve)
        for r in records
        if len(r.objective_curve) >= 2
    }


def _last_per_step(history: list[Metric]) -> dict[int, float]:
    return {m.step: m.value for m in sorted(history, key=lambda m: m.timestamp)}
