"""How admire holds its recommendation (`PickRules`, a layer of `AdmireOptimizer`).

A posterior-mean argmax moves whenever two near-tied mixtures trade places in the fit; a
user who has trained both target models compares what they measured. These rules decide
which standing pick is held against a better posterior mean and where the challenger's win
is read (`hold`, `switch_confidence`), when a better measured target run replaces the pick
(`keep_best_run`), and the odds reported with it.
"""

from __future__ import annotations

import numpy as np

from admire.optim.acquisition import p_better
from admire.optim.base import History, Optimizer
from admire.optim.mfbo_options import MFBOOptions


def same_mixture(weights: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Indices of the rows of `weights` that are the mixture `w`."""
    return np.flatnonzero(np.abs(weights - w).max(axis=1) < 1e-9)


def is_mixture(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether two weight vectors are the same mixture (a pool row and a run of it)."""
    return bool(np.abs(a - b).max() < 1e-9)


class PickRules(Optimizer):
    """The pick's rules over the study's history, for a GP optimiser with `MFBOOptions`."""

    options: MFBOOptions

    def recommend_index(self) -> int:
        """The fidelity whose predictions pick the recommendation."""
        return self.space.fidelities.target_index

    def _standing(self, history: History) -> np.ndarray | None:
        """The study's standing pick as weights in domain order, if it has one."""
        names = self.space.mixtures.names
        if history.pick is None or set(history.pick) != set(names):
            return None
        return np.array([history.pick[n] for n in names])

    def _held_pick(self, history: History) -> tuple[np.ndarray | None, list[np.ndarray]]:
        """The standing pick if it is held against a better posterior mean, and the
        coordinates of the cheaper fidelities at which a challenger's win also counts
        (`hold`; none: at the recommendation's fidelity only). A pick run at the
        recommendation's fidelity is always held (a run of the target's size stopped early
        does not count: a pick held on it would stay held on a guess)."""
        hold = self.options.hold
        pick = self._standing(history)
        if pick is None:
            return None, []
        fids, coords = self.space.fidelities, self.space.fidelities.coords()
        ran_at = [
            fids.index(r.spec.fidelity)
            for r in history.completed
            if is_mixture(self.space.weights(r.spec), pick)
        ]
        if self.recommend_index() in ran_at or hold == "any":
            return pick, []
        if hold == "measured":
            return None, []
        if hold == "evidence":
            size = fids.fidelities[self.recommend_index()].model_size
            ran = {fids.index(r.spec.fidelity) for r in history.completed}
            if any(fids.fidelities[i].model_size == size for i in ran):
                return None, []
            return pick, [coords[i] for i in sorted(ran)]
        if not ran_at:
            return None, []
        return pick, [coords[max(ran_at, key=lambda i: history.costs[i])]]

    def _best_run(
        self, history: History, target_w: np.ndarray, best: int, standing: int | None
    ) -> int:
        """With `keep_best_run` in a pool, the target's runs decide between the rows they
        measured: where the pick `target_w[best]` has no run of the target's model size at
        all and the standing pick `target_w[standing]` has a run at the target, the standing
        pick (a win read from cheaper runs and the mixture kernel alone is a prediction, and
        one unlucky refit makes it a wild one); then, where another target row is measured
        better than the pick, that row's index in `target_w`; else `best`. A pick read at
        a cheaper fidelity (`sf-cheap`) is kept: runs there do not measure the target."""
        target = self.space.fidelities.target_index
        if (
            not self.options.keep_best_run
            or self.space.pool is None
            or self.recommend_index() != target
        ):
            return best
        at = self.space.fidelities.fidelities[target]

        def runs_of(i: int, size_only: bool = False) -> list[float]:
            return [
                self.value(r)
                for r in history.completed
                if (
                    r.spec.fidelity.model_size == at.model_size
                    if size_only
                    else r.spec.fidelity == at
                )
                and is_mixture(self.space.weights(r.spec), target_w[i])
            ]

        mine = runs_of(best)
        held = runs_of(standing) if standing is not None else []
        if held and not runs_of(best, size_only=True):
            best, mine = standing, held
        if not mine:
            return best
        top = max((r for r in history.completed if r.spec.fidelity == at), key=self.value)
        if self.value(top) <= max(mine):
            return best
        same = same_mixture(target_w, self.space.weights(top.spec))
        return int(same[0]) if len(same) else best

    def _odds(self, model, history: History, pick: np.ndarray, coords: np.ndarray) -> dict:  # type: ignore[no-untyped-def]
        """P(the pick beats the uniform mixture) and P(it beats the best target run observed),
        from the joint posterior at the recommendation's fidelity."""
        uniform = self.space.mixtures.sample(256, 0).mean(axis=0)
        target = self.space.fidelities.fidelities[self.recommend_index()]
        runs = [r for r in history.completed if r.spec.fidelity == target]
        others = [uniform]
        if runs:
            others.append(self.space.weights(max(runs, key=self.value).spec))
        odds = p_better(model, pick, others, coords)
        return {
            "p_better_than_uniform": odds[0],
            "p_better_than_best_observed": odds[1] if runs else None,
        }
