"""Runners answer trials: `replay` (released runs) and `proxy` (local proxy training)."""

from admire.runners.base import PoolRow, Runner, TrialResult, TrialSpec

__all__ = ["PoolRow", "Runner", "TrialResult", "TrialSpec", "make_runner"]


def make_runner(config, check_data: bool = False):  # type: ignore[no-untyped-def]
    """The runner a study's config names, validated against the study. `check_data` also reads
    the runner's data sources now (for a new study: bad data is refused before anything is
    written, not trial by trial); a stored study opens without it."""
    if config.runner.kind == "replay":
        from admire.runners.replay import ReplayRunner

        return ReplayRunner.from_config(config)
    if config.runner.kind == "proxy":
        from admire.runners.local import LocalRunner

        runner = LocalRunner.from_config(config)
        if check_data:
            runner.check_data()
        return runner
    raise ValueError(f"unknown runner kind {config.runner.kind!r}")
