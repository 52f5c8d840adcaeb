"""Command runner: every trial runs the user's own training command (README, "Your own trainer").

The trial reaches the command three ways, all carrying the same values: placeholders in the
command line (`{weights_json}`, `{tokens}`, ... see `COMMAND_PLACEHOLDERS`), ADMIRE_*
environment variables, and a trial JSON file (`{trial_json}`, ADMIRE_TRIAL_JSON). The study's
MLflow run for the trial is handed over as MLFLOW_RUN_ID / MLFLOW_PARENT_RUN_ID /
MLFLOW_TRACKING_URI. The command reports its metrics in a results file under its output
folder, or by logging them to that MLflow run (`results: mlflow`); the runner reads them back.

A trial runs as a `CommandTrialTask` (plain data), in this process or in a Ray worker, in its
own process group with the runner's deadline. A non-zero exit, the timeout, a missing or
malformed results file or a missing metric make a failed trial with the reason; the study goes
on. Cost is the measured wall time.
"""

from __future__ import annotations

import json
import math
import os
import shlex
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from admire.config import PLACEHOLDER, CommandRunnerConfig, Fidelity, StudyConfig
from admire.runners.base import PoolRow, TrialResult, TrialSpec, scratch_folder, scratch_name
from admire.runners.process import ProcessOutcome, run_process

TRIAL_JSON = "trial.json"
MAX_INFO_CHARS = 2000
Evaluation = tuple[int, dict[str, float]]


class CommandRunner:
    """Runs the user's training command once per trial; safe to call from several threads."""

    def __init__(
        self, config: CommandRunnerConfig, domains: list[str], params: dict[str, float]
    ) -> None:
        self.config = config
        self.domains = domains
        self.params = params
        self._metrics = config.metric_names(domains)

    @classmethod
    def from_config(cls, config: StudyConfig) -> CommandRunner:
        assert isinstance(config.runner, CommandRunnerConfig)
        return cls(config.runner, config.domain_names, dict(config.fidelities.model_sizes))

    def metric_names(self) -> list[str]:
        return list(self._metrics)

    def pool(self) -> list[PoolRow] | None:
        return None

    def expected_cost(self, fidelity: Fidelity) -> float | None:
        """Unknown in advance: the study prices fidelities by FLOPs until trials are timed."""
        return None

    def reference(self, weights: dict[str, float], fidelity: Fidelity) -> dict[str, float] | None:
        return None

    def task(self, spec: TrialSpec) -> CommandTrialTask:
        """The trial as a task; its output folder and paths are made where it runs."""
        return CommandTrialTask(
            spec=spec,
            params=self.params[spec.fidelity.model_size],
            config=self.config.model_copy(update={"cwd": str(Path(self.config.cwd).resolve())}),
            metrics=self.metric_names(),
            domains=list(self.domains),
            scratch=scratch_name(spec.index),
        )

    def run(self, spec: TrialSpec) -> TrialResult:
        return self.task(spec)()


class ResultsError(ValueError):
    """The command's results cannot be read; the message says where and why."""


