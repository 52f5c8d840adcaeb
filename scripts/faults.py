"""`make faults`: SIGKILL a study's driver at random points, resume it each time, check the books.

A replay study over RegMix's Pile runs (table regmix-pile, pool mode) runs in a subprocess
(`python -m admire run`, then `python -m admire resume NAME` after every kill) against a
temporary MLflow store. Each kill lands at a random moment of one of four phases, in shuffled
turns: during a proposal (after a trial's line), during a trial, while its results are being
logged, and early in a resume (while it finishes the trial the last kill interrupted). Replay
trials take no time, so the drivers run with a `sitecustomize` that makes every replayed
trial last `--trial-s` seconds and say when it starts and ends; nothing else changes.

At the end, against MLflow: every trial index from 0 to the budget is there exactly once,
COMPLETED and closed, no pool row was run twice, every result a driver printed is in MLflow
with the same objective, and the optimiser's history (`Study.load(...).history()`) holds the
same trials and objectives as MLflow. The last line is `kills=N resumed=N lost=L duplicated=D`;
the exit code is 1 when anything was lost, duplicated or disagrees.

    python scripts/faults.py --kills 20 --seed 0
"""

from __future__ import annotations

import argparse
import math
import os
import queue
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
NAME = "faults"
PHASES = ("proposal", "trial", "logging", "resume")
LIFE_TIMEOUT_S = 300.0
TRIAL_LINE = re.compile(rf"^\[{NAME}\] t(\d+) .* -> (\S+) \|")

SITECUSTOMIZE = '''
"""Loaded by the drivers of scripts/faults.py only: a replayed trial takes some time."""
import os
import time

from admire.runners.replay import ReplayRunner

_run = ReplayRunner.run


def _slow_run(self, spec):
    print(f"faults: trial {spec.index} start", flush=True)
    time.sleep(float(os.environ["ADMIRE_FAULTS_TRIAL_S"]))
    result = _run(self, spec)
    print(f"faults: trial {spec.index} end", flush=True)
    return result


ReplayRunner.run = _slow_run
'''


@dataclass
class Driver:
    """One driver process and the lines it printed (read by a thread, with their times)."""

    args: list[str]
    env: dict[str, str]
    cwd: Path
    log: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "admire", *self.args],
            cwd=self.cwd,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.log.append(line.rstrip())
            self.lines.put(line.rstrip())
        self.lines.put(None)

    def wait_for(self, matches, count: int, deadline: float) -> bool:  # type: ignore[no-untyped-def]
        """Wait until `count` lines satisfy `matches`; False when the driver exited first."""
        seen = 0
        while seen < count:
            line = self.lines.get(timeout=max(0.1, deadline - time.monotonic()))
            if line is None:
                return False
            seen += bool(matches(line))
        return True

    def kill(self) -> None:
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()


def _trigger(phase: str) -> tuple[object, float]:
    """The lines that open a phase's window, and how long the window lasts (seconds)."""
    if phase == "trial":
        return (lambda line: line.startswith("faults: trial") and line.endswith("start")), 1.0
    if phase == "logging":
        return (lambda line: line.startswith("faults: trial") and line.endswith("end")), 0.15
    if phase == "proposal":
        return (lambda line: TRIAL_LINE.match(line) is not None), 0.5
    return (lambda line: True), 0.3  # resume: its first line (the interrupted trial re-run)


def budget(kills: int) -> int:
    """The study's max_trials: a driver makes at most two new trials before its kill, so the
    budget outlasts the kills, and the last resume still has trials to run."""
    return 2 * kills + 3


def _study_file(folder: Path, max_trials: int) -> Path:
    data = yaml.safe_load((REPO / "studies" / "pile-replay.yaml").read_text())
    data |= {
        "name": NAME,
        "budget": {"max_trials": max_trials, "max_cost": 1000.0},
        "optimizer": {"n_initial": 4, "n_candidates": 64},
    }
    path = folder / f"{NAME}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _environment(hooks: Path, trial_s: float) -> dict[str, str]:
    path = [str(hooks), str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]
    return os.environ | {
        "PYTHONPATH": os.pathsep.join(path),
        "PYTHONUNBUFFERED": "1",
        "ADMIRE_FAULTS_TRIAL_S": str(trial_s),
    }


