"""A Ray node dies in the middle of a trial, on a real multi-node Ray on this machine.

`ray.cluster_utils.Cluster` starts each node as its own raylet and workers, and
`remove_node` kills them as a machine going down would. The study must lose nothing: the
trial is run again on a live node (`runner.retries`), or it is marked failed with the reason;
it is never left RUNNING.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from admire.config import parse_config
from admire.study import Study
from admire.tracking import COMPLETED, FAILED
from tests.conftest import ray_command_study

ray = pytest.importorskip(
    "ray", reason="the `ray` extra is not installed (pip install 'admire[ray]'; CI installs it)"
)
from ray.cluster_utils import Cluster  # noqa: E402

# The first attempt of a trial waits on its node until the node is taken down, then exits
# (its Ray worker, its parent, is gone); a later attempt finishes at once.
TRAINER = """
import json, os, sys, time
folder = sys.argv[1]
attempt = len(os.listdir(folder))
open(os.path.join(folder, f"attempt-{attempt}"), "w").close()
if attempt == 0:
    parent, deadline = os.getppid(), time.time() + 120
    while os.getppid() == parent and time.time() < deadline:
        time.sleep(0.1)
    sys.exit("the node running this trial was never taken down")
metrics = {f"loss.{d}": 3.0 for d in json.load(open(os.environ["ADMIRE_TRIAL_JSON"]))["domains"]}
open(os.environ["ADMIRE_RESULTS"], "w").write(json.dumps({"metrics": metrics}))
"""


@pytest.fixture
def cluster():  # type: ignore[no-untyped-def]
    """A head node that runs no trials (0 CPUs) and one worker node that does."""
    if ray.is_initialized():
        ray.shutdown()
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    c.worker = c.add_node(num_cpus=1)
    ray.init(address=c.address, logging_level="WARNING")
    yield c
    ray.shutdown()
    c.shutdown()


def _study(tmp_path: Path, address: str, retries: int, tracking_uri: str) -> Study:
    (tmp_path / "attempts").mkdir()
    script = tmp_path / "trainer.py"
    script.write_text(TRAINER)
    command = f"{{python}} {script} {tmp_path / 'attempts'}"
    data = ray_command_study(command, address=address, retries=retries)
    return Study.create(parse_config(data), tracking_uri=tracking_uri)


def _kill_node_mid_trial(cluster, study: Study, attempts: Path, spare: bool) -> None:  # type: ignore[no-untyped-def]
    """Run one trial; once it has started on the worker node, take that node down (after
    adding a spare node for the retry, when `spare`)."""
    done = threading.Event()

    def drive() -> None:
        try:
            study.optimize(max_trials=1, progress=False)
        finally:
            done.set()

    driver = threading.Thread(target=drive)
    driver.start()
    deadline = time.time() + 120
    while not (attempts / "attempt-0").exists():
        assert time.time() < deadline and not done.is_set(), "the trial never started"
        time.sleep(0.1)
    if spare:
        cluster.add_node(num_cpus=1)
    cluster.remove_node(cluster.worker, allow_graceful=False)
    driver.join(timeout=180)
    assert not driver.is_alive(), "the study hung after its node died"


@pytest.mark.parametrize(
    ("retries", "state", "error", "status", "attempts"),
    [
        (1, COMPLETED, "", "FINISHED", ["attempt-0", "attempt-1"]),
        (
            0,
            FAILED,
            "the Ray worker running it died, also on its 0 retries",
            "FAILED",
            ["attempt-0"],
        ),
    ],
    ids=["retried-on-another-node", "no-retries-failed-not-left-running"],
)
def test_a_trial_whose_node_dies_is_run_again_or_failed(  # type: ignore[no-untyped-def]
    cluster, tmp_path: Path, tracking_uri: str, retries, state, error, status, attempts
) -> None:
    study = _study(tmp_path, cluster.address, retries=retries, tracking_uri=tracking_uri)
    _kill_node_mid_trial(cluster, study, tmp_path / "attempts", spare=retries > 0)
    (trial,) = study.trials
    assert trial.state == state, trial.error
    assert error in trial.error
    if state == COMPLETED:
        assert trial.metrics["loss.code"] == 3.0
    assert sorted(p.name for p in (tmp_path / "attempts").iterdir()) == attempts
    assert MlflowClient(tracking_uri).get_run(trial.run_id).info.status == status
