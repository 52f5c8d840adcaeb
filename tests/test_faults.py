"""Faults caused for real: `make faults`, small (the study driver SIGKILLed three times and
resumed loses nothing), and a store that turns read-only under a study."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from admire import Study
from admire.tracking import TrackingStoreError
from tests.conftest import REPO, pile_config


@pytest.mark.slow
def test_three_kills_lose_and_duplicate_nothing() -> None:
    proc = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "faults.py"), "--kills", "3", "--seed", "1"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        timeout=900,
    )
    lines = proc.stdout.strip().splitlines()
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert lines[-1] == "kills=3 resumed=3 lost=0 duplicated=0"


def _immutable(path: Path, on: bool) -> bool:
    """chattr +i / -i: read-only even for root (these machines run tests as root)."""
    flag = "+i" if on else "-i"
    done = subprocess.run(["chattr", flag, str(path)], capture_output=True, check=False)
    return done.returncode == 0


def test_a_read_only_store_is_refused_before_any_trial(tracking_uri: str, tmp_path: Path) -> None:
    cfg = pile_config(budget={"max_trials": 2}, optimizer={"n_initial": 2})
    (tmp_path / "pile.yaml").write_text(yaml.safe_dump(cfg))
    Study.create(tmp_path / "pile.yaml", tracking_uri=tracking_uri).optimize(progress=False)
    db = Path(tracking_uri.removeprefix("sqlite:///"))
    if shutil.which("chattr") is None or not _immutable(db, True):
        pytest.skip("chattr +i is unavailable here: no way to make the store read-only as root")
    try:
        with pytest.raises(OSError):
            db.open("ab").close()  # it really is read-only
        args = ["--tracking-uri", tracking_uri, "resume", "pile-replay", "--max-trials", "2"]
        resume = subprocess.run(
            [sys.executable, "-m", "admire", *args],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            env={**os.environ, "PYTHONPATH": str(REPO)},
            timeout=300,
        )
        said = resume.stdout + resume.stderr
        assert resume.returncode == 2, said
        assert "refuses writes" in said and "readonly database" in said, said
        assert "Traceback" not in said
        (tmp_path / "other.yaml").write_text(yaml.safe_dump({**cfg, "name": "other"}))
        with pytest.raises(TrackingStoreError, match="cannot create the study 'other'"):
            Study.create(tmp_path / "other.yaml", tracking_uri=tracking_uri)
    finally:
        _immutable(db, False)
    # Nothing was written: still the two trials of the first run, the parent finished.
    study = Study.load("pile-replay", tracking_uri=tracking_uri)
    assert len(study.trials) == 2
    assert study.store.study_run(study.parent_id).info.status == "FINISHED"
    assert study.store.list_studies() == ["pile-replay"]
