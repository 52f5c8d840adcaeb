"""Runners answer trials: `replay` (released runs), `proxy` (local proxy training),
`command` (the user's own trainer) and `ray` (either of the last two as Ray tasks)."""

from admire.runners.base import PoolRow, Runner, TrialResult, TrialRun, TrialSpec, TrialTask

__all__ = ["PoolRow", "Runner", "TrialResult", "TrialRun", "TrialSpec", "TrialTask", "make_runner"]


def make_runner(config):  # type: ignore[no-untyped-def]
    """The runner a study's config names, validated against the study."""
    kind = config.runner.kind
    if kind == "replay":
        from admire.runners.replay import ReplayRunner

        return ReplayRunner.from_config(config)
    if kind == "proxy":
        from admire.runners.local import LocalRunner

        return LocalRunner.from_config(config)
    if kind == "command":
        from admire.runners.command import CommandRunner

        return CommandRunner.from_config(config)
    if kind == "ray":
        from admire.runners.ray import RayRunner

        return RayRunner.from_config(config)
    raise ValueError(f"unknown runner kind {kind!r}")
