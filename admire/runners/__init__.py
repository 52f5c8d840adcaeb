"""Runners answer trials: `replay` (released runs) and `proxy` (local proxy training)."""

from admire.runners.base import PoolRow, Runner, TrialResult, TrialSpec

__all__ = ["PoolRow", "Runner", "TrialResult", "TrialSpec", "make_runner"]


def make_runner(config):  # type: ignore[no-untyped-def]
    """The runner a study's config names, validated against the study."""
    if config.runner.kind == "replay":
        from admire.runners.replay import ReplayRunner

        return ReplayRunner.from_config(config)
    if config.runner.kind == "proxy":
        from admire.runners.local import LocalRunner

        return LocalRunner.from_config(config)
    raise ValueError(f"unknown runner kind {config.runner.kind!r}")
