"""Wall-time speed-up of running trials at once: 1 worker against N, locally and on Ray.

    python benchmarks/workers_speedup.py [--trials 16] [--seconds 3] [--workers 4]

On a 2-core machine real proxy trainings cannot run four at a time faster than one, so each
trial here stands for a training of `--seconds` that waits on an accelerator:
- local: the RegMix replay study (`studies/pile-replay.yaml`), each replayed answer held back
  `--seconds` (`Held` below), run in the study's worker threads;
- Ray: the command-runner example study, its trainer a script that sleeps `--seconds` and
  writes its metrics, each trial a Ray task on a local Ray with `--workers` CPUs.
Each study runs `--trials` trials of the default optimiser's initial design (no model fit,
so that the figure is the runners' and not the proposals', which are made one at a time);
every trial must be in MLflow, finished. Ray's workers are started by a first, untimed study
(a cluster keeps its workers between studies).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from mlflow.tracking import MlflowClient

from admire.config import OptimizerConfig, load_config, parse_config
from admire.runners import make_runner
from admire.runners.base import Runner, TrialResult, TrialSpec
from admire.study import Study

STUDIES = Path(__file__).resolve().parent.parent / "studies"

SLEEPER = """
import json, os, sys, time
time.sleep(float(sys.argv[1]))
trial = json.load(open(os.environ["ADMIRE_TRIAL_JSON"]))
w = trial["weights"]
metrics = {f"loss.{d}": 3.0 - w[d] + 0.5 * sum(v * v for v in w.values()) for d in w}
open(os.environ["ADMIRE_RESULTS"], "w").write(json.dumps({"metrics": metrics}))
"""


class Held:
    """A runner whose every answer takes `seconds` longer, as a training on an accelerator
    would (the wait releases the interpreter, as waiting on a GPU or a subprocess does)."""

    def __init__(self, inner: Runner, seconds: float) -> None:
        self.inner, self.seconds = inner, seconds

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        return getattr(self.inner, name)

    def run(self, spec: TrialSpec) -> TrialResult:
        time.sleep(self.seconds)
        return self.inner.run(spec)


def _timed(config, runner, trials: int, workers: int, store: Path, tag: str = "") -> float:  # type: ignore[no-untyped-def]
    uri = f"sqlite:///{store / f'{config.name}-{workers}{tag}.db'}"
    optimizer = OptimizerConfig(**{**config.optimizer.model_dump(), "n_initial": trials})
    config = config.model_copy(update={"optimizer": optimizer})
    study = Study.create(config, tracking_uri=uri, runner=runner)
    study.figures = False
    t0 = time.perf_counter()
    study.optimize(max_trials=trials, progress=False, workers=workers)
    wall = time.perf_counter() - t0
    client = MlflowClient(uri)
    finished = sum(client.get_run(t.run_id).info.status == "FINISHED" for t in study.trials)
    if finished != trials:
        raise SystemExit(f"{workers} workers: {finished} of {trials} trials finished in MLflow")
    return wall


def _report(name: str, walls: dict[int, float], trials: int) -> None:
    one = walls[1]
    for workers, wall in walls.items():
        print(
            f"{name:<6} workers {workers}: {wall:6.1f} s for {trials} trials "
            f"(every trial FINISHED in MLflow), speed-up {one / wall:4.2f}x"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--workers", type=int, default=4)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        store = Path(tmp)
        replay = load_config(STUDIES / "pile-replay.yaml")
        walls = {
            w: _timed(replay, Held(make_runner(replay), args.seconds), args.trials, w, store)
            for w in (1, args.workers)
        }
        _report("local", walls, args.trials)

        import ray

        ray.init(num_cpus=args.workers, include_dashboard=False, logging_level="ERROR")
        try:
            script = store / "sleeper.py"
            script.write_text(SLEEPER)
            data = load_config(STUDIES / "command-example.yaml").model_dump(mode="json")
            trial = data["runner"] | {
                "command": f"{{python}} {script} {args.seconds}",
                "cwd": str(STUDIES.parent),
            }
            data["runner"] = {"kind": "ray", "trial": trial}
            command = parse_config(data)
            _timed(command, make_runner(command), args.workers, args.workers, store, "-warm")
            walls = {
                w: _timed(command, make_runner(command), args.trials, w, store)
                for w in (1, args.workers)
            }
            _report("ray", walls, args.trials)
        finally:
            ray.shutdown()


if __name__ == "__main__":
    main()
