"""SIGKILL a running study process, resume it from another process, and check the books."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

from admire import Study
from tests.conftest import REPO, pile_config

# Enough trials that the first driver is still mid-study after a rival driver has started,
# been refused and exited (seconds on a loaded machine): with 12 it sometimes finished first.
PLANNED = 24


def _admire(args: list[str], cwd: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "admire", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _child_runs(client: MlflowClient) -> list:
    exp = client.get_experiment_by_name("pile-replay")
    if exp is None:
        return []
    return [
        r
        for r in client.search_runs([exp.experiment_id])
        if r.data.tags.get("admire.kind") == "trial"
    ]


@pytest.mark.slow
def test_sigkill_mid_study_then_resume(tracking_uri: str, tmp_path: Path) -> None:
    cfg = pile_config(budget={"max_trials": PLANNED, "max_cost": 20.0}, optimizer={"n_initial": 4})
    (tmp_path / "pile.yaml").write_text(yaml.safe_dump(cfg))
    client = MlflowClient(tracking_uri)

    first = _admire(["--tracking-uri", tracking_uri, "run", "pile.yaml"], tmp_path)
    deadline = time.monotonic() + 240
    while len(_child_runs(client)) < 6:
        assert first.poll() is None, first.communicate()[0]
        assert time.monotonic() < deadline, "the study did not get going"
        time.sleep(0.2)
    # A second driver on the same study, while the first runs, refuses and writes nothing.
    rival = _admire(["--tracking-uri", tracking_uri, "resume", "pile-replay"], tmp_path)
    said, _ = rival.communicate(timeout=120)
    assert rival.returncode != 0 and "being driven by another process" in said, said
    assert "Traceback" not in said
    assert first.poll() is None, "the first driver must still be running"
    # SIGKILL leaves the lock file behind (stale); the OS lock dies with the holder, so the
    # resume below takes the study over without anyone cleaning up.
    first.send_signal(signal.SIGKILL)
    first.wait()
    lock = Path(tracking_uri.removeprefix("sqlite:///")).parent / ".locks" / "pile-replay.lock"
    assert lock.exists()
    killed_at = len(_child_runs(client))
    assert 6 <= killed_at < PLANNED

    second = _admire(["--tracking-uri", tracking_uri, "resume", "pile-replay"], tmp_path)
    out, _ = second.communicate(timeout=600)
    assert second.returncode == 0, out
    assert "recommended mixture" in out

    runs = _child_runs(client)
    indices = sorted(int(r.data.tags["trial"]) for r in runs)
    assert indices == list(range(PLANNED))  # exactly the planned trials, none twice
    assert all(r.data.tags["status"] == "COMPLETED" and r.info.status == "FINISHED" for r in runs)
    assert len({r.data.params["pool_id"] for r in runs}) == PLANNED
    # the optimiser's view (rebuilt from the store) agrees with MLflow one to one
    study = Study.load("pile-replay", tracking_uri=tracking_uri)
    assert {t.run_id for t in study.trials} == {r.info.run_id for r in runs}
    assert all(
        t.objective == r.data.metrics["objective"]
        for t in study.trials
        for r in runs
        if r.info.run_id == t.run_id
    )
    parent = client.get_run(study.parent_id)
    assert parent.info.status == "FINISHED"
