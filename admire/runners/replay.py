"""Replay runner: released runs stand in for training, so a whole study runs in seconds.

A run table is a CSV with one row per trained model (the schema is in the README, "Run tables"):
`model_size`, `tokens`, one `weight.<domain>` column per domain, one `metric.<name>` column per
metric, and optionally `run_id`, `model_params`, `cost` (any unit; default 6 * params * tokens)
and `flops`. The shipped `regmix-pile` table is RegMix's Pile runs in that schema.

Two modes:
- pool: the optimiser chooses among the table's rows not used yet; a trial returns that row.
- continuous: the optimiser proposes any mixture; at each fidelity an exact GP (BoTorch's
  SingleTaskGP: one independent output per metric, RBF-ARD kernel with dimension-scaled priors,
  fitted by marginal likelihood to every row of that fidelity) answers with its posterior
  mean. It is deterministic: the same mixture always gets the same answer.
"""

from __future__ import annotations

import csv
import io
import math
from collections import Counter
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import torch

from admire.config import ConfigError, Fidelity, StudyConfig
from admire.runners.base import PoolRow, TrialResult, TrialSpec

BUILTIN_TABLES = {"regmix-pile": "regmix_pile.csv"}
WEIGHT_PREFIX = "weight."
METRIC_PREFIX = "metric."
SUM_TOLERANCE = 0.01


