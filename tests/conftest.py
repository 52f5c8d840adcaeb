"""Shared fixtures: a real MLflow SQLite store per test, migrated once per session."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from admire.config import load_config

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


def table_config(name: str, table: str, domains: list[str], **overrides: object) -> dict:
    """A replay study over a run table whose runs are all at one fidelity: size S (1e5
    parameters), 1e6 tokens."""
    return {
        "name": name,
        "domains": domains,
        "objective": {"metrics": "loss"},
        "fidelities": {
            "model_sizes": {"S": 1e5},
            "tokens": [1e6],
            "target": {"model_size": "S", "tokens": 1e6},
        },
        "budget": {"max_trials": 3},
        "runner": {"kind": "replay", "table": table},
        **overrides,
    }


@pytest.fixture(scope="session")
def corpus_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One tokenised-corpus cache for the whole session (as on a user's machine)."""
    return tmp_path_factory.mktemp("admire-cache")


def proxy_config(cache: Path, **runner: object) -> dict:
    """A test-sized proxy study over three embedded domains (seconds per trial on a CPU)."""
    return {
        "name": "proxy-small",
        "seed": 3,
        "domains": ["code", "legal", "scripture"],
        "objective": {"metrics": "loss.*"},
        "fidelities": {
            "model_sizes": ["0.1M"],
            "pairs": [["0.1M", 8192], ["0.1M", 16384]],
            "target": {"model_size": "0.1M", "tokens": 16384},
        },
        "budget": {"max_trials": 4},
        "runner": {
            "kind": "proxy",
            "max_mb_per_domain": 0.25,
            "tokenizer": {"vocab_size": 512, "sample_mb": 0.1},
            "seq_len": 64,
            "batch_size": 4,
            "eval_at": [0.5, 1.0],
            "eval_tokens": 512,
            "timeout_s": 120,
            "cache_dir": str(cache),
            **runner,
        },
        "optimizer": {"n_initial": 2, "n_candidates": 64},
    }


@pytest.fixture(scope="session")
def finished_pile(tmp_path_factory: pytest.TempPathFactory, _migrated_db: Path) -> str:
    """The tracking URI of a store holding a finished 6-trial pile-replay study (read-only:
    tests that change a study make their own)."""
    from admire import Study
    from admire.config import parse_config

    store = tmp_path_factory.mktemp("finished") / "mlruns"
    store.mkdir()
    shutil.copyfile(_migrated_db, store / "mlflow.db")
    uri = f"sqlite:///{store / 'mlflow.db'}"
    config = pile_config(budget={"max_trials": 6, "max_cost": 20.0}, optimizer={"n_initial": 4})
    Study.create(parse_config(config), tracking_uri=uri).optimize(progress=False)
    return uri


def ray_command_study(command: str, **ray_settings: object) -> dict:
    """The command-example study, its trainer replaced by `command`, run through Ray."""
    data = load_config(STUDIES / "command-example.yaml").model_dump(mode="json")
    trial = data["runner"] | {"command": command, "cwd": str(STUDIES.parent)}
    data["runner"] = {"kind": "ray", "num_cpus": 1, "trial": trial, **ray_settings}
    return data
