"""admire's multi-fidelity BO, and its single-fidelity variants (the bench's `sf-*` methods).

1. A space-filling initial design at the cheapest fidelity (regenerated from the study seed).
2. The multi-fidelity GP of `surrogate.py` over (mixture, fidelity), conditioned on the
   completed trials, its hyperparameters fitted on a schedule (`model.py`).
3. A cost-aware multi-fidelity knowledge gradient (`acquisition.py`) over a finite, exactly
   feasible candidate set (`candidates.py`); under a trial cap the last trials the budget
   allows are kept for target runs (`pricing`).
4. The recommendation: the best posterior mean at the target fidelity, unless the posterior
   is not sure enough that it beats the pick standing (`switch_confidence`), at the target
   or, for a pick not yet run there, at a fidelity that has runs (`hold`).

Trials still running are taken into account by conditioning the model on its own posterior
mean at their inputs (the "kriging believer"): their uncertainty collapses, so the acquisition
looks elsewhere, without a refit. The same trick gives q > 1 proposals, one after another.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace
from typing import Annotated, Literal

import numpy as np
import torch
from pydantic import Field, model_validator

from admire.config import NO_BOOL, Fidelity
from admire.optim.acquisition import mf_kg_scores, mf_mes_scores, p_better, predict
from admire.optim.base import History, Optimizer, Options, Proposal, Recommendation
from admire.optim.candidates import target_candidates
from admire.optim.model import StudyGP
from admire.optim.surrogate import FIT_MAXITER, encode
from admire.trial import TrialSpec, trial_seed

HEDGE_AFTER = 3
"""Runs of the target's size before `hedge` places any: a GP of fewer has almost nothing to
say about where the next should go."""
HEDGE_STALL = 1
"""Runs at the target in a row, each short of the best before it, that make a study stalled
(`hedge: stall`)."""


class MFBOOptions(Options):
    """Settings of admire's multi-fidelity BO; the defaults suit most studies."""

    n_initial: Annotated[int, NO_BOOL, Field(ge=2)] = 10
    acquisition: Literal["mf-kg", "mf-mes"] = "mf-kg"
    """`mf-kg`: the knowledge gradient about the best target mixture per unit price;
    `mf-mes`: max-value entropy search per unit cost (an ablation: it also values the
    target's unknown loss level, which only target runs tell, see `acquisition.py`)."""
    n_candidates: Annotated[int, NO_BOOL, Field(ge=16, le=100_000)] = 1024
    fixed_cost: Annotated[float, NO_BOOL, Field(ge=0.0)] = 0.0
    """Overhead charged to every trial in the acquisition's cost (target-run units)."""
    fidelity_scaling: bool = True
    """Learn the spread of mixture effects, and of the noise, per fidelity: a(f) in
    `surrogate.py` (off: one amplitude and one noise level for every fidelity)."""
    informative_fidelity_prior: bool = True
    """Expect a cheap fidelity to rank mixtures much like the target until the data say
    otherwise (off: BoTorch's dimension-scaled prior, under which a study with runs at one
    fidelity only takes every other fidelity to be unrelated; an ablation)."""
    discrepancy: bool = False
    """Add a fidelity-local term delta(w) with its own mixture lengthscales to the GP (see
    `surrogate.py`): the target may then have a landscape of its own, not only a scaled copy
    of the cheap one (an ablation, off by default)."""
    noise_floor: bool = False
    """Add to the noise a variance that does not shrink with scale (`ScaledNoise` in
    `surrogate.py`): where repeated runs of the target vary as much as cheap ones do (an
    evaluation set's sampling noise, a table measured with one error), a noise scaled by
    a(f)^2 alone is too small at the target, and two target runs within that noise of each
    other look different enough to move a measured pick (an ablation, off by default)."""
    mixing_law: bool = False
    """A prior mean linear in the weights and the fidelity coordinates (`MixingLawMean` in
    `surrogate.py`), fitted with the GP, in place of a constant (an ablation, off)."""
    refit_growth: Annotated[float, NO_BOOL, Field(ge=0.0)] = 0.15
    """Fit the GP's hyperparameters anew (from their priors; see `warm_start`) once the
    trials at some fidelity have grown by this fraction since the last fit, or a fidelity
    has its first trial; in between, the GP is conditioned on every trial with the last
    fit's hyperparameters. A fit is most of a proposal's time, and one more trial among many
    barely moves it. The schedule depends on the history alone, so a resumed study decides
    as the one it resumes (0: fit on every trial)."""
    fit_maxiter: Annotated[int, NO_BOOL, Field(ge=1)] = FIT_MAXITER
    """At most this many L-BFGS steps per fit of the hyperparameters: a fit stopped short
    of its optimum moves the posterior, and with it the pick, from one fit to the next
    (an ablation; more steps cost proportionally more time)."""
    warm_start: bool = False
    """Start each fit of the hyperparameters from the schedule's previous fit (the same study
    a few trials earlier) instead of from their priors' modes; a fit at which some fidelity
    has its first trial still starts from the priors. Up to a third less fitting time, but on the
    bench the pick settled later (`pile-pool`, 20 seeds: stays from 0.66 units, against 0.026
    from the priors), so it is off. Each fit in the chain is a function of the history alone,
    so a resumed study refits the chain once and decides as the one it resumes."""
    validate_transfer: bool = False
    """Once the target has been run a few times (`TRANSFER_MIN_RUNS`), check that the cheap
    fidelities help predict it: the multi-fidelity GP's leave-one-out predictions of the
    target runs against those of a GP of the target runs alone. Where the target-only GP
    predicts them better, the cheap runs mislead: it makes the decisions, and only target
    runs are bought (an ablation, off by default)."""
    caution: Annotated[float, NO_BOOL, Field(ge=0.0)] = 0.0
    """Recommend the best `mean - caution * sd` at the target rather than the best mean:
    above 0, a mixture the model is unsure of must be predicted better by that many sds to
    displace one it knows (0: the posterior-mean argmax)."""
    switch_confidence: Annotated[float, NO_BOOL, Field(ge=0.5, lt=1.0)] = 0.9
    """Keep the standing pick unless the posterior says, with at least this probability, that
    the new best mixture beats it at the target: two mixtures the runs cannot tell apart
    would otherwise trade places on every trial (0.5: always the best posterior mean). The
    standing pick is the study's last reported one (`History.pick`, kept in its store);
    which picks are held, and at which fidelities the challenger's win is read: `hold`."""
    hold: Literal["evidence", "measured", "ran", "any"] = "evidence"
    """Which standing picks `switch_confidence` holds, and where a challenger's win counts.
    `evidence` (default): a pick run at the target, judged there, and, while nothing of the
    target's model size has run, any pick, judged at the target or at any fidelity that has
    runs. Until then the target's posterior between two mixtures is an extrapolation
    diluted by how little the model trusts the cheaper fidelities, so near-tied mixtures
    trade places as each cheap run moves the fit; read where the runs were made, the same
    evidence says whether the challenger is really better. Once runs of the target's size
    inform it, an unmeasured pick follows the best posterior mean again, as under
    `measured`: only a pick run at the target is held (from the first run where the study
    has one model size, as `sf-target` and `sf-cheap` do). `any`: every pick, judged at the
    target only. `ran`: a pick run at the target, or at a cheaper fidelity and then judged
    at the target or the dearest fidelity it ran at."""
    keep_best_run: bool = True
    """In a pool, where the pick would be a row run at the target and another target row
    is measured better, recommend that one: two trained target models are compared by their
    measured objective, as a user holding both would, not by a posterior that a GP misfit
    at the target (its noise learned larger than it is) leaves unsure of which is better,
    so that `switch_confidence` held the worse (off: as the posterior and the hold say). In a
    continuous space the posterior still decides: there it may rightly prefer a mixture
    near the measured ones, and holding the best measured one against it cost final regret
    on `synth-mislead` (worse in 8 of 20 seeds, better in 2)."""
    challenge: bool = True
    """In a pool, end the reserve (`pricing`) with full target runs of the rows that could
    still beat the pick: once its trials left are no more than those rows (a row with no
    target run that the posterior gives at least 1 - `switch_confidence` of beating the
    pick), each trial runs the pick at the target if it has no run there, else the best
    such row. The reserve's earlier runs of the target's size are cheaper (stopped early)
    and find the pick, but two rows whose early checkpoints the model cannot tell apart
    keep the pick held (`switch_confidence`) on the one measured, or moving between them; a
    full run of each measures which is better (`keep_best_run`), as a user would settle it,
    with budget the early stops left unspent (off: the acquisition chooses every run)."""
    use_curves: bool = True
    """Use each trial's earlier evaluations (its curve) as observations at their tokens."""
    check_pick: bool = True
    """When the acquisition buys the study's first target run (`reserve_at`): run the standing
    pick, predicted from cheaper runs, instead. A cheap pick the target disagrees with is then
    found out at once (only the first: a continuous study's pick moves with almost every
    trial, and checking each one spent the target runs on checks)."""
    pricing: Literal["reserve", "trials", "cost"] = "reserve"
    """What a trial costs the acquisition. `cost`: its cost alone, so that under a trial cap a
    0.001-unit run looks a thousand times cheaper than a target run and the study may never
    check its cheap picks at the target. `trials`: the scarcer of the two budgets it spends,
    its cost over the cost left or one trial over the trials left (cheap and mid-fidelity
    runs then cost alike, and the mid ones, nearer the target, win and move the pick).
    `reserve` (default): by cost while more trials are left than the target runs the cost
    left allows; the trials after that are target runs (the reserve), which check at the
    target what the cheap runs found, as far as the budget allows."""
    hedge: Literal["stall", "alternate", "off"] = "stall"
    """Which GP places the reserve's runs of the target's size from the fourth on. The
    study's GP places its target runs where the cheap runs point; where the cheap runs are
    blind to where the target is good, those runs all land where the target is no better,
    and the GP, explaining them as a scaled copy of the cheap landscape, is sure the rest of
    the simplex is no better either. A GP of the target size's runs alone (curves included)
    knows only what those runs say, so it explores where they have not been, as `sf-target`
    does; the recommendation still comes from the study's GP, with every run. `stall`
    (default): that GP places them while the study is stalled, its last run at the target
    (`HEDGE_STALL` runs) short of the best before it; the study's GP places the run after
    one that beat the best, and so keeps its turns while its runs keep finding better
    mixtures. `alternate` (an ablation): that GP places every other run, and takes runs the
    study's GP needed where it was right. `off`: the study's GP places them all."""
    reserve_at: Literal["target-size", "target"] = "target-size"
    """What the reserve's trials may run, and which run checks the pick (`check_pick`).
    `target-size` (default): runs of the target's model size at any of its token budgets,
    chosen by the acquisition per unit cost. A target-size run stopped early is much
    cheaper, and where its checkpoints rank mixtures as the full run does (which every full
    run's curve tells the model) it checks the cheap runs' pick for a fraction of the price.
    `target`: the target fidelity only. The two are the same where the target size has one
    token budget."""

    @model_validator(mode="after")
    def _floor_needs_scaling(self) -> MFBOOptions:
        if self.noise_floor and not self.fidelity_scaling:
            raise ValueError(
                "noise_floor adds to the fidelity-scaled noise: it needs fidelity_scaling: true"
            )
        return self


