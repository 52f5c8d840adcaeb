"""Random search at the target fidelity: the floor every method must clear."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from admire.optim.base import History, Optimizer, Proposal, Recommendation
from admire.trial import TrialSpec


class RandomSearch(Optimizer):
    """Uniform mixtures (Dirichlet(1) within the bounds, or random unused pool rows) at the
    target fidelity; the recommendation is the best target run observed."""

    name = "random"

    def propose(
        self,
        history: History,
        remaining: float,
        pending: Sequence[TrialSpec] = (),
        n: int = 1,
    ) -> list[Proposal]:
        target = self.space.fidelities.target_index
        if not history.affordable(remaining, [target]):
            return []
        rng = np.random.default_rng(self.seed_for(history, pending))
        fid = self.space.fidelities.target
        if self.space.pool is None:
            draws = self.space.mixtures.sample(n, int(rng.integers(2**31)))
            return [Proposal(w, fid, None, "random") for w in draws]
        rows = self.free_rows(history, [target], pending)
        picks = rng.permutation(len(rows))[:n]
        return [Proposal(rows[i].weights, fid, rows[i].pool_id, "random") for i in picks]

    def recommend(self, history: History) -> Recommendation | None:
        return self.observed_recommendation(history)
