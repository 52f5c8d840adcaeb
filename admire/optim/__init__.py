"""The optimisers, behind one interface (`base.Optimizer`), registered by `optimizer.kind`.

admire             multi-fidelity GP BO (mfbo.py), the default
sf-target          the same GP BO at the target fidelity only
sf-cheap           the same GP BO at the cheapest fidelity, its pick transferred
admire-ref         ADMIRE-BayesOpt as published (reference.py)
regression         RegMix: cheap random runs, LightGBM regression (regression.py)
regression-linear  the same with a ridge regression
random             random target runs (random.py)
ax                 Ax's Client with its default generation strategy (ax.py)
"""

from __future__ import annotations

from importlib import import_module

from admire.optim.base import (
    History,
    Optimizer,
    Options,
    Proposal,
    Recommendation,
    SearchSpace,
    quiet_numerics,
)

# Imported on demand: Ax and LightGBM take seconds to import and most studies use neither.
OPTIMIZERS: dict[str, str] = {
    "admire": "admire.optim.mfbo:AdmireOptimizer",
    "sf-target": "admire.optim.mfbo:SingleFidelityTarget",
    "sf-cheap": "admire.optim.mfbo:SingleFidelityCheap",
    "admire-ref": "admire.optim.reference:AdmireReference",
    "regression": "admire.optim.regression:RegMixLightGBM",
    "regression-linear": "admire.optim.regression:RegMixLinear",
    "random": "admire.optim.random:RandomSearch",
    "ax": "admire.optim.ax:AxClient",
}


def optimizer_class(kind: str) -> type[Optimizer]:
    """The Optimizer registered as `kind` (ValueError naming the known kinds otherwise)."""
    if kind not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer kind {kind!r}; known: {', '.join(OPTIMIZERS)}")
    module, _, cls = OPTIMIZERS[kind].partition(":")
    return getattr(import_module(module), cls)


def make_optimizer(kind: str, space: SearchSpace, options: dict) -> Optimizer:
    """An optimiser of `kind` over `space` with its options validated."""
    cls = optimizer_class(kind)
    return cls(space, cls.Options.model_validate(options))


__all__ = [
    "OPTIMIZERS",
    "History",
    "Optimizer",
    "Options",
    "Proposal",
    "Recommendation",
    "SearchSpace",
    "make_optimizer",
    "optimizer_class",
    "quiet_numerics",
]
