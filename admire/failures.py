"""What a study does when its trials fail: retry them, and give up when most of them fail.

A trial fails when its runner raises or reports a failure, a metric is missing or not finite
(NaN), its process is killed (SIGKILL, out of memory) or its timeout passes. It is kept as a
FAILED run with the reason (tag `error`) and costs its measured time (`Study.spent`).

- **Retries.** A failed trial is run again as a new trial with the same spec (mixture,
  fidelity, pool row and, unless `runner.retry_new_seed`, seed), up to `runner.max_retries`
  times. Each attempt is its own MLflow run whose creation writes `admire.retry_of` (the first
  attempt's index) and `admire.attempt`, so which failures still have a retry left is read
  from the store: a resume neither forgets a retry nor retries beyond the limit.
- **Stopping.** The study stops starting trials once `budget.max_consecutive_failures` trials
  failed in a row, or, after at least `MIN_FAILED_FOR_RATE` failures, more than
  `budget.max_failure_rate` of the trials failed (Ax's `tolerated_trial_failure_rate` and
  `min_failed_trials_for_failure_rate_check`, with the same defaults). Both count the trials
  of one `optimize` call: after fixing the cause, a resume starts counting afresh.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

from admire.config import StudyConfig
from admire.tracking import trial_name
from admire.trial import FAILED, TrialRecord, TrialSpec, trial_seed

MIN_FAILED_FOR_RATE = 5
"""Failures before the failure rate is checked (Ax's default): a study is not stopped for
its first unlucky trial or two."""
MAX_REASON_CHARS = 200


class TooManyFailuresError(RuntimeError):
    """A study stopped because its trials kept failing; the message (one line) says how many,
    the last one's reason, and how to continue."""


@dataclass(frozen=True)
class Retry:
    """A failed trial to run again: `failed` is its latest failed attempt."""

    failed: TrialRecord
    of: int
    """The index of the first attempt."""
    attempt: int


class FailurePolicy:
    """Retry and stop decisions for one study, as functions of its trial records."""

    def __init__(self, config: StudyConfig) -> None:
        self.name = config.name
        self.seed = config.seed
        self.max_retries = config.runner.max_retries
        self.new_seed = config.runner.retry_new_seed
        self.max_rate = config.budget.max_failure_rate
        self.max_in_a_row = config.budget.max_consecutive_failures

    def next_retry(
        self, records: Sequence[TrialRecord], pending: Iterable[tuple[int, int]] = ()
    ) -> Retry | None:
        """The earliest failed trial that has a retry left and none made yet; `pending` are
        the (first attempt's index, attempt) of retries in flight."""
        made = {(r.retry_of, r.attempt) for r in records if r.retry_of is not None}
        made |= set(pending)
        for r in records:
            if r.state != FAILED or r.attempt > self.max_retries:
                continue
            of = r.spec.index if r.retry_of is None else r.retry_of
            if (of, r.attempt + 1) not in made:
                return Retry(r, of, r.attempt + 1)
        return None

    def retry_spec(self, retry: Retry, index: int) -> TrialSpec:
        """The spec of the retry, as trial `index`: the failed trial's, seed included unless
        `retry_new_seed` (then the seed trial `index` would have had)."""
        spec = retry.failed.spec
        seed = trial_seed(self.seed, index) if self.new_seed else spec.seed
        return replace(spec, index=index, seed=seed, tracking=None)

    def stop_reason(self, finished: Sequence[TrialRecord]) -> str | None:
        """Why the study must stop, given the trials finished in this call in the order they
        were told; None while it may go on."""
        if not finished or finished[-1].state != FAILED:
            return None
        in_a_row = 0
        for r in reversed(finished):
            if r.state != FAILED:
                break
            in_a_row += 1
        failed = sum(r.state == FAILED for r in finished)
        if self.max_in_a_row is not None and in_a_row >= self.max_in_a_row:
            what = f"{in_a_row} trials failed in a row (budget.max_consecutive_failures)"
        elif failed >= MIN_FAILED_FOR_RATE and failed / len(finished) > self.max_rate:
            what = (
                f"{failed} of {len(finished)} trials failed, more than "
                f"budget.max_failure_rate {self.max_rate:g}"
            )
        else:
            return None
        last = finished[-1]
        reason = _one_line(last.error)
        return (
            f"study '{self.name}' stopped: {what}; the last, {trial_name(last.spec.index)}: "
            f"{reason}. Fix the cause (`admire trials {self.name} --csv` has every error), then "
            f"continue with `make resume NAME={self.name}`"
        )


def _one_line(error: str) -> str:
    """An error on one line: its first line, which says what failed, and its last, which for
    a crashed process is usually the exception (`no GPU here`, `CUDA out of memory`)."""
    lines = [line.strip() for line in error.splitlines() if line.strip()] or ["no reason given"]
    half = MAX_REASON_CHARS // 2
    short = [line if len(line) <= half else line[: half - 1] + "…" for line in lines]
    return short[0] if len(short) == 1 else f"{short[0]} … {short[-1]}"
