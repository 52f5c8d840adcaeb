"""Finite, exactly feasible candidate sets over which acquisitions and recommendations are
scored: the pool's target-fidelity rows, or a space-filling cloud of the simplex plus convex
steps around the mixtures the model likes best."""

from __future__ import annotations

import numpy as np

from admire.optim.acquisition import predict
from admire.optim.base import History, SearchSpace
from admire.trial import PoolRow

N_LOCAL_CENTRES = 8


def target_candidates(
    space: SearchSpace,
    history: History,
    model,  # type: ignore[no-untyped-def]
    n: int,
    seed: int,
    fidelity_index: int,
) -> tuple[np.ndarray, list[PoolRow] | None]:
    """Mixtures among which the optimum at the target is sought, and their pool rows (pool
    mode) or None. `model` ranks the observed mixtures at `fidelity_index` to centre the
    local moves."""
    if space.pool is not None:
        target = space.fidelities.target
        rows = [p for p in space.pool if p.fidelity == target]
        return np.array([p.weights for p in rows]), rows
    cloud = space.mixtures.sample(n, seed)
    observed = np.array([space.weights(r.spec) for r in history.completed])
    if len(observed) == 0:
        return cloud, None
    pred = predict(model, observed, space.fidelities.coords()[fidelity_index])
    top = observed[np.argsort(-pred.mean)[: min(N_LOCAL_CENTRES, len(observed))]]
    local = space.mixtures.neighbours(top, n // 2, seed + 1)
    return np.concatenate([cloud, local, observed]), None
