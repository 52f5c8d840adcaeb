"""The study's GP: the multi-fidelity surrogate of `surrogate.py` conditioned on a study's
completed trials, its hyperparameters fitted on a schedule (`refit_growth`), cached per
history, so that an optimiser's proposals and recommendation share one model."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import torch

from admire.config import Fidelity
from admire.optim.base import History, SearchSpace
from admire.optim.surrogate import (
    encode,
    fit_loss,
    fit_surrogate,
    hyperparameters,
    loo_log_density,
)
from admire.trial import TrialRecord

if TYPE_CHECKING:
    from admire.optim.mfbo_options import MFBOOptions

TRANSFER_MIN_RUNS = 4
"""Target observations before `validate_transfer` compares models: with fewer, a GP of the
target runs alone predicts each of them from almost nothing."""

FAILED_FIT_MARGIN = 0.5
"""Nats per observation by which a fit from the priors may explain the trials worse than
the previous refit point's fit from the priors does before `rescue_fits` takes it for a fit
stopped in a poor basin. Between consecutive fits that converged the gap stays within about
0.1 either way; a fit stuck in a flat basin lost by 2.6 (`synth-steps`)."""


class StudyGP:
    """The GP of a study's completed trials, for an optimiser with `MFBOOptions` whose
    predictions are read at fidelity index `at`; `value` gives a record's objective on the
    maximised scale."""

    def __init__(
        self,
        space: SearchSpace,
        options: MFBOOptions,
        value: Callable[[TrialRecord], float],
        at: int,
    ) -> None:
        self.space, self.options, self.value, self.at = space, options, value, at
        self._model_cache: tuple[tuple[int, str], object, bool] | None = None
        # Per refit point: the next point's start and the fit kept there.
        self._fits: dict[tuple[int, str], tuple[dict, dict]] = {}
        self._size_cache: tuple[tuple[int, str], object] | None = None

    def model(self, history: History):  # type: ignore[no-untyped-def]
        """The GP conditioned on the completed trials (cached per history), with the
        hyperparameters fitted at the last point of the refit schedule; with
        `validate_transfer`, the GP of the target runs alone where the cheap runs mislead."""
        done = history.completed
        key = _key(done)
        if self._model_cache is None or self._model_cache[0] != key:
            model = self._multi_fidelity(done)
            alone = self._target_alone(done, model) if self.options.validate_transfer else None
            self._model_cache = (key, model if alone is None else alone, alone is None)
        return self._model_cache[1]

    def transfers(self, history: History) -> bool:
        """Whether the cheap fidelities inform the model (false once `validate_transfer` has
        found that the target runs alone predict the target better)."""
        self.model(history)
        assert self._model_cache is not None
        return self._model_cache[2]

    def size_alone(self, history: History):  # type: ignore[no-untyped-def]
        """A GP of the runs of the model size predictions are read at (`at`) alone, their
        curves included, fitted afresh (cached per history); None where that size has no
        run yet, or every run is of it (the study's GP is that model already)."""
        done = history.completed
        key = _key(done)
        if self._size_cache is None or self._size_cache[0] != key:
            w, f, y = self._observations(done)
            size = torch.tensor(self.space.fidelities.coords()[self.at][0])
            keep = (f[:, 0] - size).abs() < 1e-9
            alone = None
            if bool(keep.any()) and not bool(keep.all()):
                alone = self._fit_alone(w[keep], f[keep], y[keep])
            self._size_cache = (key, alone)
        return self._size_cache[1]

    def _target_alone(self, done: list, model):  # type: ignore[no-untyped-def,type-arg]
        """A GP of the target observations alone, if it predicts them (leave-one-out) better
        than the multi-fidelity `model` does; else None."""
        # `model` was fitted to these same observations, in this order.
        w, f, y = self._observations(done)
        target = torch.tensor(self.space.fidelities.coords()[self.at])
        keep = (f - target).abs().amax(dim=-1) < 1e-9
        if int(keep.sum()) < TRANSFER_MIN_RUNS or bool(keep.all()):
            return None
        alone = self._fit_alone(w[keep], f[keep], y[keep])
        everything = torch.ones(len(alone.train_targets), dtype=torch.bool)
        if loo_log_density(alone, everything) > loo_log_density(model, keep):
            return alone
        return None

    def _fit_alone(self, w: torch.Tensor, f: torch.Tensor, y: torch.Tensor):  # type: ignore[no-untyped-def]
        """A GP of some of the observations alone, fitted afresh from the priors."""
        with torch.random.fork_rng():
            torch.manual_seed(self.space.seed)
            return fit_surrogate(
                encode(w, f),
                y,
                scaled=self.options.fidelity_scaling,
                informative=self.options.informative_fidelity_prior,
                maxiter=self.options.fit_maxiter,
            )

    def _multi_fidelity(self, done: list):  # type: ignore[no-untyped-def,type-arg]
        points = self.refit_points(done)
        if self.options.fit_from == "priors":
            # A fit from the priors depends on its own trials alone; a rescue looks one back.
            points = points[-2:] if self.options.rescue_fits else points[-1:]
        keys = [_key(done[:p]) for p in points]
        first = 0  # the fits already made, as a leading run of the chain
        while first < len(keys) and keys[first] in self._fits:
            first += 1
        start, kept = self._fits[keys[first - 1]] if first else (None, None)
        model = None
        for p, key in zip(points[first:], keys[first:], strict=True):
            model, origin = self._chained_fit(done[:p], start)
            kept = hyperparameters(model)
            start = kept if origin is model else hyperparameters(origin)
            self._fits[key] = (start, kept)
        # Only the schedule's current chain can be started from again.
        self._fits = {key: self._fits[key] for key in keys if key in self._fits}
        if model is not None and points[-1] == len(done):
            return model
        return self._fit(done, fixed=kept)

    def _chained_fit(self, done: list, start: dict | None):  # type: ignore[no-untyped-def,type-arg]
        """The fit at a point of the refit schedule (`fit_from`, `rescue_fits`), given the
        previous point's `start`: the fit kept there, or with `fit_from: priors` its fit from
        the priors. Returns the fit and the one the next point starts from."""
        # A fidelity's first trial is always a refit point, and moves its hyperparameters
        # far: from the previous fit alone, that fit starts afresh.
        newcomer = all(r.spec.fidelity != done[-1].spec.fidelity for r in done[:-1])
        fit_from = self.options.fit_from
        if start is not None and fit_from == "previous" and not newcomer:
            model = self._fit(done, init=start)
            return model, model
        fresh = self._fit(done)
        if start is None or fit_from == "previous":
            return fresh, fresh
        if fit_from == "priors":
            stale = fit_loss(self._fit(done, fixed=start))
            if fit_loss(fresh) <= stale + FAILED_FIT_MARGIN:
                return fresh, fresh
        model = min(fresh, self._fit(done, init=start), key=fit_loss)
        return model, fresh if fit_from == "priors" else model

    def _fit(self, done: list, fixed: dict | None = None, init: dict | None = None):  # type: ignore[no-untyped-def,type-arg]
        w, f, y = self._observations(done)
        with torch.random.fork_rng():
            torch.manual_seed(self.space.seed)
            return fit_surrogate(
                encode(w, f),
                y,
                scaled=self.options.fidelity_scaling,
                informative=self.options.informative_fidelity_prior,
                discrepancy=self.options.discrepancy,
                mixing_law=self.options.mixing_law,
                noise_floor=self.options.noise_floor,
                maxiter=self.options.fit_maxiter,
                fixed=fixed,
                init=init,
            )

    def refit_points(self, done: list) -> list[int]:  # type: ignore[type-arg]
        """The prefixes of the completed trials at which the hyperparameters are fitted: each
        one at which some fidelity's trial count reached (1 + refit_growth) times its count at
        the fit before (a first trial at a fidelity always counts). The last is the fit in
        use."""
        growth = self.options.refit_growth
        counts: dict[Fidelity, int] = {}
        at_fit: dict[Fidelity, int] = {}
        points = []
        for m, r in enumerate(done, start=1):
            fid = r.spec.fidelity
            counts[fid] = counts.get(fid, 0) + 1
            if growth == 0 or counts[fid] >= max(1, math.ceil((1 + growth) * at_fit.get(fid, 0))):
                points.append(m)
                at_fit = dict(counts)
        return points

    def _observations(self, done: list) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:  # type: ignore[type-arg]
        """Training data: every completed trial at its fidelity and, with `use_curves`, its
        curve's earlier evaluations at their token counts (free observations of the run)."""
        fids = self.space.fidelities
        points: list[tuple[np.ndarray, Fidelity, float]] = []
        for r in done:
            w = self.space.weights(r.spec)
            points.append((w, r.spec.fidelity, self.value(r)))
            if self.options.use_curves:
                size = r.spec.fidelity.model_size
                points += [
                    (w, Fidelity(model_size=size, tokens=float(t)), self.space.sign * v)
                    for t, v in r.objective_curve
                    if t < r.spec.fidelity.tokens
                ]
        w = torch.tensor(np.array([p[0] for p in points]))
        f = torch.tensor(fids.coords_at([p[1] for p in points]))
        y = torch.tensor([[p[2]] for p in points], dtype=torch.float64)
        return w, f, y


def _key(done: list) -> tuple[int, str]:  # type: ignore[type-arg]
    return (len(done), done[-1].run_id if done else "")
