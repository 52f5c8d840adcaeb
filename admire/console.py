"""Text views of studies for the command line: status, tables, and the live progress display."""

from __future__ import annotations

import math
import time
from collections import Counter
from typing import TYPE_CHECKING

from admire.report import trial_line
from admire.space import label
from admire.tracking import (
    COMPLETED,
    FAILED,
    RUNNING,
    StudyStore,
    TrialRecord,
    is_driven,
    trial_name,
    ui_url,
)
from admire.trial import budget_trials

if TYPE_CHECKING:
    import pandas as pd
    from rich.console import Console

    from admire.study import Recommendation, Study


def study_state(store: StudyStore, name: str, parent_id: str, records: list[TrialRecord]) -> str:
    """`running`, `interrupted: ...`, or `stopped`, judged by the lock, not by MLflow alone: a
    driver that crashed leaves its runs marked RUNNING, but not its lock."""
    if is_driven(store.uri, name):
        return "running (a process is driving it)"
    parent_open = store.study_run(parent_id).info.status == "RUNNING"
    if parent_open or any(r.state == RUNNING for r in records):
        return f"interrupted: `make resume NAME={name}` continues it"
    return "stopped"


def _mix(weights: dict[str, float], top: int | None = None) -> str:
    heavy = sorted(weights.items(), key=lambda kv: -kv[1])
    shown = heavy if top is None else heavy[:top]
    text = ", ".join(f"{k} {v:.3f}" for k, v in shown)
    return text + (f", … ({len(heavy) - top} more)" if top is not None and len(heavy) > top else "")


def study_url(study: Study) -> str:
    """The study's page in the MLflow UI that `make ui` serves."""
    return ui_url(study.store.study_run(study.parent_id).info.experiment_id)


def status_text(study: Study) -> str:
    """What `admire status` prints: state, trials, cost, what runs now, the best so far."""
    records = study.trials
    budget = study.config.budget
    state = study_state(study.store, study.name, study.parent_id, records)
    spent = study.spent(records)
    counts = Counter(r.state for r in records)
    of_trials = f" of {budget.max_trials}" if budget.max_trials else ""
    of_cost = f" of {budget.max_cost:g}" if budget.max_cost else ""
    by_fid = Counter(label(r.spec.fidelity) for r in records)
    lines = [
        f"study {study.name}"
        + (f": {study.config.description}" if study.config.description else "")
    ]
    lines.append(f"  state:    {state}")
    n_attached = len(records) - budget_trials(records)
    attached = f", {n_attached} of them attached runs, not in the budget" if n_attached else ""
    lines.append(
        f"  trials:   {budget_trials(records)}{of_trials} ({counts[COMPLETED]} completed, "
        f"{counts[FAILED]} failed, {counts[RUNNING]} running{attached})"
    )
    if by_fid:
        lines.append("            " + ", ".join(f"{n} at {f}" for f, n in by_fid.items()))
    lines.append(f"  cost:     {spent:.4g}{of_cost} target-run units")
    now = time.time()
    for r in records:
        if r.state == RUNNING:
            started = study.store.client.get_run(r.run_id).info.start_time / 1000
            verb = "running now" if state.startswith("running") else "was running"
            lines.append(
                f"  {verb}: {trial_name(r.spec.index)} at {label(r.spec.fidelity)}, "
                f"started {(now - started) / 60:.1f} min ago"
            )
    rec = study.best()
    if rec is None:
        lines.append("  best:     no completed trial yet")
    else:
        lines.append(f"  best:     {best_line(rec)}")
        lines.append(f"            {_mix(rec.weights, top=5)}")
    lines.append(f"  store:    {study.store.uri}")
    lines.append(f"  UI:       {study_url(study)} (after `make ui`)")
    return "\n".join(lines)


def best_line(rec: Recommendation) -> str:
    true = "" if rec.true is None else f" (true {rec.true:.4f})"
    at = "" if math.isnan(rec.predicted) else f" predicted at {rec.fidelity}"
    return f"{rec.prediction()}{at}{true}"


def best_text(study: Study, rec: Recommendation) -> str:
    """What `admire best` prints: the prediction, then every domain's weight."""
    width = max(len(d) for d in rec.weights)
    rows = sorted(rec.weights.items(), key=lambda kv: -kv[1])
    lines = [f"study {study.name}: recommended mixture, {best_line(rec)}"]
    lines += [f"  {d:<{width}}  {w:.4f}" for d, w in rows]
    return "\n".join(lines)


def trials_table(df: pd.DataFrame, domains: list[str]) -> str:
    """The trials as an aligned text table with the heaviest domains of each mixture."""
    if df.empty:
        return "no trials yet"
    view = df[["name", "state", "model_size", "tokens", "step", "objective", "cost"]].copy()
    view["tokens"] = view["tokens"].map(lambda t: f"{t:.3g}")
    view["mixture"] = [
        _mix({d: row[f"weight.{d}"] for d in domains}, top=3) for _, row in df.iterrows()
    ]
    return view.to_string(index=False, float_format=lambda v: f"{v:.4g}", na_rep="-")


def studies_table(store: StudyStore) -> str:
    """One line per study in the store: state, trials, cost, best predicted objective."""
    names = store.list_studies()
    if not names:
        return f"no studies in {store.uri}"
    lines = [f"studies in {store.uri}:"]
    for name in names:
        parent = store.find_study(name)
        if parent is None:
            continue
        m = store.study_run(parent).data.metrics
        state = study_state(store, name, parent, [])
        done, failed = int(m.get("trials.completed", 0)), int(m.get("trials.failed", 0))
        best = m.get("recommended_predicted")
        best_s = "-" if best is None else f"{best:.4f} ± {m.get('recommended_predicted_sd', 0):.4f}"
        lines.append(
            f"  {name:<24} {done + failed:>4} trials  cost {m.get('cumulative_cost', 0):<8.4g} "
            f"best {best_s:<18} {state}"
        )
    return "\n".join(lines)


class LiveDisplay:
    """A rich progress display for a terminal: a bar over the trial budget with the cost spent
    and the current pick, and the per-trial lines printed above it."""

    def __init__(
        self,
        study: Study,
        trial_cap: int | None,
        cost_cap: float | None,
        console: Console | None = None,
    ) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        self.study, self.trial_cap, self.cost_cap = study, trial_cap, cost_cap
        self.console = console or Console()
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[cost]}"),
            TextColumn("{task.fields[pick]}"),
            console=self.console,
            transient=False,
        )
        done = len(study.trials)
        self.task = self.progress.add_task(
            study.name, total=trial_cap, completed=done, cost="", pick=""
        )

    def __enter__(self) -> LiveDisplay:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def on_trial(self, record: TrialRecord) -> None:
        """The study's per-trial callback."""
        records = self.study.trials
        spent = self.study.spent(records)
        rec = self.study.best()
        line = trial_line(self.study.name, records, spent, self.trial_cap, self.cost_cap, rec)
        self.console.print(line, markup=False, highlight=False)
        of = f" of {self.cost_cap:.3g}" if self.cost_cap is not None else ""
        pick = "" if rec is None else f"pick {rec.prediction(3)}: "
        pick += "" if rec is None else _mix(rec.weights, top=3)
        self.progress.update(
            self.task,
            completed=budget_trials(records),
            description=f"{self.study.name} {trial_name(record.spec.index)}",
            cost=f"cost {spent:.3g}{of}",
            pick=pick,
        )
