"""Median optimiser time per proposal at 50, 100, 200 and 400 observations, 17 domains
(RegMix Pile, two fidelity axes), for `admire` and `admire-ref`, through the public interface.

    make bench            # or: python benchmarks/proposal_time.py [--repeats 3] [--sizes 50,100]

Observations are released RegMix runs (70 % at 1M, 20 % at 60M, 10 % at 1B, drawn with a
fixed seed per repeat). Proposals are timed as a study makes them, one trial after another:
the optimiser decides on the first n - 10 trials, then the last 10 proposals up to n
observations are timed. `admire` fits its GP's hyperparameters only on its refit schedule
(`refit_growth`) and otherwise conditions on the new trial, so the median is a proposal
without a fit and the mean carries the fits; `admire-ref` refits on every proposal. Pool mode
scores every unused run; continuous mode scores the candidate cloud. A benchmark, not a test:
timings depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from admire.config import load_config
from admire.optim import History, SearchSpace, make_optimizer, quiet_numerics
from admire.runners.replay import ReplayRunner
from admire.space import FidelitySpace, MixtureSpace
from admire.trial import COMPLETED, TrialRecord, TrialSpec

SHARES = {"1M": 0.7, "60M": 0.2, "1B": 0.1}
STEPS = 10


def history(space: SearchSpace, runner: ReplayRunner, n: int, seed: int) -> History:
    """`n` completed trials drawn from the table, and the table's per-fidelity costs."""
    rng = np.random.default_rng(seed)
    table = runner.table
    records: list[TrialRecord] = []
    for fid in space.fidelities.fidelities:
        rows = table.rows_at(fid)
        take = min(len(rows), max(1, round(n * SHARES[fid.model_size])))
        for i in rng.choice(rows, size=take, replace=False):
            w = {d: float(table.weights[i, table.domains.index(d)]) for d in space.mixtures.names}
            metrics = dict(zip(table.metrics, map(float, table.values[i]), strict=True))
            metrics["objective"] = float(np.mean(table.values[i]))
            metrics["cost.raw"] = float(table.cost[i])
            spec = TrialSpec(len(records), w, fid, seed, table.run_ids[i])
            records.append(TrialRecord(f"r{len(records)}", spec, COMPLETED, "bench", metrics))
    order = rng.permutation(len(records))
    records = [records[i] for i in order]
    raw = np.array([runner.expected_cost(f) for f in space.fidelities.fidelities])
    return History(records, raw / raw[space.fidelities.target_index])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--sizes", default="50,100,200,400")
    ap.add_argument("--kinds", default="admire,admire-ref")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    sizes = [int(s) for s in args.sizes.split(",")]
    print(
        f"proposal time: 17 domains, 2 fidelity axes, {args.threads} thread(s), "
        f"the last {STEPS} proposals up to n observations, {args.repeats} repeats "
        "(seconds: median, mean in brackets)"
    )
    # As in a study, GPyTorch's routine jitter notices stay out of the table.
    with quiet_numerics():
        for mode in ("pool", "continuous"):
            _time_mode(mode, args, sizes)


def _time_mode(mode: str, args: argparse.Namespace, sizes: list[int]) -> None:
    """One row per optimiser kind for the "pool" or "continuous" replay of RegMix Pile."""
    base = load_config("studies/pile-replay.yaml")
    cfg = base.model_copy(update={"runner": base.runner.model_copy(update={"mode": mode})})
    runner = ReplayRunner.from_config(cfg)
    pool = runner.pool()
    space = SearchSpace(
        MixtureSpace.from_domains(list(cfg.domains)),
        FidelitySpace.from_config(cfg.fidelities),
        None if pool is None else tuple(pool),
        maximize=False,
        seed=0,
    )
    for kind in args.kinds.split(","):
        cells = []
        for n in sizes:
            times = []
            for r in range(args.repeats):
                full = history(space, runner, n, seed=r)
                opt = make_optimizer(kind, space, cfg.optimizer.options if kind == "admire" else {})
                opt.propose(History(full.records[:-STEPS], full.costs), remaining=10.0)
                for m in range(len(full.records) - STEPS + 1, len(full.records) + 1):
                    start = time.perf_counter()
                    opt.propose(History(full.records[:m], full.costs), remaining=10.0)
                    times.append(time.perf_counter() - start)
            median, mean = statistics.median(times), statistics.fmean(times)
            cells.append(f"{n}: {median:5.2f} [{mean:.2f}]")
        print(f"  {mode:<10} {kind:<10} " + "   ".join(cells), flush=True)


if __name__ == "__main__":
    main()
