"""Cost-aware multi-fidelity acquisitions and the target-fidelity recommendation.

The default is a discrete multi-fidelity knowledge gradient (`mf_kg_scores`): how much a
trial at (mixture, fidelity) is expected to raise the best posterior mean *at the target
fidelity* over the target candidates, divided by the trial's price. It values what the
study is after, which mixture is best at the target, and nothing else. The alternative is
BoTorch's multi-fidelity max-value entropy search (`mf_mes_scores`): the information about
the best objective *value* at the target. That value carries the target's unknown loss
level (a 1M model's loss is nats above a 1B model's), which only a target run can tell, so
max-value entropy favours target runs however well the cheap runs rank mixtures; the
knowledge gradient is blind to a shift that moves every mixture alike.

Both are evaluated on a finite candidate set rather than optimised by gradients: fidelities are
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
from botorch.acquisition.analytic import _log_ei_helper
from botorch.acquisition.cost_aware import InverseCostWeightedUtility
from botorch.acquisition.max_value_entropy_search import qMultiFidelityMaxValueEntropy
from botorch.models import SingleTaskGP
from botorch.models.deterministic import GenericDeterministicModel
from linear_operator import to_dense
from torch import Tensor

from admire.optim.surrogate import encode

CHUNK = 1024
KG_TARGETS = 256
"""Target candidates the knowledge gradient tracks: those with the highest upper bounds (the
others are all but certain never to become the best)."""
KG_QUANTILES = 64


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


def p_better(
    model: SingleTaskGP, pick: np.ndarray, others: list[np.ndarray], coords: np.ndarray
) -> list[float]:
    """P(the (maximised) objective at `pick` exceeds that at each of `others`), from the joint
    posterior at fidelity `coords`."""
    w = torch.tensor(np.array([pick, *others]))
    f = torch.as_tensor(coords, dtype=torch.float64).expand(len(w), -1)
    with torch.no_grad():
        post = model.posterior(encode(w, f))
        mu = post.mean.squeeze(-1)
        cov = post.covariance_matrix if post.mean.dim() == 2 else post.mvn.covariance_matrix
    normal = torch.distributions.Normal(0.0, 1.0)
    var = (cov[0, 0] + cov.diagonal()[1:] - 2 * cov[0, 1:]).clamp_min(1e-18)
    return [float(p) for p in normal.cdf((mu[0] - mu[1:]) / var.sqrt())]


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


def mf_kg_scores(
    model: SingleTaskGP,
    cand_weights: np.ndarray,
    cand_fidelity: np.ndarray,
    fid_coords: np.ndarray,
    fid_costs: np.ndarray,
    target_index: int,
    target_weights: np.ndarray,
) -> np.ndarray:
    """Log of the expected gain in the best target posterior mean per unit price, for each
    candidate (-inf: no gain at all).

    For a trial at x the posterior mean of every target candidate c moves linearly in the
    trial's standardised outcome Z: mu_c + s_c(x) Z with s_c(x) = Cov(f_T(c), y(x)) / sd(y(x))
    (Frazier et al.'s discrete knowledge gradient), so the gain E[max_c(mu_c + s_c Z)] - max mu
    is an expectation over one normal variable, taken on fixed quantiles (deterministic).
    Fixed quantiles stop short of the tails (|Z| < 2.4 with 64 of them), and late in a study,
    when only a few sds separate the best mean from any rival, the whole gain lies there: every
    candidate would score exactly 0 and the first in the list would run. So each score is
    also bounded from below by its best pair, the gain against the current best alone,
    E[(mu_c - mu_b + (s_c - s_b) Z)^+], which is closed-form; and scores are logs, as in
    BoTorch's LogEI, so that gains far below float precision still rank the candidates.
    `cand_fidelity` indexes rows of `fid_coords`/`fid_costs`.
    """
    coords = torch.as_tensor(fid_coords, dtype=torch.float64)
    costs = torch.as_tensor(fid_costs, dtype=torch.float64)
    target = coords[target_index]
    tw = torch.as_tensor(target_weights, dtype=torch.float64)
    xt = encode(tw, target.expand(len(tw), -1))
    with torch.no_grad():
        mu_t, var_t = _marginals(model, xt)
        sd_t = var_t.clamp_min(0.0).sqrt()
        keep = torch.argsort(-(mu_t + 3 * sd_t))[:KG_TARGETS]
        xt, mu_t = xt[keep], mu_t[keep]
        b = int(torch.argmax(mu_t))
        best_now = mu_t[b]
        probs = (torch.arange(KG_QUANTILES, dtype=torch.float64) + 0.5) / KG_QUANTILES
        z = torch.distributions.Normal(0.0, 1.0).icdf(probs)
        x = encode(
            torch.as_tensor(cand_weights, dtype=torch.float64),
            coords[torch.as_tensor(cand_fidelity, dtype=torch.long)],
        )
        # A trial's outcome is observed with noise (scaled per fidelity by the model).
        _, var_x = _marginals(model, x, observation_noise=True)
        cross = _cross_covariance(model, x, xt)
        rivals = torch.arange(len(mu_t)) != b
        logs = []
        for lo in range(0, len(x), CHUNK // 4):
            s = cross(lo, lo + CHUNK // 4) / var_x[lo : lo + CHUNK // 4].clamp_min(
                1e-18
            ).sqrt().unsqueeze(-1)
            # One quantile at a time: the (candidates x targets) slab stays in cache, where the
            # whole (candidates x targets x quantiles) block would not (ten times slower).
            best = torch.stack([(mu_t + s * zq).amax(dim=1) for zq in z], dim=-1)
            gain = (best.mean(dim=-1) - best_now).clamp_min(0.0)
            spread = (s[:, rivals] - s[:, b : b + 1]).abs()
            u = ((mu_t[rivals] - best_now) / spread.clamp_min(1e-300)).clamp_min(-1e50)
            pair = torch.where(spread > 0, spread.log() + _log_ei_helper(u), -torch.inf)
            pair = pair.amax(dim=1) if pair.shape[1] else torch.full_like(gain, -torch.inf)
            logs.append(torch.maximum(gain.log(), pair))
        price = costs[torch.as_tensor(cand_fidelity, dtype=torch.long)].clamp_min(1e-12)
    return (torch.cat(logs) - price.log()).numpy()


def _marginals(
    model: SingleTaskGP, x: Tensor, observation_noise: bool = False
) -> tuple[Tensor, Tensor]:
    """Posterior means and variances at the rows of `x`, a chunk of rows at a time: one
    posterior over thousands of candidates would build their whole joint covariance, of which
    only the diagonal is read."""
    means, variances = [], []
    for lo in range(0, len(x), CHUNK // 4):
        post = model.posterior(x[lo : lo + CHUNK // 4], observation_noise=observation_noise)
        means.append(post.mean.squeeze(-1))
        variances.append(post.variance.squeeze(-1))
    return torch.cat(means), torch.cat(variances)


def _cross_covariance(model: SingleTaskGP, x: Tensor, xt: Tensor):  # type: ignore[no-untyped-def]
    """Posterior Cov(f(x_i), f(xt_j)) for rows lo:hi of `x`, in the outcome's units.

    Cov = K(x, xt) - K(x, X) R R^T K(X, xt), with R R^T the inverse of the training
    covariance (the root GPyTorch caches for predictions). Asking the posterior for the joint
    of x and xt would also compute the x-x and xt-xt blocks, which the knowledge gradient
    never reads, for every chunk of candidates."""
    train = model.train_inputs[0]
    model.posterior(xt[:1])  # builds the prediction cache for the current training data
    root = to_dense(model.prediction_strategy.covar_cache)
    kernel = model.covar_module
    right = root.transpose(-1, -2) @ to_dense(kernel(train, xt))
    scale = (
        model.outcome_transform.stdvs.squeeze() ** 2 if hasattr(model, "outcome_transform") else 1.0
    )

    def rows(lo: int, hi: int) -> Tensor:
        xc = x[lo:hi]
        left = to_dense(kernel(xc, train)) @ root
        return (to_dense(kernel(xc, xt)) - left @ right) * scale

    return rows
