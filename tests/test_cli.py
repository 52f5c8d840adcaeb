"""`python -m admire status|best|trials|export|list|delete` against real stores: a finished
study, one a live process is driving, and the same after that process is killed."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml
from mlflow.tracking import MlflowClient

from admire import Study
from admire.cli import main
from admire.config import parse_config
from admire.tracking import run_name
from tests.conftest import REPO, pile_config

DOMAINS = pile_config()["domains"]


def cli(capsys: pytest.CaptureFixture[str], uri: str, *args: str) -> tuple[int, str, str]:
    code = main(["--tracking-uri", uri, *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_status_of_a_finished_study(finished_pile: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cli(capsys, finished_pile, "status", "pile-replay")
    assert code == 0
    assert "  state:    stopped" in out
    assert "  trials:   6 of 6 (6 completed, 0 failed, 0 running)" in out
    assert " of 20 target-run units" in out
    assert "predicted at 1B" in out and " ± " in out
    assert "viewStateShareKey=admire" in out


def test_best_lists_every_domain(finished_pile: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cli(capsys, finished_pile, "best", "pile-replay")
    assert code == 0
    assert all(f"  {d} " in out for d in DOMAINS)
    code, out, _ = cli(capsys, finished_pile, "best", "pile-replay", "--json")
    data = json.loads(out)
    assert set(data["weights"]) == set(DOMAINS)
    assert sum(data["weights"].values()) == pytest.approx(1.0)
    assert data["predicted_sd"] >= 0 and data["after_trial"] == "t005"


def test_trials_table_and_csv(finished_pile: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cli(capsys, finished_pile, "trials", "pile-replay")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split()[:4] == ["name", "state", "model_size", "tokens"]
    assert [ln.split()[0] for ln in lines[1:]] == [f"t{i:03d}" for i in range(6)]
    code, out, _ = cli(capsys, finished_pile, "trials", "pile-replay", "--csv")
    df = pd.read_csv(io.StringIO(out))
    assert len(df) == 6 and {f"weight.{d}" for d in DOMAINS} <= set(df.columns)
    assert (df["state"] == "COMPLETED").all()


def test_export_forms(finished_pile: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cli(capsys, finished_pile, "export", "pile-replay", "--tokens", "2.5e10")
    assert code == 0
    data = yaml.safe_load(out)
    hf = data["interleave_datasets"]
    assert hf["domains"] == DOMAINS  # the study's domain order
    assert hf["probabilities"] == [data["weights"][d] for d in DOMAINS]
    assert sum(hf["probabilities"]) == pytest.approx(1.0)
    assert sum(data["tokens"].values()) == 25_000_000_000
    assert all(
        abs(data["tokens"][d] - data["weights"][d] * 2.5e10) <= 1 for d in DOMAINS
    )  # no epoch caps on replay: the weights, in whole tokens
    code, out, _ = cli(capsys, finished_pile, "export", "pile-replay", "--format", "json")
    assert json.loads(out)["weights"] == data["weights"] and "tokens" not in json.loads(out)


def test_list_and_bad_names(finished_pile: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cli(capsys, finished_pile, "list")
    assert code == 0 and "pile-replay" in out and "6 trials" in out and "stopped" in out
    assert main(["list", "--tracking-uri", finished_pile]) == 0  # also after the command
    assert "6 trials" in capsys.readouterr().out
    code, out, err = cli(capsys, finished_pile, "best", "nope")
    assert code == 2 and out == ""
    assert err.strip() == f"admire: no study 'nope' in {finished_pile}; studies there: pile-replay"


DRIVER = """
import sys, time
from pathlib import Path
from mlflow.tracking import MlflowClient

from admire import Study
from admire.config import parse_config
from admire.tracking import run_name
from admire.runners import make_runner

config = parse_config({config})
inner = make_runner(config)

class Slow:
    # The replay runner, except that trial 1 hangs: a driver caught mid-trial.
    def __getattr__(self, name):
        return getattr(inner, name)

    def run(self, spec):
        if spec.index == 1:
            Path({ready!r}).write_text("ready")
            time.sleep(600)
        return inner.run(spec)

