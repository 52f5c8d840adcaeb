"""The benchmarked methods: each is an `Optimizer` kind run by the same `Study` loop.

A method is a name, the optimiser kind it runs and the options it gets on a problem. Nothing
else differs between methods: the loop, the budget ledger, the store and the runner (which
answers only what is paid for) are the ones users run.
"""

from __future__ import annotations

from collections.abc import Callable

from admire.bench.problems import Problem
from admire.config import OptimizerConfig


def _base(problem: Problem) -> dict:
    return dict(problem.config.optimizer.options)


def _sf_target(problem: Problem) -> dict:
    opts = _base(problem)
    budget = problem.config.budget.max_cost or 40.0
    # At the target each trial costs a whole unit: a 10-point design would eat half a budget.
    opts["n_initial"] = max(2, min(opts.get("n_initial", 10), int(budget) // 4))
    return opts


def _regression(problem: Problem) -> dict:
    cap = problem.config.budget.max_trials or 64
    return {"cheap_trials": max(8, cap // 2)}


def _reference(problem: Problem) -> dict:
    n = problem.config.optimizer.options.get("n_candidates")
    return {} if n is None else {"n_candidates": n}


V0 = {
    "acquisition": "mf-mes",
    "fidelity_scaling": False,
    "informative_fidelity_prior": False,
    "use_curves": False,
    "pricing": "cost",
}
"""admire as it was before the knowledge gradient (0.2): the ablation of everything since."""

METHODS: dict[str, tuple[str, Callable[[Problem], dict]]] = {
    "random": ("random", lambda p: {}),
    "regression": ("regression", _regression),
    "regression-linear": ("regression-linear", _regression),
    "sf-target": ("sf-target", _sf_target),
    "sf-cheap": ("sf-cheap", _base),
    "ax": ("ax", lambda p: {}),
    "admire-ref": ("admire-ref", _reference),
    "admire": ("admire", _base),
    # Ablations of admire: each switches one of its parts on or off.
    "admire-v0": ("admire", lambda p: {**_base(p), **V0}),
    "admire-botorchprior": (
        "admire",
        lambda p: {**_base(p), "informative_fidelity_prior": False},
    ),
    "admire-mes": ("admire", lambda p: {**_base(p), "acquisition": "mf-mes"}),
    "admire-refitall": ("admire", lambda p: {**_base(p), "refit_growth": 0.0}),
    "admire-cautious": ("admire", lambda p: {**_base(p), "caution": 1.0}),
    "admire-argmax": ("admire", lambda p: {**_base(p), "switch_confidence": 0.5}),
    "admire-unscaled": ("admire", lambda p: {**_base(p), "fidelity_scaling": False}),
    "admire-costonly": ("admire", lambda p: {**_base(p), "pricing": "cost"}),
    "admire-trialaware": ("admire", lambda p: {**_base(p), "pricing": "trials"}),
    "admire-nocheck": ("admire", lambda p: {**_base(p), "check_pick": False}),
    "admire-nochallenge": ("admire", lambda p: {**_base(p), "challenge": False}),
    "admire-nocurves": ("admire", lambda p: {**_base(p), "use_curves": False}),
    "admire-delta": ("admire", lambda p: {**_base(p), "discrepancy": True}),
    "admire-validated": ("admire", lambda p: {**_base(p), "validate_transfer": True}),
    "admire-mixlaw": ("admire", lambda p: {**_base(p), "mixing_law": True}),
    "admire-holdpick": ("admire", lambda p: {**_base(p), "keep_best_run": False}),
    "admire-holdmeasured": ("admire", lambda p: {**_base(p), "hold": "measured"}),
    "admire-holdany": ("admire", lambda p: {**_base(p), "hold": "any"}),
    "admire-holdcheap": ("admire", lambda p: {**_base(p), "hold": "ran"}),
    "admire-longfit": ("admire", lambda p: {**_base(p), "fit_maxiter": 1000}),
    "admire-floor": ("admire", lambda p: {**_base(p), "noise_floor": True}),
    "admire-shortdesign": ("admire", lambda p: {**_base(p), "n_initial": 2}),
    "admire-warmfit": ("admire", lambda p: {**_base(p), "fit_from": "previous"}),
    "admire-betterfit": ("admire", lambda p: {**_base(p), "fit_from": "better"}),
    "admire-norescue": ("admire", lambda p: {**_base(p), "rescue_fits": False}),
    "admire-hedge": ("admire", lambda p: {**_base(p), "hedge": "alternate"}),
    "admire-nohedge": ("admire", lambda p: {**_base(p), "hedge": "off"}),
    "admire-reservetarget": ("admire", lambda p: {**_base(p), "reserve_at": "target"}),
}


def method_optimizer(method: str, problem: Problem) -> OptimizerConfig:
    """The `optimizer:` section a method runs with on a problem."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; known: {', '.join(METHODS)}")
    kind, options = METHODS[method]
    return OptimizerConfig(kind=kind, **options(problem))