def run_faults(kills: int, seed: int, trial_s: float, folder: Path) -> tuple[int, int, dict]:
    """Kill and resume the study `kills` times, then let it finish; returns (kills, resumes,
    the kills per phase)."""
    rng = random.Random(seed)
    hooks = folder / "hooks"
    hooks.mkdir()
    (hooks / "sitecustomize.py").write_text(SITECUSTOMIZE)
    env = _environment(hooks, trial_s)
    uri = f"sqlite:///{folder / 'mlruns' / 'mlflow.db'}"
    study = _study_file(folder, budget(kills))
    phases = [PHASES[i % len(PHASES)] for i in range(kills)]
    rng.shuffle(phases)
    if phases and phases[0] == "resume":  # the first driver is `run`, not a resume
        phases.append(phases.pop(0))
    log: list[str] = []
    done: Counter[str] = Counter()
    resumed = 0
    for i, phase in enumerate(phases):
        args = ["run", str(study)] if i == 0 else ["resume", NAME]
        resumed += i > 0
        driver = Driver(["--tracking-uri", uri, *args], env, folder, log)
        matches, window = _trigger(phase)
        count = 1 if phase == "resume" else rng.randint(1, 2)
        if not driver.wait_for(matches, count, time.monotonic() + LIFE_TIMEOUT_S):
            raise SystemExit(f"faults: the driver exited before kill {i + 1}:\n" + "\n".join(log))
        time.sleep(rng.uniform(0, window * trial_s if phase == "trial" else window))
        driver.kill()
        done[phase] += 1
        log.append(f"faults: kill {i + 1} ({phase})")
    final = Driver(["--tracking-uri", uri, "resume", NAME], env, folder, log)
    resumed += 1
    try:
        code = final.proc.wait(timeout=LIFE_TIMEOUT_S * 3)
    except subprocess.TimeoutExpired:
        final.kill()
        code = -1
    (folder / "drivers.log").write_text("\n".join(log) + "\n")
    if code != 0:
        raise SystemExit(f"faults: the last resume exited with {code}; see {folder}/drivers.log")
    return sum(done.values()), resumed, dict(done)


def check(folder: Path, max_trials: int) -> tuple[int, int, list[str]]:
    """(lost, duplicated, disagreements) between the drivers' output, MLflow and the optimiser."""
    from mlflow.tracking import MlflowClient

    from admire import Study

    uri = f"sqlite:///{folder / 'mlruns' / 'mlflow.db'}"
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(NAME)
    runs = [
        r
        for r in client.search_runs([exp.experiment_id], max_results=10_000)
        if r.data.tags.get("admire.kind") == "trial"
    ]
    by_index = Counter(int(r.data.tags["trial"]) for r in runs)
    pools = Counter(r.data.params.get("pool_id") for r in runs)
    duplicated = sum(n - 1 for n in by_index.values()) + sum(n - 1 for n in pools.values())
    lost = sum(1 for i in range(max_trials) if i not in by_index)
    problems = []
    for r in runs:
        if r.data.tags.get("status") != "COMPLETED" or r.info.status != "FINISHED":
            lost += 1
            problems.append(f"trial {r.data.tags['trial']} is {r.data.tags.get('status')}")
    objective = {int(r.data.tags["trial"]): r.data.metrics.get("objective") for r in runs}
    printed = [TRIAL_LINE.match(line) for line in (folder / "drivers.log").read_text().splitlines()]
    for m in filter(None, printed):
        index, shown = int(m.group(1)), float(m.group(2))
        value = objective.get(index)
        if value is None or not math.isclose(round(value, 4), shown, abs_tol=1e-9):
            lost += 1
            problems.append(f"t{index:03d} was printed as {shown} but MLflow has {value}")
    study = Study.load(NAME, tracking_uri=uri)
    history = {(r.run_id, r.spec.index, r.objective) for r in study.history().completed}
    stored = {
        (r.info.run_id, int(r.data.tags["trial"]), r.data.metrics.get("objective")) for r in runs
    }
    if history != stored:
        problems.append(f"the optimiser's history differs from MLflow: {history ^ stored}")
    parent = client.get_run(study.parent_id)
    if parent.info.status != "FINISHED":
        problems.append(f"the study's run is {parent.info.status}")
    logged = parent.data.metrics.get("cumulative_cost", math.nan)
    if not math.isclose(logged, study.spent(), rel_tol=1e-9):
        problems.append(f"cumulative_cost {logged} != the trials' cost {study.spent()}")
    return lost, duplicated, problems


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--kills", type=int, default=20, help="times the driver is SIGKILLed")
    p.add_argument("--seed", type=int, default=0, help="seed of the kill points")
    p.add_argument("--trial-s", type=float, default=0.3, help="seconds a replayed trial takes")
    p.add_argument("--keep", action="store_true", help="keep the temporary store and logs")
    args = p.parse_args(argv)
    folder = Path(tempfile.mkdtemp(prefix="admire-faults-"))
    kills, resumed, phases = run_faults(args.kills, args.seed, args.trial_s, folder)
    lost, duplicated, problems = check(folder, budget(args.kills))
    for problem in problems:
        print(f"faults: {problem}")
    print("faults: kills by phase: " + ", ".join(f"{k} {phases.get(k, 0)}" for k in PHASES))
    print(f"kills={kills} resumed={resumed} lost={lost} duplicated={duplicated}")
    bad = lost or duplicated or problems
    if bad or args.keep:
        print(f"faults: store and driver log in {folder}")
    else:
        shutil.rmtree(folder, ignore_errors=True)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