Study.create(config, tracking_uri={uri!r}, runner=Slow()).optimize(progress=False)
"""


def test_status_of_a_running_then_crashed_study(
    tracking_uri: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = pile_config(budget={"max_trials": 3, "max_cost": 20.0}, optimizer={"n_initial": 2})
    ready = tmp_path / "ready"
    script = DRIVER.format(config=repr(config), ready=str(ready), uri=tracking_uri)
    driver = subprocess.Popen(
        [sys.executable, "-c", script],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        start_new_session=True,
    )
    try:
        for _ in range(600):
            if ready.exists() or driver.poll() is not None:
                break
            time.sleep(0.2)
        assert ready.exists(), "the driver did not reach trial 1"
        code, out, _ = cli(capsys, tracking_uri, "status", "pile-replay")
        assert code == 0
        assert "  state:    running (a process is driving it)" in out
        assert "  trials:   2 of 3 (1 completed, 0 failed, 1 running)" in out
        assert "  running now: t001 at 1M × 1B tok" in out
        code, out, _ = cli(capsys, tracking_uri, "list")
        assert "running" in out
        # what the other commands answer while the driver holds the study
        code, out, _ = cli(capsys, tracking_uri, "best", "pile-replay", "--json")
        best = json.loads(out)
        assert code == 0 and best["after_trial"] == "t000"  # the finished trial only
        assert set(best["weights"]) == set(DOMAINS)
        code, out, _ = cli(capsys, tracking_uri, "trials", "pile-replay")
        rows = [ln.split()[:2] for ln in out.splitlines()[1:]]
        assert code == 0 and rows == [["t000", "COMPLETED"], ["t001", "RUNNING"]]
        code, out, _ = cli(capsys, tracking_uri, "trials", "pile-replay", "--csv")
        df = pd.read_csv(io.StringIO(out))
        assert df["state"].tolist() == ["COMPLETED", "RUNNING"] and pd.isna(df["objective"][1])
        code, out, _ = cli(capsys, tracking_uri, "export", "pile-replay", "--format", "json")
        assert code == 0 and json.loads(out)["weights"] == best["weights"]
    finally:
        os.killpg(driver.pid, signal.SIGKILL)
        driver.wait()
    code, out, _ = cli(capsys, tracking_uri, "status", "pile-replay")
    assert "  state:    interrupted: `make resume NAME=pile-replay` continues it" in out
    assert "  was running: t001" in out
    code, out, _ = cli(capsys, tracking_uri, "resume", "pile-replay")
    assert code == 0 and "t001 was interrupted" in out
    code, out, _ = cli(capsys, tracking_uri, "status", "pile-replay")
    assert "  state:    stopped" in out and "3 of 3 (3 completed" in out
    # the re-run trial is named with its result like the others
    client = MlflowClient(tracking_uri)
    for r in Study.load("pile-replay", tracking_uri=tracking_uri).trials:
        assert client.get_run(r.run_id).info.run_name == run_name(r.spec, r.objective)


def _tiny(max_trials: int) -> dict:
    """The pile study cut to a trial or two (its file's n_initial of 10 would not fit)."""
    config = pile_config(budget={"max_trials": max_trials, "max_cost": 20.0})
    config["optimizer"] = {}
    return config


def test_delete_needs_confirmation_then_removes_the_study(
    tracking_uri: str, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _tiny(1)
    Study.create(parse_config(config), tracking_uri=tracking_uri).optimize(progress=False)
    code, _, err = cli(capsys, tracking_uri, "delete", "pile-replay")
    assert code == 2 and "--yes" in err
    assert cli(capsys, tracking_uri, "list")[1].count("pile-replay") == 1
    code, out, _ = cli(capsys, tracking_uri, "delete", "pile-replay", "--yes")
    assert code == 0 and "deleted study 'pile-replay' (2 runs" in out
    assert "no studies" in cli(capsys, tracking_uri, "list")[1]
    assert cli(capsys, tracking_uri, "status", "pile-replay")[0] == 2
    # the name is free again
    Study.create(parse_config(config), tracking_uri=tracking_uri)


def test_live_display_shows_trials_cost_and_pick(tracking_uri: str) -> None:
    from rich.console import Console

    from admire.console import LiveDisplay

    study = Study.create(parse_config(_tiny(2)), tracking_uri=tracking_uri)
    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=True, width=160)
    with LiveDisplay(study, 2, 20.0, console=console) as live:
        study.optimize(progress=False, callback=live.on_trial)
    text = buffer.getvalue()
    assert "[pile-replay] t000 (1 of 2)" in text and "t001 (2 of 2)" in text
    assert "cost 0.002 of 20" in text and "pick unknown until a run at 1B" in text


def test_no_predicted_objective_before_a_target_run(
    tracking_uri: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Three 1M runs rank mixtures but say nothing of the 1B loss: `best --json` holds null,
    `status` says so (with the replay table's true value), and the parent run has no
    `recommended_predicted` metric."""
    study = Study.create(parse_config(_tiny(3)), tracking_uri=tracking_uri)
    study.optimize(progress=False)
    code, out, _ = cli(capsys, tracking_uri, "best", "pile-replay", "--json")
    data = json.loads(out)
    assert code == 0 and data["predicted"] is None and data["predicted_sd"] is None
    assert sum(data["weights"].values()) == pytest.approx(1.0)
    code, out, _ = cli(capsys, tracking_uri, "status", "pile-replay")
    assert "  best:     unknown until a run at 1B × 25B tok (true " in out, out
    metrics = MlflowClient(tracking_uri).get_run(study.parent_id).data.metrics
    assert "recommended_predicted" not in metrics and "cumulative_cost" in metrics


def test_load_with_a_custom_runner(tracking_uri: str) -> None:
    from admire.runners import make_runner

    config = parse_config(_tiny(1))
    Study.create(config, tracking_uri=tracking_uri).optimize(progress=False)
    inner, seen = make_runner(config), []

    class Recording:
        def __getattr__(self, name: str) -> object:
            return getattr(inner, name)

        def run(self, spec):  # type: ignore[no-untyped-def]
            seen.append(spec.index)
            return inner.run(spec)

    study = Study.load("pile-replay", tracking_uri=tracking_uri, runner=Recording())
    study.resume(max_trials=1, progress=False)
    assert seen == [1] and [r.state for r in study.trials] == ["COMPLETED"] * 2
