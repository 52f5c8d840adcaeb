"""admire: Bayesian optimisation of LLM training-data mixtures across proxy-model fidelities.

import admire
study = admire.Study.create("studies/pile-replay.yaml")
study.optimize()
admire.Study.load("pile-replay").resume(max_trials=10)
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from admire.config import ConfigError, StudyConfig, load_config
    from admire.study import (
        Recommendation,
        Study,
        StudyExistsError,
        StudyLockedError,
        StudyNotFoundError,
        TooManyFailuresError,
    )
    from admire.trial import TrialRecord

# The public names resolve on first use (PEP 562): a proxy-training trial runs
# `python -m admire.proxy.train` in a new process, and importing the study layer (MLflow,
# BoTorch) there would add seconds to every trial's start-up and require MLflow on a machine
# that only trains.
_EXPORTS = {
    "ConfigError": "admire.config",
    "StudyConfig": "admire.config",
    "load_config": "admire.config",
    "Recommendation": "admire.study",
    "Study": "admire.study",
    "StudyExistsError": "admire.study",
    "StudyLockedError": "admire.study",
    "StudyNotFoundError": "admire.study",
    "TooManyFailuresError": "admire.study",
    "TrialRecord": "admire.trial",
}

__all__ = [
    "ConfigError",
    "Recommendation",
    "Study",
    "StudyConfig",
    "StudyExistsError",
    "StudyLockedError",
    "StudyNotFoundError",
    "TooManyFailuresError",
    "TrialRecord",
    "load_config",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'admire' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
