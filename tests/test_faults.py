"""`make faults`, small: the study driver SIGKILLed three times and resumed loses nothing."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import REPO


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
