"""admire: Bayesian optimisation of LLM training-data mixtures across proxy-model fidelities.

import admire
study = admire.Study.create("studies/pile-replay.yaml")
study.optimize()
admire.Study.load("pile-replay").resume(max_trials=10)
"""

from admire.config import ConfigError, StudyConfig, load_config
from admire.study import (
    Recommendation,
    Study,
    StudyExistsError,
    StudyLockedError,
    StudyNotFoundError,
    TooManyFailuresError,
)
from admire.tracking import TrialRecord

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
