"""Runners answer trials: replay (released runs) now; proxy training builds on the same API."""

from admire.runners.base import PoolRow, Runner, TrialResult, TrialSpec

__all__ = ["PoolRow", "Runner", "TrialResult", "TrialSpec", "make_runner"]


def make_runner(config):  # type: ignore[no-untyped-def]
    """The runner a study's config names, validated against the study."""
    from admire.runners.replay import ReplayRunner

    if config.runner.kind == "replay":
        return ReplayRunner.from_config(config)
    raise ValueError(f"unknown runner kind {config.runner.kind!r}")