@dataclass(frozen=True)
class CommandTrialTask:
    """One run of the user's command as plain data; calling it runs the trial."""

    spec: TrialSpec
    params: float
    config: CommandRunnerConfig
    metrics: list[str]
    domains: list[str]
    scratch: str
    """The output folder's name when the config sets no `out_dir` (`scratch_folder`)."""

    @property
    def tokens(self) -> int:
        return int(self.spec.fidelity.tokens)

    def __call__(self) -> TrialResult:
        if self.config.out_dir is None:
            with scratch_folder(self.scratch) as out_dir:
                return self._run_in(out_dir.resolve())
        out_dir = Path(self.config.out_dir) / f"trial-{self.spec.index:04d}"
        out_dir.mkdir(parents=True, exist_ok=True)
        return self._run_in(out_dir.resolve())

    def values(self, out_dir: Path) -> dict[str, str]:
        """What each placeholder stands for in this trial."""
        values = {
            "python": sys.executable,
            "trial_json": str(out_dir / TRIAL_JSON),
            "weights_json": json.dumps(self.spec.weights, separators=(",", ":")),
            "model_size": self.spec.fidelity.model_size,
            "params": f"{self.params:.0f}",
            "tokens": str(self.tokens),
            "seed": str(self.spec.seed),
            "index": str(self.spec.index),
            "out_dir": str(out_dir),
            "run_id": self.spec.tracking.run_id if self.spec.tracking else "",
        }
        if self.config.results == "mlflow":
            return values | {"results": "mlflow"}
        return values | {"results": str(out_dir / _fill(self.config.results, values))}

    def argv(self, values: dict[str, str]) -> list[str]:
        """The command line of this trial, placeholders filled in."""
        command = self.config.command
        if self.config.shell:
            line = command if isinstance(command, str) else shlex.join(command)
            return ["/bin/sh", "-c", _fill(line, values, quote=True)]
        parts = shlex.split(command) if isinstance(command, str) else command
        return [_fill(p, values) for p in parts]

    def _run_in(self, out_dir: Path) -> TrialResult:
        values = self.values(out_dir)
        results = None if values["results"] == "mlflow" else Path(values["results"])
        if results is not None:
            results.unlink(missing_ok=True)  # left by an interrupted earlier attempt
        trial = {
            "index": self.spec.index,
            "weights": self.spec.weights,
            "model_size": self.spec.fidelity.model_size,
            "params": self.params,
            "tokens": self.tokens,
            "seed": self.spec.seed,
            "out_dir": str(out_dir),
            "results": values["results"],
            "metrics": self.metrics,
            "domains": self.domains,
            "mlflow": None if self.spec.tracking is None else asdict(self.spec.tracking),
        }
        Path(values["trial_json"]).write_text(json.dumps(trial, indent=2))
        argv = self.argv(values)
        info = {"command": shlex.join(argv)[:MAX_INFO_CHARS]}
        if self.config.out_dir is not None:
            info["out_dir"] = str(out_dir)
        proc = run_process(
            argv,
            timeout_s=self.config.timeout_s,
            label=f"trial {self.spec.index}",
            env=self._environment(values),
            cwd=Path(self.config.cwd),
        )
        if proc.start_error:
            return _failed(proc, f"could not start the command {argv[0]!r}: {proc.start_error}")
        if proc.timed_out:
            limit = self.config.timeout_s
            return _failed(proc, f"timed out after {limit:g} s (runner.timeout_s)", info)
        if proc.code != 0:
            return _failed(proc, f"the command {proc.ended}:\n{proc.tail}", info)
        try:
            if results is None:
                evaluations, extra = self._from_mlflow(), {}
            else:
                evaluations, extra = read_results(results, self.tokens)
            final = self._final(evaluations)
        except ResultsError as err:
            return _failed(proc, f"{err}\n{proc.tail}".rstrip(), info)
        return TrialResult(
            metrics=final,
            cost=proc.elapsed,
            info=info | extra | {"wall_s": f"{proc.elapsed:.2f}"},
            curve=evaluations,
        )

    def _environment(self, values: dict[str, str]) -> dict[str, str]:
        env = dict(os.environ)
        for key in ("MLFLOW_RUN_ID", "MLFLOW_PARENT_RUN_ID"):
            env.pop(key, None)  # a run of whoever started admire is not this trial's
        env |= {
            "ADMIRE_TRIAL_JSON": values["trial_json"],
            "ADMIRE_WEIGHTS_JSON": values["weights_json"],
            "ADMIRE_MODEL_SIZE": values["model_size"],
            "ADMIRE_PARAMS": values["params"],
            "ADMIRE_TOKENS": values["tokens"],
            "ADMIRE_SEED": values["seed"],
            "ADMIRE_TRIAL_INDEX": values["index"],
            "ADMIRE_OUT_DIR": values["out_dir"],
            "ADMIRE_RESULTS": values["results"],
        }
        if self.spec.tracking is not None:
            env |= {
                "MLFLOW_RUN_ID": self.spec.tracking.run_id,
                "MLFLOW_PARENT_RUN_ID": self.spec.tracking.parent_run_id,
                "MLFLOW_TRACKING_URI": self.spec.tracking.tracking_uri,
            }
        return env | {k: _fill(v, values) for k, v in self.config.env.items()}

    def _final(self, evaluations: list[Evaluation]) -> dict[str, float]:
        if not evaluations:
            raise ResultsError("the command reported no evaluation")
        last = evaluations[-1][1]
        missing = [m for m in self.metrics if m not in last]
        if missing:
            raise ResultsError(
                f"the last evaluation lacks the metrics {missing} (runner.metrics declares "
                f"them; it has {sorted(last)})"
            )
        bad = {m: last[m] for m in self.metrics if not math.isfinite(last[m])}
        if bad:
            raise ResultsError(f"the command reported non-finite metrics {bad}")
        return {m: last[m] for m in self.metrics}

    def _from_mlflow(self) -> list[Evaluation]:
        """The declared metrics the command logged to its MLflow run, by step (= tokens)."""
        if self.spec.tracking is None:
            raise ResultsError(
                "runner.results is `mlflow`, but this trial has no MLflow run (run it in a study)"
            )
        from mlflow.tracking import MlflowClient

        client = MlflowClient(tracking_uri=self.spec.tracking.tracking_uri)
        by_step: dict[int, dict[str, float]] = {}
        for name in self.metrics:
            history = client.get_metric_history(self.spec.tracking.run_id, name)
            # A rerun of an interrupted trial logs again to the same run: the latest value wins.
            for m in sorted(history, key=lambda m: (m.step, m.timestamp)):
                by_step.setdefault(m.step, {})[name] = m.value
        if not by_step:
            raise ResultsError(
                f"the command logged none of {self.metrics} to its MLflow run "
                f"{self.spec.tracking.run_id}"
            )
        steps = sorted(by_step)
        # The final result is each metric's latest value; step 0 means "logged without a step".
        final = {k: v for s in steps for k, v in by_step[s].items()}
        curve = [(s, by_step[s]) for s in steps if s > 0]
        if not curve:
            return [(self.tokens, final)]
        curve[-1] = (curve[-1][0], final)
        return curve


