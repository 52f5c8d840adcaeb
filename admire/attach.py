"""Existing runs as observations of a study (`Study.attach`): read and checked before any write.

A run is a mapping `{weights: {domain: w}, model_size, tokens, metrics: {name: value}, cost}`
(`cost` optional, in the runner's own unit; `run_id` optional, kept as a tag), or a row of a
run-table CSV (README, "Run tables"). Every run is checked against the study (its domains, its
fidelities, the metrics its objective reads) and the first problem is a ValueError naming the
run and the field, so a bad list attaches nothing.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from admire.config import ConfigError, Fidelity
from admire.runners.replay import SUM_TOLERANCE, RunTable

FIELDS = ("weights", "model_size", "tokens", "metrics", "cost", "run_id")


@dataclass(frozen=True)
class ExistingRun:
    """One checked run: weights in the study's domain order (on the simplex), a fidelity of
    the study, finite metrics including every objective metric."""

    label: str
    """Where the run came from, for messages and the `info.attached_from` tag."""
    weights: dict[str, float]
    fidelity: Fidelity
    metrics: dict[str, float]
    cost: float
    """Raw cost (the runner's unit), 0 when unknown."""
    info: dict[str, str] = field(default_factory=dict)


def runs_from_table(table: str | Path) -> list[tuple[str, dict[str, Any]]]:
    """A run table's rows as (label, run mapping); the table's own errors are ConfigErrors."""
    runs = RunTable.load(str(table))
    out = []
    for i, run_id in enumerate(runs.run_ids):
        run: dict[str, Any] = {
            "weights": dict(zip(runs.domains, map(float, runs.weights[i]), strict=True)),
            "model_size": runs.model_size[i],
            "tokens": float(runs.tokens[i]),
            "metrics": dict(zip(runs.metrics, map(float, runs.values[i]), strict=True)),
            "run_id": run_id,
        }
        if math.isfinite(runs.cost[i]):
            run["cost"] = float(runs.cost[i])
        out.append((f"{runs.source}:{i + 2}", run))
    return out


def check_runs(
    runs: Iterable[tuple[str, Mapping[str, Any]]],
    domains: list[str],
    grid: list[Fidelity],
    objective_metrics: list[str],
) -> list[ExistingRun]:
    """Every run checked against the study; a ValueError (ConfigError) for the first bad one."""
    checked = [_check(label, run, domains, grid, objective_metrics) for label, run in runs]
    if not checked:
        raise ConfigError("attach: no runs given")
    return checked


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{where}: expected a number, got {value!r}")
    if not math.isfinite(value):
        raise ConfigError(f"{where}: not finite ({value})")
    return float(value)


def _check(
    label: str,
    run: Mapping[str, Any],
    domains: list[str],
    grid: list[Fidelity],
    objective_metrics: list[str],
) -> ExistingRun:
    if not isinstance(run, Mapping):
        raise ConfigError(f"{label}: expected a mapping with {', '.join(FIELDS)}")
    unknown = sorted(set(run) - set(FIELDS))
    if unknown:
        raise ConfigError(f"{label}.{unknown[0]}: unknown field (fields: {', '.join(FIELDS)})")
    missing = [f for f in ("weights", "model_size", "tokens", "metrics") if f not in run]
    if missing:
        raise ConfigError(f"{label}.{missing[0]}: missing")

    raw = run["weights"]
    if not isinstance(raw, Mapping) or not raw:
        raise ConfigError(f"{label}.weights: expected a mapping {{domain: weight}}")
    strange = [d for d in raw if d not in domains]
    if strange:
        raise ConfigError(
            f"{label}.weights: unknown domain '{strange[0]}'; the study's domains: "
            + ", ".join(domains)
        )
    # A domain the run did not train on has weight 0.
    weights = {d: _number(raw.get(d, 0.0), f"{label}.weights.{d}") for d in domains}
    negative = [d for d, w in weights.items() if w < 0]
    if negative:
        raise ConfigError(f"{label}.weights.{negative[0]}: negative ({weights[negative[0]]:g})")
    total = math.fsum(weights.values())
    if abs(total - 1.0) > SUM_TOLERANCE:
        raise ConfigError(f"{label}.weights: sum to {total:.6g}; a mixture sums to 1")
    # As for run tables: weights rounded when they were written are put back on the simplex.
    weights = {d: w / total for d, w in weights.items()}

    size = run["model_size"]
    tokens = _number(run["tokens"], f"{label}.tokens")
    fid = next(
        (
            f
            for f in grid
            if f.model_size == str(size) and math.isclose(f.tokens, tokens, rel_tol=1e-9)
        ),
        None,
    )
    if fid is None:
        known = ", ".join(f"({f.model_size}, {f.tokens:g})" for f in grid)
        raise ConfigError(
            f"{label}.model_size/tokens: ({size}, {tokens:g} tokens) is not a fidelity of the "
            f"study; its fidelities: {known}"
        )

    raw_metrics = run["metrics"]
    if not isinstance(raw_metrics, Mapping):
        raise ConfigError(f"{label}.metrics: expected a mapping {{metric: value}}")
    absent = [m for m in objective_metrics if m not in raw_metrics]
    if absent:
        raise ConfigError(
            f"{label}.metrics: missing '{absent[0]}' (the objective reads "
            + ", ".join(objective_metrics)
            + ")"
        )
    metrics = {str(k): _number(v, f"{label}.metrics.{k}") for k, v in raw_metrics.items()}

    cost = 0.0
    if run.get("cost") is not None:
        cost = _number(run["cost"], f"{label}.cost")
        if cost <= 0:
            raise ConfigError(f"{label}.cost: must be positive, got {cost:g}")
    info = {"attached_from": label}
    if run.get("run_id") is not None:
        info["attached_run_id"] = str(run["run_id"])
    return ExistingRun(label, weights, fid, metrics, cost, info)
