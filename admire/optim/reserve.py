"""The reserve (`ReserveRules`, a layer of `AdmireOptimizer`): the study's last trials,
kept for runs of the target's size once the trials left are no more than the target runs the
cost left pays for (`pricing: reserve`), and the rules that place them.

Cheap runs find a pick; the reserve checks it where it counts. Its first run checks the
standing pick itself (`check_pick`); while the target-size runs keep falling short, a GP of
those runs alone places the next (`hedge`); its last trials run the rows that could still
beat the pick (`challenge`).
"""

from __future__ import annotations

import math

import numpy as np

from admire.config import Fidelity
from admire.optim.acquisition import p_better, predict
from admire.optim.base import History
from admire.optim.model import StudyGP
from admire.optim.pick import PickRules, is_mixture, same_mixture
from admire.trial import TrialSpec

HEDGE_AFTER = 3
"""Runs of the target's size before `hedge` places any: a GP of fewer has almost nothing to
say about where the next should go."""
HEDGE_STALL = 1
"""Runs at the target in a row, each short of the best before it, that make a study stalled
(`hedge: stall`)."""


class ReserveRules(PickRules):
    """The reserve's rules over the study's history, for a GP optimiser with `MFBOOptions`
    whose study GP is `gp`."""

    gp: StudyGP

    def allowed(self) -> list[int]:
        """Fidelity indices this optimiser may run."""
        return list(range(len(self.space.fidelities.fidelities)))

    def _in_reserve(self, history: History, remaining: float, n_pending: int) -> bool:
        """Whether the trials left are no more than the target runs the cost left pays for:
        with `pricing: reserve`, from then on every trial is a run of the target's size
        (`reserve_at`)."""
        left = self._trials_left(history, n_pending)
        if self.options.pricing != "reserve" or left is None or not np.isfinite(remaining):
            return False
        target = float(history.costs[self.space.fidelities.target_index])
        return 0 < left <= math.floor(remaining / target + 1e-9)

    @staticmethod
    def _trials_left(history: History, n_pending: int) -> int | None:
        return None if history.trials_left is None else history.trials_left - n_pending

    def _prices(self, history: History, remaining: float, n_pending: int) -> np.ndarray:
        """What a trial at each fidelity costs the acquisition (see `MFBOOptions.pricing`).

        Under a trial cap, cheap trials are not nearly free: when 50 trials remain for a
        budget of 20 target runs, a 0.001-unit trial uses up 1/50 of what is left and a
        1-unit trial 1/20, so the target run costs 2.5 of them, not 1000 (`trials`)."""
        costs = history.costs + self.options.fixed_cost
        left = self._trials_left(history, n_pending)
        if self.options.pricing != "trials" or left is None or left <= 0:
            return costs
        if not np.isfinite(remaining) or remaining <= 0:
            return np.full_like(costs, 1.0 / left)
        return np.maximum(costs / remaining, 1.0 / left)

    def _checks(self, fid: Fidelity) -> bool:
        """Whether a run at `fid` checks a pick at the recommendation's fidelity, and so may
        run in the reserve: that fidelity itself, or (`reserve_at: target-size`) any token
        budget of its model size, a run of the same model stopped earlier."""
        at = self.space.fidelities.fidelities[self.recommend_index()]
        if self.options.reserve_at == "target":
            return fid == at
        return fid.model_size == at.model_size

    def _check_pick(
        self, history: History, pending: list[TrialSpec], chosen: int, affordable: list[int]
    ) -> tuple[np.ndarray, int, str | None] | None:
        """With `check_pick`, when the acquisition has chosen the first run that checks the
        recommendation (`_checks`; none done or running): the standing pick at the
        recommendation's fidelity instead (weights, fidelity index, pool id). The check is a
        full run even where the reserve may stop runs early: only a pick measured there is
        always held (`_held_pick`)."""
        fid = self.space.fidelities.fidelities[chosen]
        if not self.options.check_pick or not self._checks(fid) or len(self.allowed()) < 2:
            return None
        specs = [r.spec for r in history.completed] + list(pending)
        if any(self._checks(s.fidelity) for s in specs):  # only the first such run checks
            return None
        pick = self._standing(history)
        if pick is None:
            return None
        at = self.recommend_index()
        if at not in affordable:
            return None
        if self.space.pool is None:
            return pick, at, None
        for row in self.free_rows(history, [at], pending):
            if is_mixture(row.weights, pick):
                return row.weights, at, row.pool_id
        return None

    def _challenger(
        self,
        history: History,
        pending: list[TrialSpec],
        affordable: list[int],
        model,  # type: ignore[no-untyped-def]
        remaining: float,
    ) -> tuple[np.ndarray, int, str | None] | None:
        """With `challenge` (and `check_pick`, whose check comes first), in a pool, once the
        reserve's trials left are no more than the rows the hold cannot rule out (in a study
        of one model size, from the reserve's first trial): the pick's row at the
        recommendation's fidelity if it has no run there, else the rival the posterior ranks
        best (weights, fidelity index, pool id); else None. A rival is a row with no run
        there that the posterior (believing the pending trials) gives at least
        1 - `switch_confidence` of beating the pick. Asked before the acquisition, which
        would only be overruled (in the reserve every candidate checks the pick)."""
        at = self.recommend_index()
        if (
            self.space.pool is None
            or not (self.options.challenge and self.options.check_pick)
            or len(self.allowed()) < 2
            or at not in affordable
            or not self._in_reserve(history, remaining, len(pending))
        ):
            return None
        specs = [r.spec for r in history.completed] + list(pending)
        if not any(self._checks(s.fidelity) for s in specs):  # the first is `_check_pick`'s
            return None
        free = {p.pool_id for p in self.free_rows(history, [at], pending)}
        pick = self._standing(history)
        if not free or pick is None:
            return None
        rows = self.target_rows()
        weights = np.array([r.weights for r in rows])
        same = same_mixture(weights, pick)
        mine = rows[int(same[0])] if len(same) else None
        open_rows = [i for i, r in enumerate(rows) if r.pool_id in free and r is not mine]
        coords = self.space.fidelities.coords()[at]
        beats = p_better(model, pick, [weights[i] for i in open_rows], coords) if open_rows else []
        rivals = [
            i for i, b in zip(open_rows, beats, strict=True) if b <= self.options.switch_confidence
        ]
        unmeasured = mine is not None and mine.pool_id in free
        left = self._trials_left(history, len(pending)) or 0
        # With one model size every run since the first was a run of the target's size, so
        # the reserve's cheap runs are the same early checkpoints that left the rivals open.
        if left > len(rivals) + unmeasured and not self.space.fidelities.one_model_size:
            return None
        if mine is not None and unmeasured:
            return mine.weights, at, mine.pool_id
        if not rivals:
            return None
        top = rows[rivals[int(np.argmax(predict(model, weights[rivals], coords).mean))]]
        return top.weights, at, top.pool_id

    def _hedge(self, history: History, pending: list[TrialSpec]):  # type: ignore[no-untyped-def]
        """On the reserve's hedging turns (`hedge`; from the fourth run of the target's size:
        with fewer, a GP of them alone cannot say where the next should go), the GP of the
        target size's runs alone (`StudyGP.size_alone`); else None."""
        if self.options.hedge == "off":
            return None
        specs = [r.spec for r in history.completed] + list(pending)
        runs = sum(self._checks(s.fidelity) for s in specs)
        if runs < HEDGE_AFTER:
            return None
        if self.options.hedge == "alternate" and runs % 2 == 0:
            return None
        if self.options.hedge == "stall" and not self._stalled(history):
            return None
        return self.gp.size_alone(history)

    def _stalled(self, history: History) -> bool:
        """Whether the study's last `HEDGE_STALL` completed runs at the target each fell short
        of the best target value before it."""
        at = self.space.fidelities.fidelities[self.recommend_index()]
        values = [self.value(r) for r in history.completed if r.spec.fidelity == at]
        if len(values) <= HEDGE_STALL:
            return False
        return max(values[-HEDGE_STALL:]) < max(values[:-HEDGE_STALL])