@dataclass
class RunTable:
    """Released runs in admire's long-format schema, one row per trained model."""

    source: str
    run_ids: list[str]
    domains: list[str]
    metrics: list[str]
    model_size: list[str]
    tokens: np.ndarray
    weights: np.ndarray
    values: np.ndarray
    cost: np.ndarray
    runs: list[str | None] | None = None
    """The training run each row belongs to (optional `run` column): rows of one run at
    fewer tokens are its checkpoints."""

    @classmethod
    def load(cls, table: str, base: Path | None = None) -> RunTable:
        """Load a builtin table by name or a CSV by path (relative paths from `base`)."""
        if table in BUILTIN_TABLES:
            ref = resources.files("admire") / "data" / BUILTIN_TABLES[table]
            with resources.as_file(ref) as path:
                return cls.read_csv(path, source=table)
        path = Path(table)
        if not path.is_absolute() and base is not None:
            path = base / path
        if not path.is_file():
            raise ConfigError(
                f"runner.table: '{table}' is neither a builtin table "
                f"({', '.join(BUILTIN_TABLES)}) nor a CSV file"
            )
        return cls.read_csv(path, source=str(path))

    @classmethod
    def read_csv(cls, path: Path, source: str) -> RunTable:
        header, rows = _csv_rows(path, source)
        domains = [c.removeprefix(WEIGHT_PREFIX) for c in header if c.startswith(WEIGHT_PREFIX)]
        metrics = [c.removeprefix(METRIC_PREFIX) for c in header if c.startswith(METRIC_PREFIX)]
        missing = [c for c in ("model_size", "tokens") if c not in header]
        if missing or len(domains) < 2 or not metrics or not rows:
            raise ConfigError(
                f"{source}: not a run table (needs model_size, tokens, >= 2 weight.<domain> "
                f"and >= 1 metric.<name> columns and at least one row; missing {missing})"
            )

        def num(row: dict[str, str], col: str, line: int) -> float:
            try:
                value = float(row[col])
            except (TypeError, ValueError):
                raise ConfigError(f"{source}:{line}: column {col} is not a number") from None
            if not math.isfinite(value):
                raise ConfigError(f"{source}:{line}: column {col} is not finite")
            return value

        weights = np.empty((len(rows), len(domains)))
        values = np.empty((len(rows), len(metrics)))
        tokens = np.empty(len(rows))
        cost = np.empty(len(rows))
        for i, row in enumerate(rows):
            line = i + 2
            weights[i] = [num(row, WEIGHT_PREFIX + d, line) for d in domains]
            values[i] = [num(row, METRIC_PREFIX + m, line) for m in metrics]
            tokens[i] = num(row, "tokens", line)
            negative = [d for d, w in zip(domains, weights[i], strict=True) if w < 0]
            if negative:
                raise ConfigError(
                    f"{source}:{line}: column {WEIGHT_PREFIX}{negative[0]} is negative; "
                    "weights must be >= 0 and sum to 1"
                )
            total = weights[i].sum()
            if abs(total - 1.0) > SUM_TOLERANCE:
                raise ConfigError(
                    f"{source}:{line}: the {WEIGHT_PREFIX}* columns sum to {total:.6g}; "
                    "weights must be >= 0 and sum to 1"
                )
            # Released tables round weights (RegMix to 3 decimals); put them back on the simplex.
            weights[i] /= total
            if row.get("cost"):
                cost[i] = num(row, "cost", line)
            elif row.get("model_params"):
                cost[i] = 6.0 * num(row, "model_params", line) * tokens[i]
            else:
                cost[i] = math.nan
        run_ids = [row.get("run_id") or f"row-{i + 2}" for i, row in enumerate(rows)]
        repeated = sorted(r for r, n in Counter(run_ids).items() if n > 1)
        if repeated:
            raise ConfigError(f"{source}: column run_id repeats {repeated[:5]}")
        return cls(
            source=source,
            run_ids=run_ids,
            domains=domains,
            metrics=metrics,
            model_size=[row["model_size"] for row in rows],
            tokens=tokens,
            weights=weights,
            values=values,
            cost=cost,
            runs=[row.get("run") or None for row in rows] if "run" in header else None,
        )

    def write_csv(self, path: Path) -> None:
        """Write the table in the run-table schema (`read_csv` reads it back the same, up to
        the 9 significant digits of each number)."""
        runs = self.runs
        with path.open("w", newline="", encoding="utf-8") as fh:
            out = csv.writer(fh)
            out.writerow(
                [
                    "run_id",
                    *(["run"] if runs is not None else []),
                    "model_size",
                    "tokens",
                    "cost",
                    *[WEIGHT_PREFIX + d for d in self.domains],
                    *[METRIC_PREFIX + m for m in self.metrics],
                ]
            )
            for i, run_id in enumerate(self.run_ids):
                out.writerow(
                    [
                        run_id,
                        *([runs[i] or ""] if runs is not None else []),
                        self.model_size[i],
                        f"{self.tokens[i]:.9g}",
                        "" if math.isnan(self.cost[i]) else f"{self.cost[i]:.9g}",
                        *[f"{w:.9g}" for w in self.weights[i]],
                        *[f"{v:.9g}" for v in self.values[i]],
                    ]
                )

    def rows_at(self, fid: Fidelity) -> np.ndarray:
        """Indices of the rows trained at `fid`."""
        return np.array(
            [
                i
                for i, (s, t) in enumerate(zip(self.model_size, self.tokens, strict=True))
                if s == fid.model_size and math.isclose(t, fid.tokens, rel_tol=1e-9)
            ],
            dtype=int,
        )


def _csv_rows(path: Path, source: str) -> tuple[list[str], list[dict[str, str]]]:
    """A CSV file's header and rows; a ConfigError for a file that is not one."""
    data = path.read_bytes()
    if not data.strip():
        raise ConfigError(f"{source}: the run table is empty")
    if b"\x00" in data:
        raise ConfigError(f"{source}: not a CSV file (it holds binary data)")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise ConfigError(
            f"{source}: not a UTF-8 CSV file (byte 0x{data[err.start]:02x} at offset {err.start})"
        ) from None
    try:
        reader = csv.DictReader(io.StringIO(text, newline=""))
        header = list(reader.fieldnames or [])
        rows = list(reader)
    except csv.Error as err:
        raise ConfigError(f"{source}: not a CSV file ({err})") from None
    dupes = sorted({c for c in header if header.count(c) > 1})
    if dupes:
        raise ConfigError(f"{source}: columns {dupes} appear more than once")
    return header, rows


