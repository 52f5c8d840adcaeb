"""ADMIRE-BayesOpt as published (arXiv 2508.11551; the authors' scripts at
xo28/ADMIRE-BayesOpt), written anew against admire's interface as the reference to beat.

- Model: BoTorch's `SingleTaskMultiFidelityGP` over (raw weights, one fidelity coordinate),
  the coordinate being the fidelity's cost relative to the target (1M : 60M : 1B =
  0.001 : 0.06 : 1 on RegMix, as the authors set it), refitted from scratch every iteration.
- Acquisition: `qMultiFidelityMaxValueEntropy` with `InverseCostWeightedUtility` over an
  affine cost (the coordinate itself, zero fixed cost), projected to the target, max values
  sampled over the observed points (one sample), q = 1, scored on every unused pool row (or
  on a random cloud of mixtures x fidelities in continuous mode).
- Start: one random trial at the lowest fidelity.
- Recommendation: the posterior-mean argmax at the target fidelity.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Annotated

import numpy as np
import torch
from pydantic import Field

from admire.optim.base import History, Optimizer, Options, Proposal, Recommendation
from admire.trial import TrialSpec


class ReferenceOptions(Options):
    n_candidates: Annotated[int, Field(ge=16, le=100_000)] = 1024
    """Mixtures scored per fidelity in continuous mode."""


class AdmireReference(Optimizer):
    """ADMIRE-BayesOpt (see the module docstring)."""

    name = "admire-ref"
    Options = ReferenceOptions
    options: ReferenceOptions

    def _x(self, weights: np.ndarray, fid_coord: np.ndarray) -> torch.Tensor:
        return torch.cat(
            [torch.as_tensor(weights, dtype=torch.float64), torch.as_tensor(fid_coord)[:, None]],
            dim=-1,
        )

    def _coords(self, history: History) -> np.ndarray:
        return np.clip(history.costs / history.costs[self.space.fidelities.target_index], 1e-6, 1)

    def __init__(self, space, options=None) -> None:  # type: ignore[no-untyped-def]
        super().__init__(space, options)
        self._cache: tuple[tuple[int, str], tuple] | None = None  # type: ignore[type-arg]

    def _fit(self, history: History):  # type: ignore[no-untyped-def]
        """The GP refitted from scratch on the completed trials; propose and recommend after
        the same trial share one fit."""
        done = history.completed
        key = (len(done), done[-1].run_id)
        if self._cache is None or self._cache[0] != key:
            self._cache = (key, self._refit(history))
        return self._cache[1]

    def _refit(self, history: History):  # type: ignore[no-untyped-def]
        from botorch.exceptions import OptimizationWarning
        from botorch.fit import fit_gpytorch_mll
        from botorch.models import SingleTaskMultiFidelityGP
        from gpytorch.mlls import ExactMarginalLogLikelihood

        done = history.completed
        fids = self.space.fidelities
        coords = self._coords(history)
        x = self._x(
            np.array([self.space.weights(r.spec) for r in done]),
            np.array([coords[fids.index(r.spec.fidelity)] for r in done]),
        )
        y = torch.tensor([[self.value(r)] for r in done], dtype=torch.float64)
        with torch.random.fork_rng():
            torch.manual_seed(self.space.seed)
            model = SingleTaskMultiFidelityGP(x, y, data_fidelities=[x.shape[-1] - 1])
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", OptimizationWarning)
                fit_gpytorch_mll(ExactMarginalLogLikelihood(model.likelihood, model))
        model.eval()
        return model, x

    def propose(
        self,
        history: History,
        remaining: float,
        pending: Sequence[TrialSpec] = (),
        n: int = 1,
    ) -> list[Proposal]:
        from botorch.acquisition.cost_aware import InverseCostWeightedUtility
        from botorch.acquisition.max_value_entropy_search import qMultiFidelityMaxValueEntropy
        from botorch.acquisition.utils import project_to_target_fidelity
        from botorch.models.cost import AffineFidelityCostModel

        fids = self.space.fidelities
        seed = self.seed_for(history, pending)
        rng = np.random.default_rng(seed)
        if not history.completed:
            cheapest = int(np.argmin(history.costs))
            if not history.affordable(remaining, [cheapest]):
                return []
            return self._random_at(history, cheapest, rng, pending)[:1]
        affordable = history.affordable(remaining)
        if not affordable:
            return []
        coords = self._coords(history)
        if self.space.pool is not None:
            rows = self.free_rows(history, affordable, pending)
            if not rows:
                return []
            cand_w = np.array([p.weights for p in rows])
            cand_f = np.array([fids.index(p.fidelity) for p in rows])
            ids: list[str | None] = [p.pool_id for p in rows]
        else:
            cloud = self.space.mixtures.sample(self.options.n_candidates, seed)
            cand_w = np.repeat(cloud, len(affordable), axis=0)
            cand_f = np.tile(np.array(affordable), len(cloud))
            ids = [None] * len(cand_w)
        model, train_x = self._fit(history)
        d = train_x.shape[-1] - 1
        cost = AffineFidelityCostModel(fidelity_weights={d: 1.0}, fixed_cost=0.0)
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            acqf = qMultiFidelityMaxValueEntropy(
                model,
                candidate_set=train_x,
                num_mv_samples=1,
                cost_aware_utility=InverseCostWeightedUtility(cost_model=cost),
                project=lambda x: project_to_target_fidelity(x, {d: 1.0}, d + 1),
            )
            x = self._x(cand_w, coords[cand_f])
            with torch.no_grad():
                scores = torch.cat(
                    [acqf(x[i : i + 1024].unsqueeze(-2)) for i in range(0, len(x), 1024)]
                )
        best = int(torch.argmax(scores))
        return [Proposal(cand_w[best], fids.fidelities[int(cand_f[best])], ids[best], "ref-mf-mes")]

    def _random_at(
        self, history: History, fid: int, rng: np.random.Generator, pending: Sequence[TrialSpec]
    ) -> list[Proposal]:
        fidelity = self.space.fidelities.fidelities[fid]
        if self.space.pool is None:
            w = self.space.mixtures.sample(1, int(rng.integers(2**31)))[0]
            return [Proposal(w, fidelity, None, "random")]
        rows = self.free_rows(history, [fid], pending)
        if not rows:
            return []
        row = rows[int(rng.integers(len(rows)))]
        return [Proposal(row.weights, fidelity, row.pool_id, "random")]

    def recommend(self, history: History) -> Recommendation | None:
        if not history.completed:
            return None
        if self.space.pool is not None:
            rows = self.target_rows()
            cand = np.array([p.weights for p in rows])
        else:
            rows = None
            observed = np.array([self.space.weights(r.spec) for r in history.completed])
            cand = np.concatenate(
                [
                    self.space.mixtures.sample(self.options.n_candidates, self.space.seed + 17),
                    observed,
                ]
            )
        model, _ = self._fit(history)
        with torch.no_grad():
            post = model.posterior(self._x(cand, np.ones(len(cand))))
            mean = post.mean.squeeze(-1).numpy()
            sd = post.variance.clamp_min(0).sqrt().squeeze(-1).numpy()
        best = int(np.argmax(mean))
        return self.recommendation_at(
            history,
            cand[best],
            float(mean[best]),
            float(sd[best]) if math.isfinite(sd[best]) else math.nan,
            None if rows is None else rows[best].pool_id,
        )
