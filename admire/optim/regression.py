"""RegMix (Liu et al., 2024): many random small runs, a regression from mixture to loss, and
the mixture it predicts best, trained at the target.

`regression` uses LightGBM on the weights, as RegMix does; `regression-linear` a ridge
regression on weights, their square roots and pairwise products. Both run `cheap_trials`
random mixtures (a Dirichlet swarm, or random pool rows) at the cheapest fidelity, then run
their best predicted target mixtures at the target fidelity, best prediction first. The
recommendation is the best target run once there is one, before that the best prediction.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Annotated

import numpy as np
from pydantic import Field

from admire.optim.base import History, Optimizer, Options, Proposal, Recommendation
from admire.trial import TrialSpec

N_CANDIDATES = 2048


class RegressionOptions(Options):
    cheap_trials: Annotated[int, Field(ge=2)] = 32
    """Random runs at the cheapest fidelity before the regression's picks run at the target."""


class RegMixLightGBM(Optimizer):
    """RegMix as published: LightGBM regression over the cheapest fidelity's runs."""

    name = "regression"
    Options = RegressionOptions
    options: RegressionOptions

    def fit_predict(self, x: np.ndarray, y: np.ndarray, cand: np.ndarray, seed: int) -> np.ndarray:
        """Predicted (maximised) objective of `cand` from observations (x, y)."""
        import lightgbm as lgb

        model = lgb.LGBMRegressor(
            n_estimators=300,
            learning_rate=0.05,
            num_leaves=15,
            min_child_samples=2,
            subsample=0.8,
            subsample_freq=1,
            random_state=seed,
            n_jobs=1,
            verbose=-1,
        )
        model.fit(x, y)
        return np.asarray(model.predict(cand))

    def _candidates(self) -> tuple[np.ndarray, list | None]:
        if self.space.pool is not None:
            rows = self.target_rows()
            return np.array([p.weights for p in rows]), rows
        return self.space.mixtures.sample(N_CANDIDATES, self.space.seed + 101), None

    def _cheap(self, history: History) -> tuple[np.ndarray, np.ndarray]:
        runs = [
            r for r in history.completed if r.spec.fidelity == self.space.fidelities.fidelities[0]
        ]
        x = np.array([self.space.weights(r.spec) for r in runs]).reshape(
            -1, self.space.mixtures.dim
        )
        return x, np.array([self.value(r) for r in runs])

    def _ranking(self, history: History) -> tuple[np.ndarray, np.ndarray, list | None]:
        """Candidates, their predictions and pool rows, best prediction first."""
        x, y = self._cheap(history)
        cand, rows = self._candidates()
        pred = self.fit_predict(x, y, cand, self.space.seed)
        order = np.argsort(-pred, kind="stable")
        return cand[order], pred[order], None if rows is None else [rows[i] for i in order]

    def _swarm(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """RegMix's swarm: Dirichlet draws whose concentration varies from sparse to even."""
        mix = self.space.mixtures
        if any(lo > 0 for lo in mix.lower) or any(u < 1 for u in mix.upper):
            return mix.sample(n, int(rng.integers(2**31)))
        scale = np.exp(rng.uniform(math.log(0.1), math.log(5.0), size=n))
        return np.array([rng.dirichlet(np.full(mix.dim, s)) for s in scale])

    def propose(
        self,
        history: History,
        remaining: float,
        pending: Sequence[TrialSpec] = (),
        n: int = 1,
    ) -> list[Proposal]:
        fids = self.space.fidelities
        cheap, target = 0, fids.target_index
        n_cheap = sum(s.fidelity == fids.fidelities[cheap] for s in self._specs(history, pending))
        rng = np.random.default_rng(self.seed_for(history, pending))
        out: list[Proposal] = []
        while len(out) < n and n_cheap + len(out) < self.options.cheap_trials:
            if not history.affordable(remaining, [cheap]):
                break
            fid = fids.fidelities[cheap]
            if self.space.pool is None:
                out.append(Proposal(self._swarm(rng, 1)[0], fid, None, "swarm"))
                continue
            taken = {p.pool_id for p in out}
            rows = [r for r in self.free_rows(history, [cheap], pending) if r.pool_id not in taken]
            if not rows:
                break
            row = rows[int(rng.integers(len(rows)))]
            out.append(Proposal(row.weights, fid, row.pool_id, "swarm"))
        if len(out) == n or not history.affordable(remaining, [target]):
            return out
        if len(self._cheap(history)[1]) < 2:
            return out
        cand, pred, rows = self._ranking(history)
        tried = {
            tuple(np.round(self.space.weights(s), 12))
            for s in self._specs(history, pending)
            if s.fidelity == fids.target
        }
        used = history.used_pool_ids(pending)
        for i, w in enumerate(cand):
            if len(out) == n:
                break
            if rows is not None and rows[i].pool_id in used:
                continue
            if rows is None and tuple(np.round(w, 12)) in tried:
                continue
            pid = None if rows is None else rows[i].pool_id
            out.append(
                Proposal(w, fids.target, pid, "regression", (self.space.sign * pred[i], math.nan))
            )
            tried.add(tuple(np.round(w, 12)))
        return out

    def _specs(self, history: History, pending: Sequence[TrialSpec]) -> list[TrialSpec]:
        return [r.spec for r in history.records] + list(pending)

    def recommend(self, history: History) -> Recommendation | None:
        observed = self.observed_recommendation(history)
        if observed is not None:
            return observed
        if len(self._cheap(history)[1]) < 2:
            return None
        cand, pred, rows = self._ranking(history)
        return self.recommendation_at(
            history, cand[0], float(pred[0]), math.nan, None if rows is None else rows[0].pool_id
        )


def _features(w: np.ndarray) -> np.ndarray:
    """Weights, their square roots and pairwise products: a quadratic-in-mixture model."""
    i, j = np.triu_indices(w.shape[1], k=1)
    return np.concatenate([np.ones((len(w), 1)), w, np.sqrt(w), w[:, i] * w[:, j]], axis=1)


class RegMixLinear(RegMixLightGBM):
    """The same protocol with a ridge regression on weights, square roots and products."""

    name = "regression-linear"

    def fit_predict(self, x: np.ndarray, y: np.ndarray, cand: np.ndarray, seed: int) -> np.ndarray:
        alpha = 1e-3
        f = _features(x)
        mu, sd = f.mean(0), f.std(0) + 1e-12
        mu[0], sd[0] = 0.0, 1.0
        z = (f - mu) / sd
        coef = np.linalg.solve(z.T @ z + alpha * len(y) * np.eye(z.shape[1]), z.T @ y)
        return (_features(cand) - mu) @ (coef / sd)
