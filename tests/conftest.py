"""Shared fixtures: a real MLflow SQLite store per test, migrated once per session."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
STUDIES = REPO / "studies"


@pytest.fixture(scope="session")
def _migrated_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from mlflow.tracking import MlflowClient

    db = tmp_path_factory.mktemp("template") / "mlflow.db"
    MlflowClient(tracking_uri=f"sqlite:///{db}").search_experiments()  # runs the migrations
    return db


@pytest.fixture
def tracking_uri(tmp_path: Path, _migrated_db: Path) -> str:
    """A fresh, real MLflow store (SQLite) in this test's temp dir."""
    store = tmp_path / "mlruns"
    store.mkdir()
    shutil.copyfile(_migrated_db, store / "mlflow.db")
    return f"sqlite:///{store / 'mlflow.db'}"


def pile_config(**overrides: object) -> dict:
    """The shipped pile-replay study as a dict, with top-level sections overridden."""
    data = yaml.safe_load((STUDIES / "pile-replay.yaml").read_text())
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    return data
