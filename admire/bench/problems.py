"""Benchmark problems: a study config for the methods, and a hidden truth for the scorer.

Methods see a problem only through `PaidRunner`: pool rows (mixtures and fidelities, no
values), declared costs, and the answer of each trial they pay for. `reference` answers
nothing. The scorer reads the truth separately, after a method has named its pick.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

from admire.config import Fidelity, StudyConfig, parse_config
from admire.runners.base import PoolRow, Runner, TrialResult, TrialSpec
from admire.runners.replay import ReplayRunner, RunTable
from admire.space import MixtureSpace


class PaidRunner:
    """A runner as a benchmarked method sees it: every answer is paid for, nothing is free."""

    def __init__(self, inner: Runner) -> None:
        self.inner = inner

    def metric_names(self) -> list[str]:
        return self.inner.metric_names()

    def pool(self) -> list[PoolRow] | None:
        return self.inner.pool()

    def expected_cost(self, fidelity: Fidelity) -> float | None:
        return self.inner.expected_cost(fidelity)

    def run(self, spec: TrialSpec) -> TrialResult:
        return self.inner.run(spec)

    def reference(self, weights: dict[str, float], fidelity: Fidelity) -> dict[str, float] | None:
        return None


@dataclass
class Problem:
    """A benchmark problem. `make_runner()` builds a fresh runner per method run (so a guard
    can be installed per run); `truth(w)` is the true target objective of mixture `w` (study
    domain order), for scoring only; `best` is the best available target value."""

    name: str
    config: StudyConfig
    make_runner: Callable[[], Runner]
    truth: Callable[[np.ndarray], float]
    best: float
    target_pool: np.ndarray | None = None
    """Target-fidelity mixtures a pool-mode recommendation is chosen among."""
    flops_cost: dict[Fidelity, float] = field(default_factory=dict)
    """Per-fidelity cost by FLOPs (6 x params x tokens), in target-run units."""

    @cached_property
    def costs(self) -> dict[Fidelity, float]:
        """Declared per-fidelity cost in target-run units (the benchmark's cost axis)."""
        runner = self.make_runner()
        raw = {f: runner.expected_cost(f) or 0.0 for f in self.config.fidelities.grid()}
        unit = raw[self.config.fidelities.target]
        return {f: c / unit for f, c in raw.items()}


def _flops_costs(config: StudyConfig) -> dict[Fidelity, float]:
    fids = config.fidelities
    raw = {f: fids.params(f) * f.tokens for f in fids.grid()}
    return {f: c / raw[fids.target] for f, c in raw.items()}


def replay_problem(
    name: str, config: StudyConfig, table: RunTable | None = None, n_reference: int = 20_000
) -> Problem:
    """A problem from a replay study config: pool or continuous, as the config says."""
    table = table or RunTable.load(config.runner.table)
    reference = ReplayRunner(table, config)
    metrics = config.objective.resolve(reference.metric_names())
    sign = 1.0 if config.objective.direction == "minimize" else -1.0
    target = config.fidelities.target
    names = config.domain_names

    def truth(w: np.ndarray) -> float:
        values = reference._answer(dict(zip(names, map(float, w), strict=True)), target, _row(w))
        return sign * config.objective.combine(values, metrics)

    target_rows = [p for p in reference.pool() or [] if p.fidelity == target]
    by_mix = {tuple(np.round(p.weights, 12)): p.pool_id for p in target_rows}

    def _row(w: np.ndarray) -> str | None:
        return by_mix.get(tuple(np.round(w, 12))) if target_rows else None

    if target_rows:
        pool = np.array([p.weights for p in target_rows])
        best = min(truth(w) for w in pool)
    else:
        pool = None
        space = MixtureSpace.from_domains(list(config.domains))
        cloud = space.sample(n_reference, seed=12345)
        best = min(truth(w) for w in cloud)
    return Problem(
        name,
        config,
        lambda: ReplayRunner(table, config),
        truth,
        best,
        pool,
        _flops_costs(config),
    )


PILE_BASE = {
    "seed": 0,
    "objective": {"metrics": "loss.*", "aggregate": "mean", "direction": "minimize"},
    "fidelities": {
        "model_sizes": {"1M": 1.0e6, "60M": 6.0e7, "1B": 1.0e9},
        "pairs": [["1M", 1.0e9], ["60M", 1.0e9], ["1B", 2.5e10]],
        "target": {"model_size": "1B", "tokens": 2.5e10},
    },
    "budget": {"max_trials": 60, "max_cost": 20.0},
    "optimizer": {"n_initial": 10},
}


def _pile(name: str, mode: str, objective: str = "loss.*") -> Problem:
    table = RunTable.load("regmix-pile")
    data = {
        **PILE_BASE,
        "name": name,
        "domains": list(table.domains),
        "objective": {**PILE_BASE["objective"], "metrics": objective},
        "runner": {"kind": "replay", "table": "regmix-pile", "mode": mode},
    }
    return replay_problem(name, parse_config(data, name), table)


class SyntheticRunner:
    """A multi-fidelity function on the simplex with a known optimum, for fast tests.

    target(w) = sum_i a_i (w_i - w*_i)^2 + 0.3 * sum_i sin(5 w_i)^2 / k. At a cheaper
    fidelity the optimum drifts (w* moves towards `shift`) and an offset is added: cheap runs
    are informative but not faithful. With `mislead`, cheap fidelities also see a deep basin
    around `shift` that the target does not have: there the cheap ranking is reversed. With
    several token budgets per size, a trial returns its lower-token values as its curve
    (checkpoints of the same run)."""

    def __init__(
        self, config: StudyConfig, optimum: np.ndarray, shift: np.ndarray, mislead: float = 0.0
    ) -> None:
        self.config = config
        self.optimum, self.shift, self.mislead = optimum, shift, mislead
        k = len(optimum)
        self.scales = 1.0 + np.arange(k) / k
        self.grid = config.fidelities.grid()

    def metric_names(self) -> list[str]:
        return ["loss"]

    def pool(self) -> list[PoolRow] | None:
        return None

    def fidelity_gap(self, fid: Fidelity) -> float:
        """0 at the target, growing towards the cheapest fidelity."""
        target = self.config.fidelities
        ratio = (
            target.params(fid) * fid.tokens / (target.params(target.target) * target.target.tokens)
        )
        return min(1.0, -math.log10(ratio) / 4.0)

    def value(self, w: np.ndarray, fid: Fidelity) -> float:
        gap = self.fidelity_gap(fid)
        centre = (1 - 0.5 * gap) * self.optimum + 0.5 * gap * self.shift
        k = len(w)
        bowl = float(np.sum(self.scales * (w - centre) ** 2))
        ripple = 0.3 * float(np.sum(np.sin(5 * w) ** 2)) / k
        trap = self.mislead * gap * math.exp(-float(np.sum((w - self.shift) ** 2)) / 0.08)
        return 2.0 + 3.0 * gap + bowl + ripple * (1 + gap) - trap

    def expected_cost(self, fidelity: Fidelity) -> float | None:
        fids = self.config.fidelities
        return fids.params(fidelity) * fidelity.tokens

    def run(self, spec: TrialSpec) -> TrialResult:
        w = np.array([spec.weights[n] for n in self.config.domain_names])
        fid = spec.fidelity
        cost = self.expected_cost(fid)
        assert cost is not None
        lower = [f for f in self.grid if f.model_size == fid.model_size and f.tokens < fid.tokens]
        curve = [(int(f.tokens), {"loss": self.value(w, f)}) for f in lower]
        final = {"loss": self.value(w, fid)}
        if curve:
            curve.append((int(fid.tokens), final))
        return TrialResult(final, cost, curve=curve)

    def reference(self, weights: dict[str, float], fidelity: Fidelity) -> dict[str, float] | None:
        return None


def synthetic_problem(
    name: str, k: int, seed: int, mislead: float = 0.0, token_steps: int = 1
) -> Problem:
    """A k-domain synthetic problem with three model sizes (costs 0.001 : 0.03 : 1 at full
    tokens), each trained for `token_steps` budgets (1/2^i of the full one, with checkpoints)."""
    rng = np.random.default_rng(seed)
    optimum = rng.dirichlet(np.full(k, 2.0))
    shift = rng.dirichlet(np.ones(k))
    tokens = [1e9 / 2**i for i in range(token_steps)]
    data = {
        "name": name,
        "domains": [f"d{i}" for i in range(k)],
        "objective": {"metrics": "loss"},
        "fidelities": {
            "model_sizes": {"S": 1e6, "M": 3e7, "L": 1e9},
            "pairs": [[s, t] for s in ("S", "M", "L") for t in tokens],
            "target": {"model_size": "L", "tokens": 1e9},
        },
        "budget": {"max_trials": 40, "max_cost": 10.0},
        # The config needs a runner section; the problem supplies its own runner instead.
        "runner": {"kind": "replay", "table": "regmix-pile", "mode": "continuous"},
        "optimizer": {"n_initial": 6, "n_candidates": 256},
    }
    config = parse_config(data, name)
    runner = SyntheticRunner(config, optimum, shift, mislead)
    target = config.fidelities.target
    space = MixtureSpace.from_domains(list(config.domains))
    cloud = np.concatenate([space.sample(20_000, seed=1), optimum[None, :]])
    best = min(runner.value(w, target) for w in cloud)
    return Problem(
        name,
        config,
        lambda: SyntheticRunner(config, optimum, shift, mislead),
        lambda w: runner.value(w, target),
        best,
        None,
        _flops_costs(config),
    )


@dataclass(frozen=True)
class Sweep:
    """The shape of a released sweep: model sizes (name -> parameters), the token counts each
    size was evaluated at (its checkpoints, the last one its full run), how many mixtures were
    trained at every size, and how many more at some sizes."""

    sizes: dict[str, float]
    tokens: dict[str, list[float]]
    shared: int
    extra: dict[str, int]
    budget: float = 10.0
    max_trials: int = 40


THREE_SIZES = Sweep(
    sizes={"S": 1e6, "M": 3e7, "L": 1e9},
    tokens={s: [5e8, 1e9] for s in ("S", "M", "L")},
    shared=48,
    extra={"S": 208, "M": 48},
)
_PYTHIA_LIKE = {"70M": 7e7, "160M": 1.6e8, "410M": 4.1e8, "1B": 1e9, "7B": 7e9}
FIVE_SIZES = Sweep(
    sizes=_PYTHIA_LIKE,
    # Five checkpoints per run, the full one at 20 tokens per parameter.
    tokens={s: [20 * n * f for f in (0.2, 0.4, 0.6, 0.8, 1.0)] for s, n in _PYTHIA_LIKE.items()},
    shared=40,
    extra={"70M": 160, "160M": 80, "410M": 40, "1B": 10},
    budget=20.0,
    max_trials=60,
)
ONE_SIZE = Sweep(
    sizes={"1B": 1e9},
    tokens={"1B": [2e8 * i for i in range(1, 11)]},
    shared=64,
    extra={},
    budget=20.0,
    max_trials=60,
)


def synthetic_pool_problem(
    name: str,
    k: int,
    seed: int,
    mislead: float = 0.0,
    noise: float = 0.005,
    sweep: Sweep = THREE_SIZES,
    cost_noise: float = 0.0,
    drift: bool = True,
) -> Problem:
    """A pool problem shaped like a released sweep of sizes x training steps (`sweep`): the
    same mixtures trained at every size (more at some), each run with its checkpoints (a
    `run` column), every value measured with noise of sd `noise` and every cost with a
    relative sd `cost_noise`. Values come from `SyntheticRunner` (with `mislead`, the cheap
    fidelities' ranking is reversed around a basin the target lacks), so the optimum is known
    only up to the pool: the best target row. The target is the largest size's full run.
    Without `drift` the cheaper sizes' optimum is the target's (their ranking is faithful up
    to the ripple and the noise)."""
    rng = np.random.default_rng(seed)
    optimum = rng.dirichlet(np.full(k, 2.0))
    shift = rng.dirichlet(np.ones(k))
    domains = [f"d{i}" for i in range(k)]
    sizes = sweep.sizes
    largest = max(sizes, key=sizes.__getitem__)
    data = {
        "name": name,
        "domains": domains,
        "objective": {"metrics": "loss"},
        "fidelities": {
            "model_sizes": sizes,
            "pairs": [[s, t] for s in sizes for t in sweep.tokens[s]],
            "target": {"model_size": largest, "tokens": max(sweep.tokens[largest])},
        },
        "budget": {"max_trials": sweep.max_trials, "max_cost": sweep.budget},
        "runner": {"kind": "replay", "table": "regmix-pile", "mode": "pool"},
        "optimizer": {"n_initial": 6},
    }
    config = parse_config(data, name)
    truth_runner = SyntheticRunner(config, optimum, shift if drift else optimum, mislead)
    shared = rng.dirichlet(np.ones(k), sweep.shared)
    extra = {s: rng.dirichlet(np.ones(k), n) for s, n in sweep.extra.items()}
    rows: list[tuple[str, str, str, float, np.ndarray]] = []
    for size in sizes:
        mixtures = np.vstack([shared, extra.get(size, np.empty((0, k)))])
        for j, w in enumerate(mixtures):
            rows += [(f"{size}-{j}@{t:g}", f"{size}-{j}", size, t, w) for t in sweep.tokens[size]]
    fids = {(f.model_size, f.tokens): f for f in config.fidelities.grid()}
    values = np.array(
        [
            [truth_runner.value(w, fids[(s, t)]) + noise * rng.standard_normal()]
            for *_, s, t, w in rows
        ]
    )
    cost = np.array([6.0 * sizes[r[2]] * r[3] for r in rows])
    if cost_noise > 0:
        cost *= np.exp(cost_noise * rng.standard_normal(len(rows)))
    table = RunTable(
        source=name,
        run_ids=[r[0] for r in rows],
        domains=domains,
        metrics=["loss"],
        model_size=[r[2] for r in rows],
        tokens=np.array([r[3] for r in rows]),
        weights=np.array([r[4] for r in rows]),
        values=values,
        cost=cost,
        runs=[r[1] for r in rows],
    )
    return replay_problem(name, config, table)


PROBLEMS: dict[str, Callable[[], Problem]] = {
    "pile-pool": lambda: _pile("pile-pool", "pool"),
    "pile-cc-pool": lambda: _pile("pile-cc-pool", "pool", "loss.pile_cc"),
    "pile-continuous": lambda: _pile("pile-continuous", "continuous"),
    "synth-3": lambda: synthetic_problem("synth-3", 3, seed=3),
    "synth-8": lambda: synthetic_problem("synth-8", 8, seed=8),
    "synth-mislead": lambda: synthetic_problem("synth-mislead", 5, seed=5, mislead=1.5),
    "synth-curves": lambda: synthetic_problem("synth-curves", 5, seed=6, token_steps=3),
    "synth-pool": lambda: synthetic_pool_problem("synth-pool", 6, seed=11),
    "synth-mislead-pool": lambda: synthetic_pool_problem(
        "synth-mislead-pool", 6, seed=12, mislead=1.5
    ),
    "synth-sweep": lambda: synthetic_pool_problem(
        "synth-sweep", 8, seed=13, sweep=FIVE_SIZES, cost_noise=0.1
    ),
    "synth-steps": lambda: synthetic_pool_problem("synth-steps", 6, seed=14, sweep=ONE_SIZE),
}
SUITE = list(PROBLEMS)


def csv_problem(
    path: Path,
    target: str,
    objective: list[str],
    mode: str = "pool",
    budget: float = 20.0,
    max_trials: int = 60,
    direction: str = "minimize",
) -> Problem:
    """A bring-your-own-runs problem from any CSV in the run-table schema (README)."""
    table = RunTable.load(str(path))
    # A study name is an identifier; a file name may have spaces ("my runs.csv").
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", path.stem).strip("-.") or "runs"
    size, _, tokens_text = target.partition(":")
    fids = sorted({(s, float(t)) for s, t in zip(table.model_size, table.tokens, strict=True)})
    if not tokens_text:
        at_size = [t for s, t in fids if s == size]
        if not at_size:
            known = sorted({s for s, _ in fids})
            raise ValueError(f"--target {target}: no runs of size {size!r}; sizes: {known}")
        tokens = max(at_size)
    else:
        tokens = float(tokens_text)
    params = {}
    for s in {s for s, _ in fids}:
        rows = [i for i, m in enumerate(table.model_size) if m == s]
        cost = float(np.nanmean(table.cost[rows]))
        params[s] = cost / max(t for m, t in fids if m == s) * 1.0 if math.isfinite(cost) else 1.0
    data = {
        "name": name,
        "domains": list(table.domains),
        "objective": {"metrics": objective, "direction": direction},
        "fidelities": {
            "model_sizes": {s: max(p, 1e-30) for s, p in params.items()},
            "pairs": [[s, t] for s, t in fids],
            "target": {"model_size": size, "tokens": tokens},
        },
        "budget": {"max_trials": max_trials, "max_cost": budget},
        "runner": {"kind": "replay", "table": str(path.resolve()), "mode": mode},
    }
    return replay_problem(name, parse_config(data, str(path)), table)


def load_problem(name: str, **byo: object) -> Problem:
    """A named problem, or a CSV path (then `target` and `objective` are needed)."""
    if name in PROBLEMS:
        return PROBLEMS[name]()
    path = Path(name)
    if path.suffix == ".csv" and path.is_file():
        if not byo.get("target") or not byo.get("objective"):
            raise ValueError("a CSV problem needs --target SIZE[:TOKENS] and --objective METRIC")
        return csv_problem(path, **byo)  # type: ignore[arg-type]
    raise ValueError(f"unknown problem {name!r}; known: {', '.join(PROBLEMS)}, or a .csv path")
