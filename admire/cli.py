"""admire: find the best training-data mixture for your target model size with cheap proxy runs.

A study (studies/NAME.yaml) names your data domains, the objective, the proxy fidelities and a
budget; `run` starts it, every trial is an MLflow run (`make ui` to look), and `best`/`export`
hand you the recommended mixture. Exit codes: 0 done, 1 the study failed while running, 2 bad
input (config, names, an existing or locked study); with 2 nothing has been written.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, NoReturn

os.environ.setdefault("OMP_NUM_THREADS", "1")

if TYPE_CHECKING:
    from admire.study import Recommendation, Study

EPILOG = """examples:
  python -m admire run studies/pile-replay.yaml     start a study and run it to its budget
  python -m admire status pile-replay               how far it is, what runs, the best so far
  python -m admire best pile-replay                 the recommended mixture, every domain
  python -m admire export pile-replay --tokens 1e9  the mixture for your training config
  python -m admire resume pile-replay --max-trials 10   ten more trials
"""


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
    p = _Parser(
        prog="admire",
        description=__doc__,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    store_help = (
        "MLflow store to use (default: $MLFLOW_TRACKING_URI, else sqlite:///mlruns/mlflow.db)"
    )
    p.add_argument("--tracking-uri", help=store_help)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, func: Callable[[argparse.Namespace], int], text: str):  # type: ignore[no-untyped-def]
        sp = sub.add_parser(name, help=text, description=text)
        sp.set_defaults(func=func)
        # Also accepted after the command; SUPPRESS keeps a value given before it.
        sp.add_argument("--tracking-uri", default=argparse.SUPPRESS, help=store_help)
        return sp

    def study_name(sp: argparse.ArgumentParser) -> None:
        sp.add_argument(
            "name", help="the study's name (its `name:` field; `admire list` shows them)"
        )

    run = command("run", _run, "start a study from its YAML file and run it to its budget")
    run.add_argument("config", help="the study file, e.g. studies/pile-replay.yaml")
    run.add_argument(
        "--overwrite",
        action="store_true",
        help="replace a study of the same name (its old runs are soft-deleted, restorable)",
    )
    resume = command(
        "resume", _resume, "continue a study: after a crash, or for more trials or budget"
    )
    study_name(resume)
    resume.add_argument("--max-trials", type=_positive(int), help="run this many more trials")
    resume.add_argument(
        "--max-cost", type=_positive(float), help="spend this many more target-run units"
    )
    status = command(
        "status", _status, "is it running, how many trials and how much cost, best so far"
    )
    study_name(status)
    best = command("best", _best, "the recommended mixture (every domain's weight)")
    study_name(best)
    best.add_argument("--json", action="store_true", help="print it as JSON")
    trials = command("trials", _trials, "every trial: state, fidelity, objective, cost, mixture")
    study_name(trials)
    trials.add_argument("--csv", action="store_true", help="all columns as CSV (for pandas)")
    export = command(
        "export",
        _export,
        "the recommended mixture for a training config: {domain: weight}, Hugging Face "
        "interleave_datasets probabilities, and with --tokens the tokens per domain",
    )
    study_name(export)
    export.add_argument("--format", choices=["yaml", "json"], default="yaml")
    export.add_argument(
        "--tokens",
        type=_positive_tokens,
        help="total training tokens (e.g. 2.5e10): adds tokens per domain, within epoch caps",
    )
    export.add_argument("--out", help="write to this file instead of printing")
    command("list", _list, "the studies in the store, with state, trials, cost and best")
    delete = command("delete", _delete, "delete a study (runs are soft-deleted, restorable)")
    study_name(delete)
    delete.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    bench = command(
        "bench", _bench, "compare mixture optimisers on a replay problem over many seeds"
    )
    bench.add_argument(
        "problem",
        help="a problem (pile-pool, pile-cc-pool, pile-continuous, synth-3, synth-8, "
        "synth-mislead, synth-curves, synth-pool, synth-mislead-pool, synth-sweep, synth-steps), "
        "`suite` for all of them, or a run-table CSV path",
    )
    bench.add_argument("--seeds", type=_positive(int), default=20)
    bench.add_argument(
        "--first-seed",
        type=_non_negative,
        default=0,
        help="seeds FIRST.. (default 0): more seeds for an earlier run, judged with "
        "`admire verdict` together",
    )
    bench.add_argument("--out", default=None, help="output folder (default bench-results/PROBLEM)")
    bench.add_argument("--methods", default="", help="comma-separated subset of the methods")
    bench.add_argument(
        "--workers", type=int, default=None, help="parallel processes (default: cores)"
    )
    bench.add_argument(
        "--concurrent",
        type=_positive(int),
        default=1,
        help="trials in flight per study (proposals made with the others pending)",
    )
    _add_table_options(bench)
    judged = command(
        "verdict",
        _verdict,
        "admire against the best other method on one problem, from the results of one or "
        "more bench runs (e.g. admire's and the baselines' run apart), with a bootstrap "
        "interval of the ratio over seeds",
    )
    judged.add_argument("problem", help="the problem the runs were made on (as for `bench`)")
    judged.add_argument(
        "folders", nargs="+", help="bench output folders (--out), each with its results.csv"
    )
    _add_table_options(judged)
    return p


def _add_table_options(sp: argparse.ArgumentParser) -> None:
    """The options that make a problem of a run-table CSV."""
    sp.add_argument("--target", help="CSV problems: target fidelity as SIZE or SIZE:TOKENS")
    sp.add_argument("--objective", action="append", help="CSV problems: metric name/pattern")
    sp.add_argument(
        "--direction",
        choices=["minimize", "maximize"],
        default="minimize",
        help="CSV problems: minimize a loss (default) or maximize a score",
    )
    sp.add_argument("--mode", choices=["pool", "continuous"], default="pool")
    sp.add_argument("--budget", type=float, default=20.0, help="CSV problems: target-run units")


def _non_negative(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return value


def _positive_tokens(text: str) -> int:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value >= 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text}")
    return int(value)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from admire.config import ConfigError
    from admire.study import (
        StudyExistsError,
        StudyLockedError,
        StudyNotFoundError,
        TooManyFailuresError,
    )
    from admire.tracking import TrackingStoreError

    try:
        return args.func(args)
    except (
        ConfigError,
        StudyExistsError,
        StudyNotFoundError,
        StudyLockedError,
        TrackingStoreError,
    ) as err:
        print(f"admire: {err}", file=sys.stderr)
        return 2
    except TooManyFailuresError as err:  # trials were written: not bad input
        print(f"admire: {err}", file=sys.stderr)
        return 1


def _load(args: argparse.Namespace) -> Study:
    from admire.study import Study

    return Study.load(args.name, tracking_uri=args.tracking_uri)


def _optimize(study: Study, max_trials: int | None, max_cost: float | None) -> int:
    """Run the study with a live display on a terminal, plain lines otherwise (logs, CI)."""
    if not sys.stdout.isatty():
        study.optimize(max_trials, max_cost)
        return 0
    from admire.console import LiveDisplay
    from admire.trial import budget_trials

    records = study.trials
    if max_trials is None and max_cost is None:
        trial_cap, cost_cap = study.config.budget.max_trials, study.config.budget.max_cost
    else:
        trial_cap = None if max_trials is None else budget_trials(records) + max_trials
        cost_cap = None if max_cost is None else study.spent(records) + max_cost
    with LiveDisplay(study, trial_cap, cost_cap) as live:
        rec = study.optimize(max_trials, max_cost, progress=False, callback=live.on_trial)
    print(rec if rec is not None else "no completed trial")
    return 0


def _run(args: argparse.Namespace) -> int:
    from admire.console import study_url
    from admire.study import Study

    study = Study.create(args.config, tracking_uri=args.tracking_uri, overwrite=args.overwrite)
    print(f"[{study.name}] tracking in {study.store.uri} (parent run {study.parent_id})")
    print(f"[{study.name}] in the MLflow UI (`make ui`): {study_url(study)}")
    return _optimize(study, None, None)


def _resume(args: argparse.Namespace) -> int:
    return _optimize(_load(args), args.max_trials, args.max_cost)


def _status(args: argparse.Namespace) -> int:
    from admire.console import status_text

    print(status_text(_load(args)))
    return 0


def _recommendation(study: Study) -> Recommendation | None:
    rec = study.best()
    if rec is None:
        print(f"study {study.name}: no completed trial yet", file=sys.stderr)
    return rec


def _best(args: argparse.Namespace) -> int:
    import json

    from admire.console import best_text
    from admire.report import recommendation_dict

    study = _load(args)
    rec = _recommendation(study)
    if rec is None:
        return 1
    if args.json:
        print(json.dumps(recommendation_dict(study, rec, study.trials), indent=2))
    else:
        print(best_text(study, rec))
    return 0


def _trials(args: argparse.Namespace) -> int:
    from admire.console import trials_table

    study = _load(args)
    df = study.trials_dataframe()
    if args.csv:
        print(df.to_csv(index=False), end="")
    else:
        print(trials_table(df, study.mixtures.names))
    return 0


def _export(args: argparse.Namespace) -> int:
    from pathlib import Path

    from admire.export import dump, mixture_export

    study = _load(args)
    rec = _recommendation(study)
    if rec is None:
        return 1
    caps_of = getattr(study.runner, "domain_caps", None)
    caps = caps_of(args.tokens) if caps_of is not None and args.tokens else {}
    weights = {d: rec.weights[d] for d in study.mixtures.names}
    try:
        data = mixture_export(
            study.name, rec.fidelity, rec.predicted, rec.predicted_sd, weights, args.tokens, caps
        )
    except ValueError as err:
        print(f"admire: {err}", file=sys.stderr)
        return 2
    text = dump(data, args.format)
    if args.out:
        Path(args.out).write_text(text)
        print(f"wrote {args.out}")
    else:
        print(text, end="")
    return 0


def _list(args: argparse.Namespace) -> int:
    from admire.console import studies_table
    from admire.tracking import StudyStore

    print(studies_table(StudyStore(args.tracking_uri)))
    return 0


def _delete(args: argparse.Namespace) -> int:
    from admire.study import StudyLockedError, StudyNotFoundError
    from admire.tracking import StudyStore, is_driven

    store = StudyStore(args.tracking_uri)
    parent = store.find_study(args.name)
    if parent is None:
        raise StudyNotFoundError(f"no study '{args.name}' in {store.uri}")
    if is_driven(store.uri, args.name):
        raise StudyLockedError(f"study '{args.name}' is running; stop it before deleting it")
    if not args.yes:
        if not sys.stdin.isatty():
            print("admire: delete needs --yes when not run from a terminal", file=sys.stderr)
            return 2
        if input(f"delete study '{args.name}' from {store.uri}? [y/N] ").strip().lower() != "y":
            return 1
    n = store.delete_study(parent, experiment=True)
    print(f"deleted study '{args.name}' ({n} runs; restorable with MLflow until garbage-collected)")
    return 0


def _bench(args: argparse.Namespace) -> int:
    from pathlib import Path

    from admire.bench.harness import exit_on_sigterm, format_summary, run_bench, run_suite
    from admire.config import ConfigError

    if args.tracking_uri:
        os.environ["MLFLOW_TRACKING_URI"] = args.tracking_uri
    byo = _table_byo(args)
    out = Path(args.out or Path("bench-results") / Path(args.problem).stem)
    methods = [m for m in args.methods.split(",") if m] or None
    exit_on_sigterm()
    try:
        if args.problem == "suite":
            rows = run_suite(args.seeds, out, methods, args.workers, first_seed=args.first_seed)
        else:
            rows = run_bench(
                args.problem,
                args.seeds,
                out,
                methods,
                args.workers,
                byo,
                concurrent=args.concurrent,
                first_seed=args.first_seed,
            )
    except (ValueError, ConfigError) as err:
        print(f"admire bench: {err}", file=sys.stderr)
        return 2
    print(format_summary(rows, SUITE_TABLE if args.problem == "suite" else None))
    print(f"wrote {out}/summary.csv, results.csv and plots")
    return 0


def _table_byo(args: argparse.Namespace) -> dict:
    if not (args.target or args.objective):
        return {}
    return {
        "target": args.target,
        "objective": args.objective,
        "direction": args.direction,
        "mode": args.mode,
        "budget": args.budget,
    }


def _verdict(args: argparse.Namespace) -> int:
    from pathlib import Path

    from admire.bench.harness import judge
    from admire.bench.verdict import format_verdict
    from admire.config import ConfigError

    try:
        judged = judge(args.problem, [Path(f) for f in args.folders], _table_byo(args))
    except (ValueError, ConfigError) as err:
        print(f"admire verdict: {err}", file=sys.stderr)
        return 2
    if judged is None:
        print("admire verdict: the runs need admire and at least one other method", file=sys.stderr)
        return 2
    print(format_verdict([judged]))
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
