"""A newcomer's walk-through: the README's commands, in a fresh clone, on a replay study.

It clones the repository's committed state (what a newcomer gets), writes a small study file
as the README's "Study files" describes (the shipped pile-replay study with a 4-trial budget,
so that it takes seconds), and runs `make study`, `make status`, `make best ARGS=--json`,
`make export`, `make list` and `make delete` there, checking what each prints. The existing
virtual environment is reused instead of a fresh `make setup` (minutes of installing): `BIN`
points make at it and `-o` tells make that the clone's install stamp is up to date.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO

pytestmark = pytest.mark.slow

DOMAINS = 17  # of the shipped RegMix Pile table


@pytest.fixture
def clone(tmp_path: Path) -> Path:
    if shutil.which("git") is None or shutil.which("make") is None:
        pytest.skip("the walk-through needs git and make")
    if not (REPO / ".git").exists():
        pytest.skip("not a git checkout: nothing to clone")
    target = tmp_path / "admire"
    subprocess.run(["git", "clone", "--quiet", str(REPO), str(target)], check=True, timeout=120)
    study = yaml.safe_load((target / "studies" / "pile-replay.yaml").read_text())
    study |= {"name": "first", "budget": {"max_trials": 4, "max_cost": 20.0}}
    study["optimizer"] = {**study["optimizer"], "n_initial": 3}
    (target / "studies" / "first.yaml").write_text(yaml.safe_dump(study, sort_keys=False))
    return target


def _make(clone: Path, *args: str) -> str:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "ADMIRE_", "PYTHON"))
    }
    env |= {"PYTHONPATH": str(clone), "ADMIRE_CACHE": str(clone.parent / "cache")}
    bin_dir = Path(sys.executable).parent
    proc = subprocess.run(
        ["make", "-s", "-o", ".venv/.installed", f"BIN={bin_dir}", *args],
        cwd=clone,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc.stdout


def test_clone_run_status_best_export(clone: Path) -> None:
    out = _make(clone, "study", "NAME=first")
    lines = out.splitlines()
    assert any(line.startswith("[first] t003 (4 of 4) 1") for line in lines), out
    assert "recommended mixture at 1B × 25B tok" in out
    assert (clone / "mlruns" / "mlflow.db").is_file()  # the default store, in the clone

    status = _make(clone, "status", "NAME=first")
    assert "state:    stopped" in status, status
    assert "trials:   4 of 4 (4 completed, 0 failed, 0 running)" in status, status
    assert "best:" in status and "UI:       http://127.0.0.1:5000/#/experiments/" in status

    best = json.loads(_make(clone, "best", "NAME=first", "ARGS=--json"))
    assert best["study"] == "first" and best["trials"] == 4
    assert len(best["weights"]) == DOMAINS
    assert sum(best["weights"].values()) == pytest.approx(1.0)

    _make(clone, "export", "NAME=first", "ARGS=--tokens 2.5e10 --format json --out mix.json")
    mix = json.loads((clone / "mix.json").read_text())
    assert mix["weights"] == best["weights"]
    assert mix["interleave_datasets"]["domains"] == list(best["weights"])
    assert sum(mix["interleave_datasets"]["probabilities"]) == pytest.approx(1.0)
    assert sum(mix["tokens"].values()) == 25_000_000_000

    listed = _make(clone, "list")
    assert "first" in listed and "stopped" in listed, listed
    gone = _make(clone, "delete", "NAME=first", "ARGS=--yes")
    assert gone.startswith("deleted study 'first' ("), gone
    assert _make(clone, "list").startswith("no studies in sqlite:///")