class ReplayRunner:
    """Answers trials from a RunTable (see the module docstring for the two modes)."""

    def __init__(self, table: RunTable, config: StudyConfig) -> None:
        self.table = table
        self.mode = config.runner.mode
        self._metrics = list(table.metrics)
        grid = config.fidelities.grid()
        if set(config.domain_names) != set(table.domains):
            raise ConfigError(
                f"domains: the study's domains must be the table's ({table.source}): "
                f"missing {sorted(set(table.domains) - set(config.domain_names))}, "
                f"unknown {sorted(set(config.domain_names) - set(table.domains))}"
            )
        # The table's columns in the study's domain order.
        self._order = [table.domains.index(d) for d in config.domain_names]
        self._rows: dict[Fidelity, np.ndarray] = {}
        for fid in grid:
            rows = table.rows_at(fid)
            if len(rows) == 0:
                have = sorted(
                    {(s, float(t)) for s, t in zip(table.model_size, table.tokens, strict=True)}
                )
                raise ConfigError(
                    f"fidelities: ({fid.model_size}, {fid.tokens:g} tokens) has no runs in "
                    f"{table.source}; it has {have}"
                )
            if np.isnan(table.cost[rows]).any():
                raise ConfigError(
                    f"{table.source}: rows at {fid.model_size} need a cost or model_params column"
                )
            self._rows[fid] = rows
        self._by_id = {rid: i for i, rid in enumerate(table.run_ids)}
        self._surrogates: dict[Fidelity, _TableSurrogate] = {}

    @classmethod
    def from_config(cls, config: StudyConfig, base: Path | None = None) -> ReplayRunner:
        return cls(RunTable.load(config.runner.table, base), config)

    def metric_names(self) -> list[str]:
        return list(self._metrics)

    def pool(self) -> list[PoolRow] | None:
        if self.mode != "pool":
            return None
        runs = self.table.runs
        return [
            PoolRow(
                self.table.run_ids[i],
                self.table.weights[i, self._order],
                fid,
                None if runs is None else runs[i],
            )
            for fid, rows in self._rows.items()
            for i in rows
        ]

    def expected_cost(self, fidelity: Fidelity) -> float | None:
        return float(np.mean(self.table.cost[self._rows[fidelity]]))

    def run(self, spec: TrialSpec) -> TrialResult:
        values = self._answer(spec.weights, spec.fidelity, spec.pool_id)
        info = {"replay_row": spec.pool_id} if spec.pool_id else {}
        cost = self.expected_cost(spec.fidelity)
        if spec.pool_id is not None:
            cost = float(self.table.cost[self._by_id[spec.pool_id]])
        assert cost is not None
        return TrialResult(metrics=values, cost=cost, info=info, curve=self._curve(spec, values))

    def _curve(
        self, spec: TrialSpec, final: dict[str, float]
    ) -> list[tuple[int, dict[str, float]]]:
        """The run's checkpoints up to the trial's tokens, the final result last: rows of the
        same `run` (pool mode), or the same model size at fewer tokens (continuous mode)."""
        fid = spec.fidelity
        if spec.pool_id is not None:
            runs = self.table.runs
            run = None if runs is None else runs[self._by_id[spec.pool_id]]
            if run is None:
                return []
            rows = [
                i
                for i, r in enumerate(runs)  # type: ignore[arg-type]
                if r == run
                and self.table.model_size[i] == fid.model_size
                and self.table.tokens[i] < fid.tokens
            ]
            points = [
                (
                    int(self.table.tokens[i]),
                    dict(zip(self._metrics, map(float, self.table.values[i]), strict=True)),
                )
                for i in rows
            ]
        else:
            lower = [
                f for f in self._rows if f.model_size == fid.model_size and f.tokens < fid.tokens
            ]
            if not lower:
                return []
            points = [(int(f.tokens), self._answer(spec.weights, f, None)) for f in lower]
        return [*sorted(points, key=lambda p: p[0]), (int(fid.tokens), final)]

    def reference(self, weights: dict[str, float], fidelity: Fidelity) -> dict[str, float] | None:
        if self.mode == "pool":
            match = self._match(weights, fidelity)
            return None if match is None else self._answer(weights, fidelity, match)
        return self._answer(weights, fidelity, None)

    def _match(self, weights: dict[str, float], fidelity: Fidelity) -> str | None:
        rows = self._rows.get(fidelity)
        if rows is None:
            return None
        w = self._study_order(weights)
        dist = np.abs(self.table.weights[rows][:, self._order] - w).max(axis=1)
        best = int(np.argmin(dist))
        return self.table.run_ids[rows[best]] if dist[best] < 1e-9 else None

    def _study_order(self, weights: dict[str, float]) -> np.ndarray:
        names = [self.table.domains[j] for j in self._order]
        return np.array([weights[n] for n in names])

    def _answer(
        self, weights: dict[str, float], fid: Fidelity, pool_id: str | None
    ) -> dict[str, float]:
        if pool_id is not None:
            row = self._by_id.get(pool_id)
            if row is None or row not in set(self._rows.get(fid, [])):
                raise ValueError(f"pool row {pool_id!r} is not a run at {fid.model_size}")
            return dict(zip(self._metrics, map(float, self.table.values[row]), strict=True))
        if self.mode == "pool":
            raise ValueError("pool mode answers pool rows only")
        surrogate = self._surrogates.get(fid)
        if surrogate is None:
            rows = self._rows[fid]
            surrogate = _TableSurrogate(
                self.table.weights[rows][:, self._order], self.table.values[rows]
            )
            self._surrogates[fid] = surrogate
        pred = surrogate.predict(self._study_order(weights)[None, :])[0]
        return dict(zip(self._metrics, map(float, pred), strict=True))


