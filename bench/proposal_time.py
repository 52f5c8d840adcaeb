"""Median optimiser time per proposal with 100 observations, 17 domains (RegMix Pile).

    make bench            # or: python bench/proposal_time.py [--repeats 5] [--threads 1]

The 100 observations are released RegMix runs (70 at 1M, 20 at 60M, 10 at 1B, drawn with a
fixed seed); each proposal refits the GP from scratch and scores the acquisition, exactly as
a study does. Printed per replay mode: median and IQR seconds, and the split between fit and
acquisition. A benchmark, not a test: timings depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from admire.config import load_config
from admire.runners.base import TrialSpec
from admire.runners.replay import ReplayRunner
from admire.study import Study
from admire.tracking import COMPLETED, TrialRecord


def records_from_table(
    study: Study, runner: ReplayRunner, n_per_size: dict[str, int], seed: int
) -> list[TrialRecord]:
    rng = np.random.default_rng(seed)
    pool = runner.table
    out: list[TrialRecord] = []
    for fid in study.fidelities.fidelities:
        rows = pool.rows_at(fid)
        for i in rng.choice(rows, size=n_per_size[fid.model_size], replace=False):
            w = {d: float(pool.weights[i, pool.domains.index(d)]) for d in study.mixtures.names}
            spec = TrialSpec(len(out), w, fid, seed, pool.run_ids[i])
            metrics = dict(zip(pool.metrics, map(float, pool.values[i]), strict=False))
            metrics["objective"] = study.config.objective.combine(metrics, study.metrics)
            metrics["cost.raw"] = float(pool.cost[i])
            out.append(TrialRecord("bench", spec, COMPLETED, "bench", metrics))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(
        f"admire proposal time: 100 observations, 17 domains, {args.threads} thread(s), "
        f"{args.repeats} proposals per mode"
    )
    for mode in ("pool", "continuous"):
        base = load_config("studies/pile-replay.yaml")
        cfg = base.model_copy(update={"runner": base.runner.model_copy(update={"mode": mode})})
        runner = ReplayRunner.from_config(cfg)
        study = Study(cfg, store=None, parent_id="bench", runner=runner)  # type: ignore[arg-type]
        totals, fits = [], []
        for r in range(args.repeats):
            records = records_from_table(study, runner, {"1M": 70, "60M": 20, "1B": 10}, seed=r)
            study._model_cache = None
            t0 = time.perf_counter()
            study._model(records)
            t1 = time.perf_counter()
            proposal = study._propose(records, remaining=10.0)
            t2 = time.perf_counter()
            assert proposal is not None
            totals.append(t2 - t0)
            fits.append(t1 - t0)
        q = statistics.quantiles(totals, n=4) if len(totals) > 1 else [totals[0]] * 3
        print(
            f"  {mode:<10} median {statistics.median(totals):6.2f} s/proposal "
            f"(IQR {q[0]:.2f}-{q[2]:.2f}; GP fit {statistics.median(fits):.2f} s, "
            f"acquisition {statistics.median(totals) - statistics.median(fits):.2f} s)"
        )


if __name__ == "__main__":
    main()
