"""The Ray runner on a real local Ray: concurrent trials, failures, dead workers, studies."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from admire.config import Fidelity, load_config, parse_config
from admire.runners import TrialSpec, make_runner
from admire.runners.ray import RayRunner
from admire.study import Study
from admire.tracking import COMPLETED
from tests.conftest import STUDIES, proxy_config, ray_command_study

ray = pytest.importorskip(
    "ray", reason="the `ray` extra is not installed (pip install 'admire[ray]'; CI installs it)"
)

LOCAL_CPUS = 4


@pytest.fixture(scope="module", autouse=True)
def local_ray():  # type: ignore[no-untyped-def]
    """One small local Ray for the module (the runner joins it instead of starting one)."""
    ray.init(num_cpus=LOCAL_CPUS, include_dashboard=False, logging_level="WARNING")
    yield
    ray.shutdown()


def _runner(script: str, tmp_path: Path, **ray_settings: object) -> RayRunner:
    path = tmp_path / "trainer.py"
    path.write_text(script)
    runner = make_runner(parse_config(ray_command_study(f"{{python}} {path}", **ray_settings)))
    assert isinstance(runner, RayRunner)
    return runner


def _spec(index: int) -> TrialSpec:
    weights = {"prose": 0.4, "code": 0.3, "math": 0.2, "dialogue": 0.1}
    return TrialSpec(index, weights, Fidelity(model_size="S", tokens=16384), seed=index)


RENDEZVOUS = """
import json, os, sys, time
# Each trial checks in, then waits until all have: they can only all finish if they run at once.
folder, expected = sys.argv[1], int(sys.argv[2])
start = time.time()
open(os.path.join(folder, str(os.getpid())), "w").close()
while len(os.listdir(folder)) < expected:
    if time.time() - start > 50:
        sys.exit(f"only {len(os.listdir(folder))} of {expected} trials ran at once")
    time.sleep(0.05)
metrics = {f"loss.{d}": 1.0 for d in json.load(open(os.environ["ADMIRE_TRIAL_JSON"]))["domains"]}
info = {"start": start, "end": time.time(), "ppid": os.getppid()}
with open(os.environ["ADMIRE_RESULTS"], "w") as f:
    f.write(json.dumps({"metrics": metrics, "info": info}))
"""


def test_trials_called_from_several_threads_run_at_once(tmp_path: Path) -> None:
    (tmp_path / "checked-in").mkdir()
    (tmp_path / "trainer.py").write_text(RENDEZVOUS)
    command = f"{{python}} {tmp_path / 'trainer.py'} {tmp_path / 'checked-in'} {LOCAL_CPUS}"
    runner = make_runner(parse_config(ray_command_study(command)))
    results = {}

    def run(i: int) -> None:
        results[i] = runner.run(_spec(i))

    threads = [threading.Thread(target=run, args=(i,)) for i in range(LOCAL_CPUS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(not r.failed for r in results.values()), [r.error for r in results.values()]
    starts = [float(r.info["start"]) for r in results.values()]
    ends = [float(r.info["end"]) for r in results.values()]
    assert max(starts) < min(ends)  # every trial had started before any had finished
    assert len({r.info["ppid"] for r in results.values()}) == LOCAL_CPUS  # one worker each


def test_a_failing_trial_comes_back_failed_with_its_reason(tmp_path: Path) -> None:
    result = _runner("print('bad shard'); raise SystemExit(3)", tmp_path).run(_spec(0))
    assert result.failed
    assert "exited with code 3" in result.error and "bad shard" in result.error


KILL_WORKER_ONCE = """
import json, os, signal, sys
marker = sys.argv[1]
with open(sys.argv[2], "a") as seen:  # every attempt's output folder
    print(os.environ["ADMIRE_OUT_DIR"], file=seen)
if not os.path.exists(marker):
    open(marker, "w").close()
    os.kill(os.getppid(), signal.SIGKILL)  # the Ray worker running this trial dies
metrics = {f"loss.{d}": 2.0 for d in json.load(open(os.environ["ADMIRE_TRIAL_JSON"]))["domains"]}
open(os.environ["ADMIRE_RESULTS"], "w").write(json.dumps({"metrics": metrics}))
"""


def test_a_dead_worker_is_retried_then_reported(tmp_path: Path) -> None:
    path = tmp_path / "trainer.py"
    path.write_text(KILL_WORKER_ONCE)
    seen = tmp_path / "out-dirs.txt"
    command = f"{{python}} {path} {tmp_path / 'killed-once'} {seen}"
    retried = make_runner(parse_config(ray_command_study(command, retries=1)))
    result = retried.run(_spec(0))
    assert not result.failed, result.error
    assert result.metrics["loss.code"] == 2.0
    first, retry = seen.read_text().split()
    assert first == retry  # the retry takes over the killed attempt's folder ...
    assert not Path(first).exists()  # ... and removes it when done

    command = f"{{python}} {path} {tmp_path / 'killed-again'} {seen}"
    no_retry = make_runner(parse_config(ray_command_study(command, retries=0)))
    result = no_retry.run(_spec(1))
    assert result.failed
    assert "the Ray worker running it died, also on its 0 retries" in result.error
    # No attempt is left to clean up after the killed one: the driver does.
    killed = seen.read_text().split()[-1]
    assert killed != first and not Path(killed).exists()


def test_more_gpus_than_the_local_ray_has_fail_instead_of_waiting(tmp_path: Path) -> None:
    result = _runner("raise SystemExit('never runs')", tmp_path, num_gpus=1).run(_spec(0))
    assert result.failed
    assert "runner.num_gpus is 1, but the local Ray has 0 GPUs" in result.error


def test_a_study_on_ray_logs_every_trial_like_the_local_runner(tracking_uri: str) -> None:
    data = ray_command_study(load_config(STUDIES / "command-example.yaml").runner.command)
    study = Study.create(parse_config(data), tracking_uri=tracking_uri)
    study.optimize(max_trials=2, progress=False)
    trials = study.trials
    assert [t.state for t in trials] == [COMPLETED] * 2
    tokens = int(trials[0].spec.fidelity.tokens)
    assert [t for t, _ in trials[0].curve] == [tokens // 4, tokens // 2, tokens]
    client = MlflowClient(tracking_uri)
    assert client.get_run(study.parent_id).data.params["runner"] == "ray"
    run = client.get_run(trials[0].run_id)
    assert "examples/mixture_toy.py" in run.data.tags["info.command"]
    assert run.info.status == "FINISHED"
    assert study.best() is not None


def test_proxy_training_runs_as_a_ray_task(corpus_cache: Path) -> None:
    data = proxy_config(corpus_cache)
    data["runner"] = {"kind": "ray", "trial": data["runner"]}
    runner = make_runner(parse_config(data))
    weights = {"code": 0.5, "legal": 0.3, "scripture": 0.2}
    spec = TrialSpec(0, weights, Fidelity(model_size="0.1M", tokens=8192), seed=5)
    result = runner.run(spec)
    assert not result.failed, result.error
    assert {"loss.code", "loss.legal", "loss.scripture"} <= set(result.metrics)
    assert [t for t, _ in result.curve] == [4096, 8192]
    assert result.info["domain.code.package"] == "django==5.2.19"
    assert json.loads(json.dumps(result.series))["train_loss"]
