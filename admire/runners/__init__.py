"""Runners answer trials: `replay` (released runs), `proxy` (local proxy training),
`command` (the user's own trainer) and `ray` (either of the last two as Ray tasks)."""

from admire.runners.base import PoolRow, Runner, TrialResult, TrialRun, TrialSpec, TrialTask

__all__ = ["PoolRow", "Runner", "TrialResult", "TrialRun", "TrialSpec", "TrialTask", "make_runner"]


def make_runner(config, check_data: bool = False):  # type: ignore[no-untyped-def]
    """The runner a study's config names, validated against the study. `check_data` also reads
    the runner's data sources now (for a new study: bad data is refused before anything is
    written, not trial by trial); a stored study opens without it."""
    kind = config.runner.kind
    if kind == "replay":
        from admire.runners.replay import ReplayRunner

        return ReplayRunner.from_config(config)
    if kind == "proxy":
        from admire.runners.local import LocalRunner

        runner = LocalRunner.from_config(config)
        if check_data:
            runner.check_data()
        return runner
    if kind == "command":
        from admire.runners.command import CommandRunner

        return CommandRunner.from_config(config)
    if kind == "ray":
        from admire.runners.ray import RayRunner

        return RayRunner.from_config(config)
    raise ValueError(f"unknown runner kind {kind!r}")
