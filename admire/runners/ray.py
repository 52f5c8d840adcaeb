"""Ray runner: each trial runs as a Ray task, on a local Ray or on a cluster.

It wraps the runner its config names under `trial` (proxy or command) and runs that runner's
own trial task (the same `TrialTask` the runner calls in-process) in a Ray worker that holds
`num_cpus` CPUs and `num_gpus` GPUs, so a study gets the same results, failures and MLflow
runs as with the wrapped runner; the worker's output reaches the driver through Ray's log
forwarding. `run` blocks until the trial is done and may be called from several threads at
once: Ray runs as many trials together as the cluster's resources allow.

The driver prepares each task (for proxy training, the tokenised corpus in the cache), so on
a cluster of several machines the cache folder (`runner.trial.cache_dir`), the command's
`cwd` and the tracking store must be reachable at the same paths from every node, and admire
installed there (or shipped with `runtime_env`).
"""

from __future__ import annotations

import importlib.util
import threading
import time
from typing import Any

from admire.config import ConfigError, Fidelity, RayRunnerConfig, StudyConfig
from admire.runners.base import PoolRow, TrialResult, TrialSpec, TrialTask, discard_scratch
from admire.runners.command import CommandRunner
from admire.runners.local import LocalRunner


def admire_trial(task: TrialTask) -> TrialResult:
    """The Ray task: run one trial in this worker."""
    return task()


class RayRunner:
    """Runs the trials of a wrapped proxy or command runner as Ray tasks."""

    def __init__(self, config: RayRunnerConfig, inner: LocalRunner | CommandRunner) -> None:
        self.config = config
        self.inner = inner
        self._lock = threading.Lock()
        self._remote: Any = None

    @classmethod
    def from_config(cls, config: StudyConfig) -> RayRunner:
        from admire.runners import make_runner

        assert isinstance(config.runner, RayRunnerConfig)
        if importlib.util.find_spec("ray") is None:
            raise ConfigError(
                "runner.kind: ray needs Ray, which is not installed: pip install 'admire[ray]'"
            )
        inner = make_runner(config.model_copy(update={"runner": config.runner.trial}))
        return cls(config.runner, inner)

    def metric_names(self) -> list[str]:
        return self.inner.metric_names()

    def pool(self) -> list[PoolRow] | None:
        return None

    def expected_cost(self, fidelity: Fidelity) -> float | None:
        return self.inner.expected_cost(fidelity)

    def reference(self, weights: dict[str, float], fidelity: Fidelity) -> dict[str, float] | None:
        return None

    def domain_caps(self, tokens: float) -> dict[str, float]:
        """The wrapped runner's caps on domain weights (proxy training's `max_epochs`)."""
        caps = getattr(self.inner, "domain_caps", None)
        return {} if caps is None else caps(tokens)

    def _connected(self) -> Any:
        """The remote trial function, joining (or starting) Ray on first use."""
        with self._lock:
            if self._remote is not None:
                return self._remote
            import ray

            c = self.config
            if not ray.is_initialized():
                if c.address is None:
                    ray.init(
                        num_cpus=c.local_cpus,
                        include_dashboard=False,
                        runtime_env=c.runtime_env,
                        logging_level="WARNING",
                    )
                else:
                    ray.init(address=c.address, runtime_env=c.runtime_env, logging_level="WARNING")
            if c.address is None:
                # A local Ray never grows: a task asking for more than it has would wait forever.
                have = ray.cluster_resources()
                for name, need in (("CPU", c.num_cpus), ("GPU", c.num_gpus)):
                    if need > have.get(name, 0.0):
                        raise RuntimeError(
                            f"runner.num_{name.lower()}s is {need:g}, but the local Ray has "
                            f"{have.get(name, 0.0):g} {name}s"
                        )
            self._remote = ray.remote(admire_trial).options(
                num_cpus=c.num_cpus, num_gpus=c.num_gpus, max_retries=c.retries
            )
            return self._remote

    def run(self, spec: TrialSpec) -> TrialResult:
        import ray
        from ray.exceptions import NodeDiedError, WorkerCrashedError

        t0 = time.perf_counter()
        task: TrialTask | None = None
        try:
            remote = self._connected()
            task = self.inner.task(spec)
            return ray.get(remote.remote(task))
        except Exception as err:  # Ray's own failures: the trial fails, the study goes on
            reason = f"{type(err).__name__}: {err}"
            if isinstance(err, WorkerCrashedError | NodeDiedError):
                reason = (
                    f"the Ray worker running it died, also on its {self.config.retries} "
                    f"retries (runner.retries): {reason}"
                )
            return TrialResult(
                {},
                time.perf_counter() - t0,
                failed=True,
                error=f"Ray could not run the trial: {reason}",
            )
        finally:
            # A killed last attempt leaves its scratch folder; on this machine (a local Ray)
            # it goes now; on a cluster's node, with the node's temporary files.
            if task is not None:
                discard_scratch(task.scratch)