def _same(weights: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Indices of the rows of `weights` that are the mixture `w`."""
    return np.flatnonzero(np.abs(weights - w).max(axis=1) < 1e-9)


class AdmireOptimizer(Optimizer):
    """Multi-fidelity GP BO over every fidelity of the study (the default optimiser)."""

    name = "admire"
    Options = MFBOOptions
    options: MFBOOptions

    def __init__(self, space, options=None) -> None:  # type: ignore[no-untyped-def]
        super().__init__(space, options)
        self.gp = StudyGP(self.space, self.options, self.value, self.recommend_index())

    # ---- which fidelities this variant uses ------------------------------------------------
    def allowed(self) -> list[int]:
        """Fidelity indices this optimiser may run."""
        return list(range(len(self.space.fidelities.fidelities)))

    def recommend_index(self) -> int:
        """The fidelity whose predictions pick the recommendation."""
        return self.space.fidelities.target_index

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
            if np.abs(row.weights - pick).max() < 1e-9:
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
        reserve's trials left are no more than the rows the hold cannot rule out: the pick's
        row at the recommendation's fidelity if it has no run there, else the rival the
        posterior ranks best (weights, fidelity index, pool id); else None. A rival is a row
        with no run there that the posterior (believing the pending trials) gives at least
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
        same = _same(weights, pick)
        mine = rows[int(same[0])] if len(same) else None
        open_rows = [i for i, r in enumerate(rows) if r.pool_id in free and r is not mine]
        coords = self.space.fidelities.coords()[at]
        beats = p_better(model, pick, [weights[i] for i in open_rows], coords) if open_rows else []
        rivals = [
            i for i, b in zip(open_rows, beats, strict=True) if b <= self.options.switch_confidence
        ]
        unmeasured = mine is not None and mine.pool_id in free
        left = self._trials_left(history, len(pending)) or 0
        if left > len(rivals) + unmeasured:
            return None
        if mine is not None and unmeasured:
            return mine.weights, at, mine.pool_id
        if not rivals:
            return None
        top = rows[rivals[int(np.argmax(predict(model, weights[rivals], coords).mean))]]
        return top.weights, at, top.pool_id

    def _checks(self, fid: Fidelity) -> bool:
        """Whether a run at `fid` checks a pick at the recommendation's fidelity, and so may
        run in the reserve: that fidelity itself, or (`reserve_at: target-size`) any token
        budget of its model size, a run of the same model stopped earlier."""
        at = self.space.fidelities.fidelities[self.recommend_index()]
        if self.options.reserve_at == "target":
            return fid == at
        return fid.model_size == at.model_size

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
            same = _same(target_w, pick)
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
        best = self._best_run(history, target_w, best)
        # A pick made at a cheaper fidelity (sf-cheap) predicts nothing about the target's loss.
        at_target = self.recommend_index() == self.space.fidelities.target_index
        mean, sd = (float(pred.mean[best]), float(pred.sd[best])) if at_target else (math.nan,) * 2
        rec = self.recommendation_at(
            history, target_w[best], mean, sd, None if rows is None else rows[best].pool_id
        )
        return replace(rec, **self._odds(model, history, target_w[best], coords))

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
            if np.abs(self.space.weights(r.spec) - pick).max() < 1e-9
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

    def _best_run(self, history: History, target_w: np.ndarray, best: int) -> int:
        """With `keep_best_run` in a pool, where the pick `target_w[best]` has been run at
        the target and another target row is measured better, that row's index in
        `target_w`; else `best`. A pick read at a cheaper fidelity (`sf-cheap`) is kept:
        runs there do not measure the target."""
        target = self.space.fidelities.target_index
        if (
            not self.options.keep_best_run
            or self.space.pool is None
            or self.recommend_index() != target
        ):
            return best
        at = self.space.fidelities.fidelities[target]
        runs = [r for r in history.completed if r.spec.fidelity == at]
        mine = [
            self.value(r)
            for r in runs
            if np.abs(self.space.weights(r.spec) - target_w[best]).max() < 1e-9
        ]
        if not mine:
            return best
        top = max(runs, key=self.value)
        if self.value(top) <= max(mine):
            return best
        same = _same(target_w, self.space.weights(top.spec))
        return int(same[0]) if len(same) else best

    def predict(
        self, history: History, weights: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray] | None:
        if not history.completed:
            return None
        coords = self.space.fidelities.coords()[self.recommend_index()]
        pred = predict(self.model(history), np.atleast_2d(weights), coords)
        return self.space.sign * pred.mean, pred.sd

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
