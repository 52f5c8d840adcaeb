"""admire's multi-fidelity BO, and its single-fidelity variants (the bench's `sf-*` methods).

1. A space-filling initial design at the cheapest fidelity (regenerated from the study seed).
2. The multi-fidelity GP of `surrogate.py` over (mixture, fidelity), conditioned on the
   completed trials, its hyperparameters fitted on a schedule (`model.py`).
3. A cost-aware multi-fidelity knowledge gradient (`acquisition.py`) over a finite, exactly
   feasible candidate set (`candidates.py`); under a trial cap the last trials the budget
   allows are kept for runs of the target's size (`pricing`), placed by the reserve's rules
   (`reserve.py`).
4. The recommendation: the best posterior mean at the target fidelity, unless the posterior
   is not sure enough that it beats the pick standing (`switch_confidence`), at the target
   or, for a pick not yet run there, at a fidelity that has runs (`hold`); the pick's rules
   are in `pick.py`.

The settings, each with why, are `MFBOOptions` (`mfbo_options.py`).

Trials still running are taken into account by conditioning the model on its own posterior
mean at their inputs (the "kriging believer"): their uncertainty collapses, so the acquisition
looks elsewhere, without a refit. The same trick gives q > 1 proposals, one after another.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import torch

from admire.optim.acquisition import mf_kg_scores, mf_mes_scores, p_better, predict
from admire.optim.base import History, Proposal, Recommendation
from admire.optim.candidates import target_candidates
from admire.optim.mfbo_options import MFBOOptions
from admire.optim.model import StudyGP
from admire.optim.pick import same_mixture
from admire.optim.reserve import ReserveRules
from admire.optim.surrogate import encode
from admire.trial import TrialSpec, trial_seed

__all__ = ["AdmireOptimizer", "MFBOOptions", "SingleFidelityCheap", "SingleFidelityTarget"]


class AdmireOptimizer(ReserveRules):
    """Multi-fidelity GP BO over every fidelity of the study (the default optimiser)."""

    name = "admire"
    Options = MFBOOptions
    options: MFBOOptions

    def __init__(self, space, options=None) -> None:  # type: ignore[no-untyped-def]
        super().__init__(space, options)
        self.gp = StudyGP(self.space, self.options, self.value, self.recommend_index())

    # ---- the model -------------------------------------------------------------------------
    def model(self, history: History):  # type: ignore[no-untyped-def]
        """The study's GP of the completed trials (`StudyGP`)."""
        return self.gp.model(history)

    def transfers(self, history: History) -> bool:
        """Whether the cheap fidelities inform the model (`StudyGP.transfers`)."""
        return self.gp.transfers(history)

    def _believe(self, model, pending: Sequence[TrialSpec]):  # type: ignore[no-untyped-def]
        """The model conditioned on its own mean at the pending trials."""
        if not pending:
            return model
        coords = self.space.fidelities.coords()
        w = torch.tensor(np.array([self.space.weights(p) for p in pending]))
        f = torch.tensor(
            np.array([coords[self.space.fidelities.index(p.fidelity)] for p in pending])
        )
        x = encode(w, f)
        with torch.no_grad():
            y = model.posterior(x).mean
            believed = model.condition_on_observations(x, y)
        believed.eval()
        return believed

    # ---- proposals -------------------------------------------------------------------------
    def propose(
        self,
        history: History,
        remaining: float,
        pending: Sequence[TrialSpec] = (),
        n: int = 1,
    ) -> list[Proposal]:
        out: list[Proposal] = []
        pending = list(pending)
        for _ in range(n):
            proposal = self._propose_one(history, remaining, pending)
            if proposal is None:
                break
            out.append(proposal)
            index = history.next_index(pending)
            pending.append(
                TrialSpec(
                    index,
                    self.space.mixtures.as_dict(proposal.weights),
                    proposal.fidelity,
                    0,
                    proposal.pool_id,
                )
            )
        return out

    def _propose_one(
        self, history: History, remaining: float, pending: list[TrialSpec]
    ) -> Proposal | None:
        index = history.next_index(pending)
        affordable = history.affordable(remaining, self.allowed())
        if not affordable:
            return None
        done = history.completed
        if index < self.options.n_initial or len(done) < 2:
            return self._initial(history, index, affordable, pending)
        return self._bayesian(history, index, affordable, pending, remaining)

    def _initial(
        self, history: History, index: int, affordable: list[int], pending: list[TrialSpec]
    ) -> Proposal | None:
        """Space-filling design at the cheapest fidelity, regenerated from the study seed."""
        n_design = max(self.options.n_initial, index + 1)
        point = self.space.mixtures.space_filling(n_design, self.space.seed)[index]
        fid_i = min(affordable, key=lambda i: history.costs[i])
        fid = self.space.fidelities.fidelities[fid_i]
        if self.space.pool is None:
            return Proposal(point, fid, None, "sobol")
        rows = self.free_rows(history, [fid_i], pending)
        if not rows:
            return None
        nearest = min(rows, key=lambda p: float(((p.weights - point) ** 2).sum()))
        return Proposal(nearest.weights, fid, nearest.pool_id, "sobol")

    def _candidates(self, history: History, seed: int) -> tuple[np.ndarray, list | None]:
        return target_candidates(
            self.space,
            history,
            self.model(history),
            self.options.n_candidates,
            seed,
            self.recommend_index(),
        )

    def _bayesian(
        self,
        history: History,
        index: int,
        affordable: list[int],
        pending: list[TrialSpec],
        remaining: float,
    ) -> Proposal | None:
        seed = trial_seed(self.space.seed, index)
        fids = self.space.fidelities
        if not self.transfers(history):
            affordable = [i for i in affordable if i == self.recommend_index()]
            if not affordable:
                return None
        model = self._believe(self.model(history), pending)
        tail = self._challenger(history, pending, affordable, model, remaining)
        if tail is not None:
            return self._proposal(model, *tail, "challenge")
        coords = fids.coords()
        target_w, _ = self._candidates(history, seed)
        ids: list[str | None]
        if self.space.pool is not None:
            rows = self.free_rows(history, affordable, pending)
            if not rows:
                return None
            cand_w = np.array([p.weights for p in rows])
            cand_f = np.array([fids.index(p.fidelity) for p in rows])
            ids = [p.pool_id for p in rows]
        else:
            cand_w = np.repeat(target_w, len(affordable), axis=0)
            cand_f = np.tile(np.array(affordable), len(target_w))
            # Observed mixtures are candidates for the recommendation, not for another run at
            # the same fidelity.
            specs = [r.spec for r in history.records] + pending
            seen = {(fids.index(s.fidelity), *s.weights.values()) for s in specs}
            fresh = [
                (int(f), *self.space.mixtures.as_dict(w).values()) not in seen
                for w, f in zip(cand_w, cand_f, strict=True)
            ]
            cand_w, cand_f = cand_w[fresh], cand_f[fresh]
            ids = [None] * len(cand_w)
            if len(cand_w) == 0:
                return None
        costs = self._prices(history, remaining, len(pending))
        scorer, how = model, self.options.acquisition
        if self._in_reserve(history, remaining, len(pending)):
            keep = np.array([self._checks(fids.fidelities[int(i)]) for i in cand_f])
            if keep.any():
                cand_w, cand_f = cand_w[keep], cand_f[keep]
                ids = [i for i, k in zip(ids, keep, strict=True) if k]
                alone = self._hedge(history, pending)
                if alone is not None:
                    mine = [p for p in pending if self._checks(p.fidelity)]
                    scorer, how = self._believe(alone, mine), "hedge"
        if self.options.acquisition == "mf-kg":
            scores = mf_kg_scores(
                scorer, cand_w, cand_f, coords, costs, self.recommend_index(), target_w
            )
        else:
            scores = mf_mes_scores(
                scorer, cand_w, cand_f, coords, costs, self.recommend_index(), target_w, seed
            )
        best = int(np.argmax(scores))
        check = self._check_pick(history, pending, int(cand_f[best]), affordable)
        if check is not None:
            return self._proposal(model, *check, "check-pick")
        return self._proposal(model, cand_w[best], int(cand_f[best]), ids[best], how)

    def _proposal(  # type: ignore[no-untyped-def]
        self, model, weights: np.ndarray, fid: int, pool_id: str | None, how: str
    ) -> Proposal:
        """The proposal to run `weights` at fidelity index `fid`, with the model's prediction."""
        pred = predict(model, weights[None, :], self.space.fidelities.coords()[fid])
        predicted = (self.space.sign * float(pred.mean[0]), float(pred.sd[0]))
        return Proposal(weights, self.space.fidelities.fidelities[fid], pool_id, how, predicted)

    # ---- recommendation --------------------------------------------------------------------
    def recommend(self, history: History) -> Recommendation | None:
        if not history.completed:
            return None
        seed = trial_seed(self.space.seed, len(history.records)) + 17
        target_w, rows = self._candidates(history, seed)
        coords = self.space.fidelities.coords()[self.recommend_index()]
        model = self.model(history)
        standing = None
        pick, evidence = self._held_pick(history)
        if pick is not None:
            same = same_mixture(target_w, pick)
            if len(same) == 0 and rows is None:  # a continuous study's fresh candidate cloud
                target_w = np.vstack([target_w, pick])
                same = np.array([len(target_w) - 1])
            standing = int(same[0]) if len(same) else None
        pred = predict(model, target_w, coords)
        best = int(np.argmax(pred.mean - self.options.caution * pred.sd))
        if standing is not None and best != standing and self.options.switch_confidence > 0.5:
            at = [coords, *evidence]
            sure = max(p_better(model, target_w[best], [target_w[standing]], c)[0] for c in at)
            if sure < self.options.switch_confidence:
                best = standing
        best = self._best_run(history, target_w, best, standing)
        # A pick made at a cheaper fidelity (sf-cheap) predicts nothing about the target's loss.
        at_target = self.recommend_index() == self.space.fidelities.target_index
        mean, sd = (float(pred.mean[best]), float(pred.sd[best])) if at_target else (math.nan,) * 2
        rec = self.recommendation_at(
            history, target_w[best], mean, sd, None if rows is None else rows[best].pool_id
        )
        return replace(rec, **self._odds(model, history, target_w[best], coords))

    def predict(
        self, history: History, weights: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray] | None:
        if not history.completed:
            return None
        coords = self.space.fidelities.coords()[self.recommend_index()]
        pred = predict(self.model(history), np.atleast_2d(weights), coords)
        return self.space.sign * pred.mean, pred.sd


class SingleFidelityTarget(AdmireOptimizer):
    """The same GP BO at the target fidelity only (the bench's `sf-target`)."""

    name = "sf-target"

    def allowed(self) -> list[int]:
        return [self.space.fidelities.target_index]


class SingleFidelityCheap(AdmireOptimizer):
    """The same GP BO at the cheapest fidelity only; its best predicted mixture among the
    target candidates is recommended for the target (transferred, the bench's `sf-cheap`)."""

    name = "sf-cheap"

    def allowed(self) -> list[int]:
        return [0]

    def recommend_index(self) -> int:
        return 0