def read_results(path: Path, tokens: int) -> tuple[list[Evaluation], dict[str, str]]:
    """A results file's evaluations (tokens seen, metrics), the last being the final result,
    and its `info` strings. `.jsonl`: one evaluation per line. `.json`: one object, the final
    evaluation, with an optional `curve` list of earlier ones. `tokens` defaults to the trial's
    budget. Raises ResultsError naming the file, the line and the problem."""
    if not path.is_file():
        raise ResultsError(f"the command wrote no results file {path} (runner.results)")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ResultsError(f"results file {path}: cannot be read ({err})") from None
    if path.suffix == ".jsonl":
        lines = [(n, line) for n, line in enumerate(text.splitlines(), 1) if line.strip()]
        if not lines:
            raise ResultsError(f"results file {path} is empty")
        records = [(f"{path} line {n}", _json(line, f"{path} line {n}")) for n, line in lines]
    else:
        top = _json(text, str(path))
        if not isinstance(top, dict):
            raise ResultsError(f"results file {path}: expected an object with a `metrics` mapping")
        curve = top.pop("curve", [])
        if not isinstance(curve, list):
            raise ResultsError(f"results file {path}: `curve` must be a list of evaluations")
        records = [(f"{path} curve[{i}]", point) for i, point in enumerate(curve)]
        records.append((str(path), top))
    evaluations: list[Evaluation] = []
    info: dict[str, str] = {}
    for where, record in records:
        point, extra = _evaluation(record, where, tokens)
        if evaluations and evaluations[-1] == point:
            continue
        evaluations.append(point)
        info |= extra
    return evaluations, info


def _json(text: str, where: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise ResultsError(f"results file {where}: not valid JSON ({err})") from None


def _evaluation(record: Any, where: str, tokens: int) -> tuple[Evaluation, dict[str, str]]:
    if not isinstance(record, dict) or not isinstance(record.get("metrics"), dict):
        raise ResultsError(f"results file {where}: expected an object with a `metrics` mapping")
    unknown = sorted(set(record) - {"tokens", "metrics", "info"})
    if unknown:
        raise ResultsError(f"results file {where}: unknown fields {unknown}")
    seen = record.get("tokens", tokens)
    if isinstance(seen, bool) or not isinstance(seen, int | float) or seen <= 0:
        raise ResultsError(f"results file {where}: `tokens` must be a positive number")
    metrics: dict[str, float] = {}
    for name, value in record["metrics"].items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ResultsError(f"results file {where}: metric {name!r} is not a number")
        metrics[name] = float(value)
    info = record.get("info", {})
    if not isinstance(info, dict):
        raise ResultsError(f"results file {where}: `info` must be a mapping")
    return (int(seen), metrics), {str(k): str(v)[:MAX_INFO_CHARS] for k, v in info.items()}


def _fill(text: str, values: dict[str, str], quote: bool = False) -> str:
    return PLACEHOLDER.sub(lambda m: shlex.quote(values[m[1]]) if quote else values[m[1]], text)


def _failed(proc: ProcessOutcome, error: str, info: dict[str, str] | None = None) -> TrialResult:
    return TrialResult({}, proc.elapsed, failed=True, error=error, info=dict(info or {}))
