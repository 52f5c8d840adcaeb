"""`python -m admire run|resume|status|best|bench`: the command line over `admire.Study`.

Exit codes: 0 done, 1 the study failed while running, 2 bad input (config, names, an existing
or locked study); with 2 nothing has been written to the tracking store.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from typing import NoReturn

os.environ.setdefault("OMP_NUM_THREADS", "1")


class _Parser(argparse.ArgumentParser):
    """argparse with its errors on one line (the usage is one `--help` away)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def _positive(kind: type[int] | type[float]) -> Callable[[str], int | float]:
    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not value > 0:
            raise argparse.ArgumentTypeError(f"must be positive, got {text}")
        return value

    return parse


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="admire", description=__doc__.splitlines()[0])
    uri_help = "MLflow tracking URI (default: MLFLOW_TRACKING_URI or sqlite:///mlruns/mlflow.db)"
    p.add_argument("--tracking-uri", help=uri_help)
    # Also accepted after the command (`admire run x.yaml --tracking-uri ...`).
    common = _Parser(add_help=False)
    common.add_argument("--tracking-uri", default=argparse.SUPPRESS, help=uri_help)
    sub = p.add_subparsers(dest="command", required=True)

    def command(name: str, help: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help, parents=[common])

    run = command("run", "start a study from studies/NAME.yaml and run it")
    run.add_argument("config", help="path to the study YAML")
    run.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an existing study of the same name (old runs are soft-deleted)",
    )
    resume = command("resume", "continue a study after a crash or a finished budget")
    resume.add_argument("name")
    resume.add_argument("--max-trials", type=_positive(int), help="run this many more trials")
    resume.add_argument(
        "--max-cost", type=_positive(float), help="spend this many more target-run units"
    )
    status = command("status", "trials, cost and recommendation of a study")
    status.add_argument("name")
    best = command("best", "print the recommended mixture of a study")
    best.add_argument("name")
    bench = command("bench", "compare mixture optimisers on a replay problem over many seeds")
    bench.add_argument(
        "problem",
        help="a problem (pile-pool, pile-cc-pool, pile-continuous, synth-3, synth-8, "
        "synth-mislead, synth-curves), `suite` for all of them, or a run-table CSV path",
    )
    bench.add_argument("--seeds", type=int, default=20)
    bench.add_argument("--out", default=None, help="output folder (default bench-results/PROBLEM)")
    bench.add_argument("--methods", default="", help="comma-separated subset of the methods")
    bench.add_argument(
        "--workers", type=int, default=None, help="parallel processes (default: cores)"
    )
    bench.add_argument("--target", help="CSV problems: target fidelity as SIZE or SIZE:TOKENS")
    bench.add_argument("--objective", action="append", help="CSV problems: metric name/pattern")
    bench.add_argument("--mode", choices=["pool", "continuous"], default="pool")
    bench.add_argument("--budget", type=float, default=20.0, help="CSV problems: target-run units")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from admire.config import ConfigError
    from admire.study import Study, StudyExistsError, StudyLockedError, StudyNotFoundError
    from admire.tracking import TrackingStoreError

    if args.command == "bench":
        return _bench(args)
    try:
        if args.command == "run":
            study = Study.create(
                args.config, tracking_uri=args.tracking_uri, overwrite=args.overwrite
            )
            print(f"[{study.name}] tracking in {study.store.uri} (parent run {study.parent_id})")
            study.optimize()
        elif args.command == "resume":
            study = Study.load(args.name, tracking_uri=args.tracking_uri)
            study.resume(max_trials=args.max_trials, max_cost=args.max_cost)
        elif args.command == "status":
            study = Study.load(args.name, tracking_uri=args.tracking_uri)
            trials = study.trials
            states = {
                s: sum(t.state == s for t in trials) for s in ("COMPLETED", "FAILED", "RUNNING")
            }
            print(
                f"study {study.name}: {len(trials)} trials {states}, "
                f"cost {study.spent(trials):.4g} target-run units"
            )
            rec = study.best()
            print(rec if rec is not None else "no completed trial yet")
        elif args.command == "best":
            rec = Study.load(args.name, tracking_uri=args.tracking_uri).best()
            print(rec if rec is not None else "no completed trial yet")
    except (
        ConfigError,
        StudyExistsError,
        StudyNotFoundError,
        StudyLockedError,
        TrackingStoreError,
    ) as err:
        print(f"admire: {err}", file=sys.stderr)
        return 2
    return 0


def _bench(args: argparse.Namespace) -> int:
    from pathlib import Path

    from admire.bench.harness import format_summary, run_bench, run_suite
    from admire.config import ConfigError

    if args.tracking_uri:
        os.environ["MLFLOW_TRACKING_URI"] = args.tracking_uri
    byo = {}
    if args.target or args.objective:
        byo = {
            "target": args.target,
            "objective": args.objective,
            "mode": args.mode,
            "budget": args.budget,
        }
    out = Path(args.out or Path("bench-results") / Path(args.problem).stem)
    methods = [m for m in args.methods.split(",") if m] or None
    try:
        if args.problem == "suite":
            rows = run_suite(args.seeds, out, methods, args.workers)
        else:
            rows = run_bench(args.problem, args.seeds, out, methods, args.workers, byo)
    except (ValueError, ConfigError) as err:
        print(f"admire bench: {err}", file=sys.stderr)
        return 2
    print(format_summary(rows, SUITE_TABLE if args.problem == "suite" else None))
    print(f"wrote {out}/summary.csv, results.csv and plots")
    return 0


SUITE_TABLE = [
    "problem",
    "method",
    "seeds",
    "cost_to_best_median",
    "cost_to_best_stable_median",
    "regret_at_1",
    "regret_at_2",
    "regret_at_5",
    "final_regret_median",
    "coverage_2sd",
    "sec_per_proposal_median",
]
