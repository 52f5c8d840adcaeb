"""Cost-aware multi-fidelity acquisition and the target-fidelity recommendation.

The acquisition is BoTorch's multi-fidelity max-value entropy search: the information a
trial at (mixture, fidelity) gives about the best objective value *at the target fidelity*,
divided by the trial's cost (InverseCostWeightedUtility over a per-fidelity cost table).

It is evaluated on a finite candidate set rather than optimised by gradients: fidelities are
discrete (a handful of model sizes x token budgets), pool studies can only pick existing rows,
and for continuous studies a few thousand exactly-feasible simplex points (a space-filling
cloud plus convex steps around the most promising mixtures) cover the simplex well enough.
This avoids the equality-constrained multi-start optimisation that dominates proposal time
(tens of seconds per proposal in a straight BoTorch recipe) and every proposal is feasible
by construction, with no projection back onto the simplex.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from botorch.acquisition.cost_aware import InverseCostWeightedUtility
from botorch.acquisition.max_value_entropy_search import qMultiFidelityMaxValueEntropy
from botorch.models import SingleTaskGP
from botorch.models.deterministic import GenericDeterministicModel
from torch import Tensor

from admire.optim.surrogate import encode

CHUNK = 1024


@dataclass(frozen=True)
class Prediction:
    """Posterior mean and sd of the (maximised) model output at candidate points."""

    mean: np.ndarray
    sd: np.ndarray


def predict(model: SingleTaskGP, weights: np.ndarray, coords: np.ndarray) -> Prediction:
    """Posterior of the latent objective at mixtures `weights` (n, k) at one fidelity (2,)."""
    w = torch.as_tensor(weights, dtype=torch.float64)
    f = torch.as_tensor(coords, dtype=torch.float64).expand(len(w), -1)
    means, sds = [], []
    with torch.no_grad():
        for lo in range(0, len(w), CHUNK):
            post = model.posterior(encode(w[lo : lo + CHUNK], f[lo : lo + CHUNK]))
            means.append(post.mean.squeeze(-1))
            sds.append(post.variance.clamp_min(0.0).sqrt().squeeze(-1))
    return Prediction(torch.cat(means).numpy(), torch.cat(sds).numpy())


def _cost_lookup(coords: Tensor, costs: Tensor) -> GenericDeterministicModel:
    def cost(x: Tensor) -> Tensor:
        fid = x[..., -coords.shape[-1] :]
        nearest = torch.cdist(fid.reshape(-1, fid.shape[-1]), coords).argmin(dim=-1)
        return costs[nearest].reshape(*fid.shape[:-1], 1)

    return GenericDeterministicModel(cost, num_outputs=1)


def mf_mes_scores(
    model: SingleTaskGP,
    cand_weights: np.ndarray,
    cand_fidelity: np.ndarray,
    fid_coords: np.ndarray,
    fid_costs: np.ndarray,
    target_index: int,
    target_weights: np.ndarray,
    seed: int,
) -> np.ndarray:
    """Information about the target optimum per unit cost, for each (mixture, fidelity) pair.

    `cand_fidelity` indexes rows of `fid_coords`/`fid_costs`; `target_weights` discretise the
    target-fidelity optimum for max-value sampling.
    """
    coords = torch.as_tensor(fid_coords, dtype=torch.float64)
    costs = torch.as_tensor(fid_costs, dtype=torch.float64)
    target = coords[target_index]
    k = cand_weights.shape[1]

    def project(x: Tensor) -> Tensor:
        out = x.clone()
        out[..., k:] = target
        return out

    tw = torch.as_tensor(target_weights, dtype=torch.float64)
    candidate_set = encode(tw, target.expand(len(tw), -1))
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        acqf = qMultiFidelityMaxValueEntropy(
            model,
            candidate_set=candidate_set,
            num_mv_samples=16,
            cost_aware_utility=InverseCostWeightedUtility(cost_model=_cost_lookup(coords, costs)),
            project=project,
        )
        x = encode(
            torch.as_tensor(cand_weights, dtype=torch.float64),
            coords[torch.as_tensor(cand_fidelity, dtype=torch.long)],
        )
        scores = []
        with torch.no_grad():
            for lo in range(0, len(x), CHUNK):
                scores.append(acqf(x[lo : lo + CHUNK].unsqueeze(-2)))
    return torch.cat(scores).numpy()
