"""MLflow tracking: the study's one source of truth.

Layout: one MLflow experiment per study (named after it) holding one parent run (the study,
also named after it, tagged `admire.kind=study`, carrying the validated config) and one child
run per trial (tagged `admire.kind=trial` and `trial=<index>`, nested under the parent).

A trial's child run is created with its full spec in a tag (`admire.spec`, JSON) in the same
call that creates it, so a crash can never leave a trial run without knowing what it was. Its
results are logged as one batch of metrics; the trial then is complete even if the process
dies before the `status` tag and the run's end are written (resume finishes those). The
optimiser keeps no state of its own: it rebuilds from these records, so the two never disagree.

The default store is SQLite under ./mlruns (`sqlite:///mlruns/mlflow.db`, artifacts in
./mlruns/artifacts): MLflow's recommended backend since 3.7. Any tracking URI works, via the
`tracking_uri` argument or MLFLOW_TRACKING_URI.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlparse

import yaml
from filelock import FileLock, Timeout
from mlflow.entities import Metric, Param, RunTag, ViewType
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID, MLFLOW_RUN_NOTE

from admire.config import Fidelity, StudyConfig, parse_config
from admire.space import label
from admire.trial import (
    COMPLETED,
    COST,
    FAILED,
    OBJECTIVE,
    RUNNING,
    TrialRecord,
    TrialResult,
    TrialSpec,
)

DEFAULT_STORE_DIR = Path("mlruns")
KIND_TAG = "admire.kind"
STUDY_TAG = "admire.study"
CONFIG_TAG = "admire.config"
CONFIG_ARTIFACT = "study.yaml"
"""Where a config too long for a tag (many domains, long names) is kept, on the parent run."""
SPEC_TAG = "admire.spec"
CURVE_TAG = "admire.curve"
MAX_TAG_CHARS = 7900
MAX_PARAMS_PER_BATCH = 100
TRIAL_TAG = "trial"
STATUS_TAG = "status"
RETRY_OF_TAG = "admire.retry_of"
ATTEMPT_TAG = "admire.attempt"


PROBE_TIMEOUT_S = 10.0
"""How long a tracking server may take to answer the first request before admire gives up
(MLflow's own client retries for minutes)."""


class TrackingStoreError(RuntimeError):
    """The tracking URI names a store that cannot be opened or written: a missing database
    driver, a server that does not answer, an unknown scheme, a folder that cannot be created,
    a read-only database."""


@contextmanager
def refused_write(uri: str, doing: str) -> Iterator[None]:
    """Say so, without a traceback, when the store refuses a study's first write (a read-only
    database or folder, a server that takes no writes): it comes before any trial runs, so
    nothing is half-written. MLflow's own traceback of the refusal is kept out of the log:
    the error says it in one line."""
    db_log = logging.getLogger("mlflow.store.db.utils")
    level = db_log.level
    db_log.setLevel(logging.CRITICAL)
    try:
        yield
    except (MlflowException, OSError) as err:
        lines = [line.strip() for line in str(err).splitlines() if line.strip()]
        # SQLAlchemy's message is several lines: the one naming the driver's error says why.
        said = [line for line in lines if "Error)" in line] or lines or [type(err).__name__]
        raise TrackingStoreError(
            f"tracking URI {uri}: cannot {doing}, the store refuses writes ({said[0]}); "
            "make it writable, or pass another --tracking-uri"
        ) from None
    finally:
        db_log.setLevel(level)


# MLflow 3's UI opens an experiment in its GenAI view unless this tag says it holds training runs.
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
TRAINING_KIND = "custom_model_development"
# A view of the run list that the UI loads from an experiment tag (`?viewStateShareKey=admire`):
# the columns a study is read by, oldest trial first.
VIEW_KEY = "admire"
VIEW_TAG = f"mlflow.sharedViewState.{VIEW_KEY}"
VIEW_STATE = {
    "selectedColumns": [
        "metrics.`objective`",
        "params.`fidelity`",
        "metrics.`cost`",
        "metrics.`recommended_predicted`",
        "metrics.`cumulative_cost`",
    ],
    "orderByKey": "attributes.start_time",
    "orderByAsc": True,
}


def ui_url(experiment_id: str, base: str = "http://127.0.0.1:5000") -> str:
    """The MLflow UI page of a study: its runs in the model-training view (MLflow 3 opens the
    GenAI view otherwise), with the objective, fidelity and cost columns shown."""
    return (
        f"{base}/#/experiments/{experiment_id}/runs"
        f"?workflowType=machine_learning&viewStateShareKey={VIEW_KEY}"
    )


def resolve_tracking_uri(uri: str | None = None) -> str:
    """The tracking URI to use: the argument, else MLFLOW_TRACKING_URI, else ./mlruns SQLite."""
    uri = uri or os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri
    return f"sqlite:///{(DEFAULT_STORE_DIR / 'mlflow.db').resolve()}"


def local_store_dir(uri: str) -> Path | None:
    """The folder holding a local store (SQLite file or file store), else None."""
    parsed = urlparse(uri)
    if parsed.scheme == "sqlite":
        return Path(uri.removeprefix("sqlite:///")).resolve().parent
    if parsed.scheme in ("", "file"):
        return Path(parsed.path or uri).resolve()
    return None


def lock_for(uri: str, name: str) -> FileLock:
    """The OS file lock (flock) that lets one process drive study `name`: under the local
    store's `.locks` folder, or per machine (~/.cache/admire/locks) for a remote store. A holder
    that dies, even by SIGKILL, releases it."""
    folder = local_store_dir(uri)
    folder = (
        (folder / ".locks") if folder is not None else Path.home() / ".cache" / "admire" / "locks"
    )
    with refused_write(uri, f"create the lock folder {folder}"):
        folder.mkdir(parents=True, exist_ok=True)
    return FileLock(str(folder / f"{name}.lock"))


def is_driven(uri: str, name: str) -> bool:
    """Whether a live process holds study `name`'s lock (probed without waiting)."""
    lock = lock_for(uri, name)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        return True
    lock.release()
    return False


def trial_name(index: int) -> str:
    """The short name of trial `index` (`t017`), shared by the run list and the console."""
    return f"t{index:03d}"


def run_name(spec: TrialSpec, objective: float | None = None, top: int = 3) -> str:
    """A trial's run name for the MLflow run list:
    `t017 · 60M × 1B tok · obj 3.412 · github .31 pile_cc .22 …` (the heaviest domains)."""
    parts = [trial_name(spec.index), label(spec.fidelity)]
    if objective is not None:
        parts.append(f"obj {objective:.4g}")
    heavy = sorted(spec.weights.items(), key=lambda kv: -kv[1])
    shown = [f"{k} {v:.2f}".replace(" 0.", " .") for k, v in heavy[:top] if v >= 0.005]
    rest = any(v >= 0.005 for _, v in heavy[top:])
    parts.append(" ".join(shown) + (" …" if rest else ""))
    return " · ".join(parts)


def split_tag(key: str, text: str) -> dict[str, str]:
    """A value too long for one MLflow tag (8000 characters) as several, to write in one call:
    `key` holds the first part and `key.parts` the count when there is more than one."""
    if len(text) <= MAX_TAG_CHARS:
        return {key: text}
    parts = [text[i : i + MAX_TAG_CHARS] for i in range(0, len(text), MAX_TAG_CHARS)]
    tags = {key if i == 0 else f"{key}.{i}": part for i, part in enumerate(parts)}
    return tags | {f"{key}.parts": str(len(parts))}


def joined_tag(tags: dict[str, str], key: str) -> str:
    """The value `split_tag` wrote (a KeyError when `key` is not set)."""
    n = int(tags.get(f"{key}.parts", "1"))
    return "".join(tags[key if i == 0 else f"{key}.{i}"] for i in range(n))


def _curve_json(curve: list[tuple[int, dict[str, float]]]) -> str:
    return json.dumps(
        [[int(t), {k: float(f"{v:.7g}") for k, v in m.items()}] for t, m in curve],
        separators=(",", ":"),
    )


def spec_to_json(spec: TrialSpec) -> str:
    return json.dumps(
        {
            "index": spec.index,
            "weights": spec.weights,
            "model_size": spec.fidelity.model_size,
            "tokens": spec.fidelity.tokens,
            "seed": spec.seed,
            "pool_id": spec.pool_id,
        }
    )


def spec_from_json(text: str) -> TrialSpec:
    d = json.loads(text)
    return TrialSpec(
        index=int(d["index"]),
        weights={k: float(v) for k, v in d["weights"].items()},
        fidelity=Fidelity(model_size=d["model_size"], tokens=float(d["tokens"])),
        seed=int(d["seed"]),
        pool_id=d.get("pool_id"),
    )


def study_params(config: StudyConfig) -> list[Param]:
    """The study's settings as parent-run params (the whole file is the `study.yaml` artifact)."""
    fids = config.fidelities
    target = fids.target
    values = {
        "seed": config.seed,
        "runner": config.runner.kind,
        "domains": ", ".join(d.name for d in config.domains),
        "n_domains": len(config.domains),
        "objective": ", ".join(config.objective.metrics),
        "objective.aggregate": config.objective.aggregate,
        "objective.direction": config.objective.direction,
        "fidelities": ", ".join(label(f) for f in fids.grid()),
        "target_fidelity": f"{target.model_size}@{target.tokens:g}",
        "max_trials": config.budget.max_trials,
        "max_cost": config.budget.max_cost,
        "optimizer": config.optimizer.kind,
        **{f"optimizer.{k}": v for k, v in config.optimizer.options.items()},
    }
    return [Param(k, str(v)[:6000]) for k, v in values.items()]


class StudyStore:
    """Reads and writes studies and their trials in an MLflow tracking store."""

    def __init__(self, tracking_uri: str | None = None, *, create: bool = True) -> None:
        """Open the store; `create=False` refuses a local store that does not exist yet
        instead of creating an empty one (reading a study from the wrong folder)."""
        self.uri = resolve_tracking_uri(tracking_uri)
        store_dir = local_store_dir(self.uri)
        if not create and store_dir is not None:
            local = (
                Path(self.uri.removeprefix("sqlite:///"))
                if self.uri.startswith("sqlite:")
                else store_dir
            )
            if not local.exists():
                raise TrackingStoreError(
                    f"no tracking store at {local}: no study has run there (pass --tracking-uri)"
                )
        self.artifact_root = None
        if store_dir is not None and self.uri.startswith("sqlite:"):
            try:
                store_dir.mkdir(parents=True, exist_ok=True)
            except OSError as err:
                raise TrackingStoreError(
                    f"tracking URI {self.uri}: cannot create {store_dir} ({err.strerror})"
                ) from None
            self.artifact_root = (store_dir / "artifacts").as_uri()
        self.client = _open_client(self.uri)

    # ---- studies -------------------------------------------------------------------------
    def find_study(self, name: str) -> str | None:
        """The parent run id of study `name`, or None."""
        exp = self.client.get_experiment_by_name(name)
        if exp is None or exp.lifecycle_stage != "active":
            return None
        runs = self.client.search_runs(
            [exp.experiment_id],
            filter_string=f"tags.`{KIND_TAG}` = 'study' and tags.`{STUDY_TAG}` = '{name}'",
            run_view_type=ViewType.ACTIVE_ONLY,
        )
        if len(runs) > 1:
            raise RuntimeError(f"study {name!r} has {len(runs)} parent runs in {self.uri}")
        return runs[0].info.run_id if runs else None

    def study_config(self, parent_id: str, name: str) -> StudyConfig:
        """The validated config study `name` was created with."""
        data = yaml.safe_load(self.study_config_yaml(parent_id))
        return parse_config(data, f"study {name}", stored=True)

    def study_config_yaml(self, parent_id: str) -> str:
        """The config a study was created with: its tag, or its artifact when it was too long."""
        config = self.client.get_run(parent_id).data.tags.get(CONFIG_TAG)
        if config is not None:
            return config
        with tempfile.TemporaryDirectory(prefix="admire-config-") as tmp:
            return Path(self.client.download_artifacts(parent_id, CONFIG_ARTIFACT, tmp)).read_text(
                encoding="utf-8"
            )

    def list_studies(self) -> list[str]:
        return sorted(
            e.name
            for e in self.client.search_experiments()
            if self.client.search_runs(
                [e.experiment_id], filter_string=f"tags.`{KIND_TAG}` = 'study'", max_results=1
            )
        )

    def create_study(self, config: StudyConfig) -> str:
        """Create the study's experiment (if new) and parent run; returns the parent run id."""
        config_yaml = config.to_yaml()
        exp_tags = {
            KIND_TAG: "study",
            EXPERIMENT_KIND_TAG: TRAINING_KIND,
            VIEW_TAG: json.dumps(VIEW_STATE),
        }
        if config.description:
            exp_tags[MLFLOW_RUN_NOTE] = config.description  # the experiment's description
        exp = self.client.get_experiment_by_name(config.name)
        if exp is None:
            with refused_write(self.uri, f"create the study {config.name!r}"):
                exp_id = self.client.create_experiment(
                    config.name,
                    artifact_location=f"{self.artifact_root}/{config.name}"
                    if self.artifact_root
                    else None,
                    tags=exp_tags,
                )
        else:
            exp_id = exp.experiment_id
            with refused_write(self.uri, f"write the study {config.name!r}"):
                if exp.lifecycle_stage != "active":
                    self.client.restore_experiment(exp_id)
                for key, value in exp_tags.items():
                    self.client.set_experiment_tag(exp_id, key, value)
        fits = len(config_yaml) <= MAX_TAG_CHARS
        tags = {STUDY_TAG: config.name} | ({CONFIG_TAG: config_yaml} if fits else {})
        if config.description:
            tags[MLFLOW_RUN_NOTE] = config.description
        run = self.client.create_run(exp_id, run_name=config.name, tags=tags)
        # The whole file as an artifact: what the UI shows, and what `Study.load` reads when
        # the config did not fit in a tag.
        self.client.log_text(run.info.run_id, config_yaml, CONFIG_ARTIFACT)
        params = study_params(config)
        for i in range(0, len(params), 100):  # MLflow takes at most 100 params per batch
            self.client.log_batch(run.info.run_id, params=params[i : i + 100])
        # Only now, with its config readable, does the run count as the study (find_study).
        self.client.set_tag(run.info.run_id, KIND_TAG, "study")
        return run.info.run_id

    def delete_study(self, parent_id: str, experiment: bool = False) -> int:
        """Soft-delete a study's parent and child runs (MLflow can restore them), and with
        `experiment` its experiment too; returns the number of runs."""
        children = self._children(parent_id)
        for run in children:
            self.client.delete_run(run.info.run_id)
        self.client.delete_run(parent_id)
        if experiment:
            self.client.delete_experiment(self.client.get_run(parent_id).info.experiment_id)
        return len(children) + 1

    def study_run(self, parent_id: str):  # type: ignore[no-untyped-def]
        """The parent run (status, latest summary metrics, tags) as MLflow returns it."""
        return self.client.get_run(parent_id)

    def last_pick(self, parent_id: str, names: Sequence[str]) -> dict[str, float] | None:
        """The mixture the study reported last (its `rec.weight.<domain>` metrics), or None."""
        metrics = self.study_run(parent_id).data.metrics
        keys = [f"rec.weight.{n}" for n in names]
        if not all(k in metrics for k in keys):
            return None
        return {n: float(metrics[k]) for n, k in zip(names, keys, strict=True)}

    def mark_study(self, parent_id: str, running: bool) -> None:
        """Mark the parent run running (the first write of a study's run: a store that
        refuses it is reported before any trial starts) or finished."""
        if running:
            with refused_write(self.uri, "mark the study running"):
                self.client.update_run(parent_id, status="RUNNING")
        else:
            self.client.set_terminated(parent_id, status="FINISHED")

    def log_study_progress(self, parent_id: str, step: int, values: dict[str, float]) -> None:
        now = int(time.time() * 1000)
        metrics = [Metric(k, float(v), now, step) for k, v in values.items()]
        self.client.log_batch(parent_id, metrics=metrics)

    # ---- trials --------------------------------------------------------------------------
    def _children(self, parent_id: str) -> list:
        exp_id = self.client.get_run(parent_id).info.experiment_id
        runs, token = [], None
        while True:
            page = self.client.search_runs(
                [exp_id],
                filter_string=(
                    f"tags.`{MLFLOW_PARENT_RUN_ID}` = '{parent_id}' and tags.`{KIND_TAG}` = 'trial'"
                ),
                run_view_type=ViewType.ACTIVE_ONLY,
                max_results=1000,
                page_token=token,
            )
            runs.extend(page)
            token = page.token
            if not token:
                return runs

    def trials(self, parent_id: str) -> list[TrialRecord]:
        """Every trial of the study, by index; raises if the store holds duplicates."""
        records: dict[int, TrialRecord] = {}
        for run in self._children(parent_id):
            tags = run.data.tags
            spec = spec_from_json(joined_tag(tags, SPEC_TAG))
            if spec.index in records:
                raise RuntimeError(f"trial {spec.index} has two runs in the store")
            metrics = dict(run.data.metrics)
            state = tags.get(STATUS_TAG, RUNNING)
            if state == RUNNING and OBJECTIVE in metrics and COST + ".raw" in metrics:
                state = COMPLETED  # results were logged; only the closing writes were lost
            records[spec.index] = TrialRecord(
                run_id=run.info.run_id,
                spec=spec,
                state=state,
                step=tags.get("generation_step", ""),
                metrics=metrics,
                error=tags.get("error", ""),
                curve=[
                    (int(t), m)
                    for t, m in json.loads(
                        joined_tag(tags, CURVE_TAG) if CURVE_TAG in tags else "[]"
                    )
                ],
                closed=tags.get(STATUS_TAG, RUNNING) != RUNNING and run.info.status != "RUNNING",
                retry_of=int(tags[RETRY_OF_TAG]) if RETRY_OF_TAG in tags else None,
                attempt=int(tags.get(ATTEMPT_TAG, "1")),
            )
        return [records[i] for i in sorted(records)]

    def name_trials(self, parent_id: str, records: list[TrialRecord]) -> int:
        """Give every trial run its readable name (`run_name`) where it has another (a trial
        re-run after a crash, or a store written before the names); returns how many."""
        by_id = {r.run_id: r for r in records}
        renamed = 0
        for run in self._children(parent_id):
            record = by_id.get(run.info.run_id)
            if record is None:
                continue
            name = run_name(record.spec, record.objective)
            if run.info.run_name != name:
                self.client.update_run(run.info.run_id, name=name)
                renamed += 1
        return renamed

    def start_trial(
        self,
        parent_id: str,
        spec: TrialSpec,
        step: str,
        predicted: tuple[float, float] | None,
        retry: tuple[int, int] | None = None,
    ) -> str:
        """Create the trial's child run, spec included, in one call; then log its params.
        `retry` is (index of the failed trial retried, attempt number), in the same call: a
        resume then knows how often a trial has been tried."""
        exp_id = self.client.get_run(parent_id).info.experiment_id
        tags = {
            KIND_TAG: "trial",
            MLFLOW_PARENT_RUN_ID: parent_id,
            TRIAL_TAG: str(spec.index),
            STATUS_TAG: RUNNING,
            **split_tag(SPEC_TAG, spec_to_json(spec)),
            "generation_step": step,
        }
        if predicted is not None:
            tags["predicted_mean"] = f"{predicted[0]:.6g}"
            tags["predicted_sd"] = f"{predicted[1]:.6g}"
        if retry is not None:
            tags |= {RETRY_OF_TAG: str(retry[0]), ATTEMPT_TAG: str(retry[1])}
        run = self.client.create_run(exp_id, run_name=run_name(spec), tags=tags)
        self.log_trial_params(run.info.run_id, spec)
        return run.info.run_id

    def log_trial_params(self, run_id: str, spec: TrialSpec) -> None:
        # Rounded for reading in the UI; the exact weights are in the spec tag.
        params = [Param(f"weight.{k}", f"{v:.4f}") for k, v in spec.weights.items()]
        params += [
            Param("model_size", spec.fidelity.model_size),
            Param("tokens", f"{spec.fidelity.tokens:.0f}"),
            Param("fidelity", label(spec.fidelity)),
            Param("seed", str(spec.seed)),
        ]
        if spec.pool_id is not None:
            params.append(Param("pool_id", spec.pool_id))
        existing = self.client.get_run(run_id).data.params
        fresh = [p for p in params if p.key not in existing]
        for i in range(0, len(fresh), MAX_PARAMS_PER_BATCH):
            self.client.log_batch(run_id, params=fresh[i : i + MAX_PARAMS_PER_BATCH])

    def reopen_trial(self, run_id: str, spec: TrialSpec) -> None:
        """Make an interrupted trial's run active again, with its params complete."""
        self.client.update_run(run_id, status="RUNNING")
        self.log_trial_params(run_id, spec)

    def finish_trial(
        self,
        run_id: str,
        result: TrialResult,
        objective: float | None,
        cost_units: float,
        objective_curve: list[tuple[int, float]] | None = None,
    ) -> None:
        """Log a trial's results, then mark it complete (or failed) and end it.

        Step metrics (the curve, at step = tokens seen) go first; the final metrics, the cost
        and the curve for the optimiser (tag `admire.curve`) go in one last batch, whose
        arrival is what makes the trial complete."""
        now = int(time.time() * 1000)
        steps = [
            Metric(k, float(v), now, int(tokens))
            for tokens, values in result.curve
            for k, v in values.items()
        ]
        steps += [Metric(OBJECTIVE, v, now, int(t)) for t, v in objective_curve or []]
        steps += [
            Metric(name, float(v), now, int(t))
            for name, points in result.series.items()
            for t, v in points
        ]
        for i in range(0, len(steps), 900):
            self.client.log_batch(run_id, metrics=steps[i : i + 900])
        in_curve = {k for _, values in result.curve for k in values}
        if objective_curve:
            in_curve.add(OBJECTIVE)
        metrics = [
            Metric(k, float(v), now, 0) for k, v in result.metrics.items() if k not in in_curve
        ]
        metrics += [Metric(COST, cost_units, now, 0), Metric(COST + ".raw", result.cost, now, 0)]
        if objective is not None and OBJECTIVE not in in_curve:
            metrics.append(Metric(OBJECTIVE, objective, now, 0))
        tags = []
        if result.curve and not result.failed:
            tags = [
                RunTag(k, v) for k, v in split_tag(CURVE_TAG, _curve_json(result.curve)).items()
            ]
        self.client.log_batch(run_id, metrics=metrics, tags=tags)
        tags = [RunTag(STATUS_TAG, FAILED if result.failed else COMPLETED)]
        tags += [RunTag(f"info.{k}", v[:MAX_TAG_CHARS]) for k, v in result.info.items()]
        if result.failed:
            tags.append(RunTag("error", result.error[:5000]))
        for i in range(0, len(tags), 90):
            self.client.log_batch(run_id, tags=tags[i : i + 90])
        self.client.set_terminated(run_id, status="FAILED" if result.failed else "FINISHED")

    def close_trial(self, record: TrialRecord) -> None:
        """Write the closing tag and end state of a trial whose results are already logged."""
        self.client.set_tag(record.run_id, STATUS_TAG, record.state)
        self.client.set_terminated(
            record.run_id, status="FAILED" if record.state == FAILED else "FINISHED"
        )


def _open_client(uri: str) -> MlflowClient:
    """An MLflow client on `uri`, or a TrackingStoreError that says why not, fast: a missing
    database driver, an unknown scheme, a server that does not answer within PROBE_TIMEOUT_S."""
    scheme = urlparse(uri).scheme
    if scheme in ("http", "https"):
        try:
            urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=PROBE_TIMEOUT_S).close()
        except urllib.error.HTTPError:
            pass  # it answered; MLflow's own requests will say what is wrong
        except (urllib.error.URLError, OSError) as err:
            reason = getattr(err, "reason", err)
            raise TrackingStoreError(
                f"tracking URI {uri}: the server does not answer ({reason}; waited at most "
                f"{PROBE_TIMEOUT_S:g} s); start it, or pass another --tracking-uri"
            ) from None
    try:
        return MlflowClient(tracking_uri=uri)
    except ImportError as err:
        raise TrackingStoreError(
            f"tracking URI {uri}: the database driver for '{scheme}' is not installed "
            f"({err}); install it, or pass another --tracking-uri"
        ) from None
    except MlflowException as err:
        raise TrackingStoreError(
            f"tracking URI {uri}: {str(err).strip().splitlines()[0]}"
        ) from None