class _TableSurrogate:
    """GP posterior mean over one fidelity's rows, every metric through one shared kernel.

    Kernel hyperparameters are fitted once, by marginal likelihood, to the mean of the
    standardised metrics (on at most 512 rows); every metric is then conditioned on all rows
    with that kernel in a single solve. Fitting 13 independent GPs on 768 rows took minutes.
    """

    FIT_ROWS = 512

    def __init__(self, x: np.ndarray, y: np.ndarray) -> None:
        from botorch.fit import fit_gpytorch_mll
        from botorch.models import SingleTaskGP
        from gpytorch.mlls import ExactMarginalLogLikelihood

        tx = torch.as_tensor(x, dtype=torch.float64)
        ty = torch.as_tensor(y, dtype=torch.float64)
        self.y_mean = ty.mean(dim=0)
        self.y_std = ty.std(dim=0).clamp_min(1e-12)
        z = (ty - self.y_mean) / self.y_std
        fit_rows = np.random.default_rng(0).permutation(len(x))[: self.FIT_ROWS]
        with torch.random.fork_rng():
            torch.manual_seed(0)
            sub = torch.as_tensor(fit_rows)
            model = SingleTaskGP(tx[sub], z[sub].mean(dim=1, keepdim=True))
            fit_gpytorch_mll(
                ExactMarginalLogLikelihood(model.likelihood, model),
                optimizer_kwargs={"options": {"maxiter": 200}},
            )
        with torch.no_grad():
            self.kernel = model.covar_module
            noise = model.likelihood.noise.item()
            gram = self.kernel(tx, tx).to_dense() + noise * torch.eye(len(tx), dtype=tx.dtype)
            self.alpha = torch.cholesky_solve(z, torch.linalg.cholesky(gram))
        self.x = tx

    def predict(self, x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            cross = self.kernel(torch.as_tensor(x, dtype=torch.float64), self.x).to_dense()
            return (cross @ self.alpha * self.y_std + self.y_mean).numpy()
