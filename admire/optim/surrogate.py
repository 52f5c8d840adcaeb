"""The multi-fidelity GP over (mixture, fidelity).

Inputs are the k mixture weights followed by two fidelity coordinates (log model size and log
tokens, scaled to [0, 1]). The kernel is

    s1 * a(f) a(f') * k_mix(w, w') * k_fid(f, f')  +  s2 * k_bias(f, f')

- k_fid learns how *faithful* a cheap fidelity is: the correlation of mixture effects between
  two fidelities (1 = the same ranking of mixtures, 0 = unrelated). Its prior expects cheap
  runs to be informative (a correlation of about 0.8 across the whole grid at the prior's
  mode) until runs at two fidelities say how much: with BoTorch's generic prior a study
  whose runs all sit at the cheapest fidelity took the target to be unrelated to them.
- a(f) = exp(slope . f) learns how *scaled* it is: the spread of the mixture effect at each
  fidelity. Loss differences between mixtures shrink with scale (on RegMix the spread is
  0.31 nats at 1M and 0.05 at 1B); with one amplitude for all fidelities the GP can only
  explain that by calling the fidelities unrelated, and the target posterior then ignores
  cheap evidence that was right. The observation noise scales with a(f) too (`ScaledNoise`):
  a cheap run's noise would otherwise swamp the target's small differences (with
  `noise_floor`, plus a learned variance that does not scale). Together this is
  the autoregressive (co-kriging) structure
  f_target = rho * (a_target / a_cheap) * f_cheap + delta, with rho and the scales learned.
- With `discrepancy`, a second mixture kernel with its own lengthscales, local in fidelity,
  adds delta(w): what the target (or any fidelity) does that the cheaper ones do not show.
  The shared term alone forces one mixture landscape, up to scale, on every fidelity; many
  cheap runs then set its lengthscales and the target's runs can only shift it. Its prior
  keeps it small until runs at a fidelity disagree with the others.
- k_bias absorbs the large per-fidelity offsets in loss (a 1M model's loss is nats above a
  1B model's) with an honest uncertainty where a fidelity has not been run yet.

The mixture kernel uses BoTorch's dimension-scaled lengthscale prior, so 3 or 30
domains need no retuning. Mixtures enter as square roots of the weights: the simplex maps
onto the sphere (Hellinger geometry), where moving a domain from 0% to 2% counts as much as it
does for a model, and more than moving a large domain from 40% to 42%.
"""

from __future__ import annotations

import math
import warnings

import torch
from botorch.exceptions import OptimizationWarning
from botorch.fit import fit_gpytorch_mll
from botorch.models import SingleTaskGP
from botorch.models.transforms import Standardize
from botorch.models.utils.gpytorch_modules import (
    get_covar_module_with_dim_scaled_prior,
    get_gaussian_likelihood_with_lognormal_prior,
)
from botorch.optim.closures import ForwardBackwardClosure
from gpytorch import settings as gpytorch_settings
from gpytorch.constraints import GreaterThan
from gpytorch.kernels import Kernel, RBFKernel, ScaleKernel
from gpytorch.likelihoods import GaussianLikelihood
from gpytorch.likelihoods.noise_models import HomoskedasticNoise
from gpytorch.means import Mean
from gpytorch.mlls import ExactMarginalLogLikelihood
from gpytorch.priors import LogNormalPrior, NormalPrior
from linear_operator import to_dense
from linear_operator.operators import DiagLinearOperator
from linear_operator.utils.cholesky import psd_safe_cholesky
from torch import Tensor

N_FIDELITY_DIMS = 2
FIDELITY_LENGTHSCALE_MODE = 2.0
FIDELITY_PRIOR_SCALE = 0.75
# delta(w) decorrelates within a fraction of the fidelity grid: at the prior's mode, runs a
# quarter of the grid apart share a third of it, the two ends of the grid nothing.
DISCREPANCY_LENGTHSCALE_MODE = 0.25
# Its variance relative to the shared term's: about a tenth at the mode.
DISCREPANCY_SCALE_MODE = 0.1
FIT_MAXITER = 150
# The noise that does not shrink with scale (`noise_floor`), as a variance on the
# standardised scale: at the prior's mode an sd of a hundredth of the outcomes' spread.
NOISE_FLOOR_MODE = 1e-4


def encode(weights: Tensor, fidelity: Tensor) -> Tensor:
    """Model inputs from mixture weights (..., k) and fidelity coordinates (..., 2)."""
    return torch.cat([weights.clamp_min(0.0).sqrt(), fidelity], dim=-1)


class FidelityScaled(Kernel):
    """`base` times a(f) a(f'), log a(f) = slope . f over the fidelity coordinates."""

    is_stationary = False

    def __init__(self, base: Kernel, fidelity_dims: list[int]) -> None:
        super().__init__()
        self.base = base
        self.fidelity_dims = fidelity_dims
        self.register_parameter("slope", torch.nn.Parameter(torch.zeros(len(fidelity_dims))))
        # Spreads that differ by up to e^2 ~ 7x across the grid are plausible a priori.
        self.register_prior("slope_prior", NormalPrior(0.0, 1.0), "slope")

    def _amplitude(self, x: Tensor) -> Tensor:
        return torch.exp(x[..., self.fidelity_dims] @ self.slope.to(x))

    def forward(self, x1: Tensor, x2: Tensor, diag: bool = False, **params) -> Tensor:  # type: ignore[no-untyped-def]
        k = to_dense(self.base(x1, x2, diag=diag, **params))
        a1, a2 = self._amplitude(x1), self._amplitude(x2)
        if diag:
            return k * a1 * a2
        return k * a1.unsqueeze(-1) * a2.unsqueeze(-2)


class ScaledNoise(HomoskedasticNoise):
    """Observation noise that scales with the fidelity's amplitude, a(f)^2 * noise: a seed's
    effect on the loss shrinks with scale as the mixture's does, so one noise level for all
    fidelities would drown the target's small differences in the cheap runs' noise. With
    `floor`, a variance that does not scale is added (learned, its prior small): the part of
    the noise that the target's runs share with the cheap ones."""

    def __init__(self, scaled: FidelityScaled, floor: bool = False, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(**kwargs)
        # Not a submodule: the kernel owns the amplitude's parameters.
        object.__setattr__(self, "_scaled", scaled)
        self.has_floor = floor
        if floor:
            self.register_parameter("raw_floor", torch.nn.Parameter(torch.zeros(1)))
            self.register_constraint("raw_floor", GreaterThan(1e-6))
            self.register_prior(
                "floor_prior",
                LogNormalPrior(math.log(NOISE_FLOOR_MODE) + 2.0**2, 2.0),
                lambda m: m.floor,
                lambda m, v: m._set_floor(v),
            )
            self._set_floor(torch.tensor(NOISE_FLOOR_MODE))

    @property
    def floor(self) -> Tensor:
        """The part of the noise variance that does not shrink with scale."""
        return self.raw_floor_constraint.transform(self.raw_floor)

    def _set_floor(self, value: Tensor) -> None:
        value = torch.as_tensor(value).to(self.raw_floor)
        self.initialize(raw_floor=self.raw_floor_constraint.inverse_transform(value))

    def forward(self, *params, shape=None, **kwargs) -> DiagLinearOperator:  # type: ignore[no-untyped-def]
        base = super().forward(*params, shape=shape, **kwargs)
        if "noise" in kwargs or not params:
            return base
        x = params[0] if torch.is_tensor(params[0]) else params[0][0]
        noise = base.diagonal()
        noise = noise * self._scaled._amplitude(x).expand(noise.shape) ** 2
        if self.has_floor:
            noise = noise + self.floor
        return DiagLinearOperator(noise)


def _scaled_likelihood(scaled: FidelityScaled, floor: bool = False) -> GaussianLikelihood:
    """BoTorch's default likelihood (its noise prior and floor), its noise scaled by a(f)^2
    (plus, with `floor`, a variance that does not scale)."""
    likelihood = get_gaussian_likelihood_with_lognormal_prior()
    old = likelihood.noise_covar
    likelihood.noise_covar = ScaledNoise(
        scaled, floor, noise_prior=old.noise_prior, noise_constraint=old.raw_noise_constraint
    )
    likelihood.noise_covar.noise = old.noise.detach()
    return likelihood


class MixingLawMean(Mean):
    """A prior mean linear in the mixture weights and the fidelity coordinates,
    b + beta . w + gamma . f: the first-order form of Data Mixing Laws' exp(t . w) (Ye et
    al. 2024) with a loss level that moves log-linearly in model size and tokens. Fitted
    with the kernel (Normal(0, 1) priors on the standardised scale); the GP models what it
    leaves."""

    def __init__(self, k: int) -> None:
        super().__init__()
        self.k = k
        self.register_parameter("weights", torch.nn.Parameter(torch.zeros(k + N_FIDELITY_DIMS)))
        self.register_parameter("bias", torch.nn.Parameter(torch.zeros(1)))
        self.register_prior("weights_prior", NormalPrior(0.0, 1.0), "weights")

    def forward(self, x: Tensor) -> Tensor:
        # Inputs hold square roots of the weights (see `encode`); the law is in the weights.
        features = torch.cat([x[..., : self.k] ** 2, x[..., self.k :]], dim=-1)
        return features @ self.weights.to(x) + self.bias.to(x)


def fit_surrogate(
    train_x: Tensor,
    train_y: Tensor,
    *,
    scaled: bool = True,
    informative: bool = True,
    discrepancy: bool = False,
    mixing_law: bool = False,
    noise_floor: bool = False,
    maxiter: int = FIT_MAXITER,
    fixed: dict[str, Tensor] | None = None,
    init: dict[str, Tensor] | None = None,
) -> SingleTaskGP:
    """Fit the multi-fidelity GP to encoded inputs (n, k + 2) and outcomes (n, 1) (maximised).

    `scaled=False` drops a(f) (one amplitude for every fidelity; an ablation);
    `informative=False` gives the fidelity kernel BoTorch's dimension-scaled prior instead of
    one that expects cheap fidelities to be informative (an ablation); `discrepancy` adds
    the fidelity-local delta(w) term; `mixing_law` replaces the constant prior mean by
    `MixingLawMean`; `noise_floor` adds a noise variance that does not scale with a(f)
    (with `scaled` only: without a(f) the noise is one level already); `maxiter` bounds the
    fit's L-BFGS steps. `fixed` is the state of an earlier fit of the same
    structure (`hyperparameters`): the GP is then conditioned on the data with those
    hyperparameters, without optimising them; `init`, such a state the fit starts from
    instead of the priors' modes."""
    k = train_x.shape[-1] - N_FIDELITY_DIMS
    mix_dims = list(range(k))
    fid_dims = [k, k + 1]
    k_mix = get_covar_module_with_dim_scaled_prior(ard_num_dims=k, active_dims=mix_dims)
    k_fid = (
        _fidelity_kernel(fid_dims)
        if informative
        else get_covar_module_with_dim_scaled_prior(ard_num_dims=2, active_dims=fid_dims)
    )
    k_bias = get_covar_module_with_dim_scaled_prior(ard_num_dims=2, active_dims=fid_dims)
    signal: Kernel = k_mix * k_fid
    if discrepancy:
        signal = signal + _discrepancy_kernel(mix_dims, fid_dims)
    likelihood = None
    if scaled:
        signal = FidelityScaled(signal, fid_dims)
        likelihood = _scaled_likelihood(signal, noise_floor)
    covar = ScaleKernel(signal) + ScaleKernel(k_bias)
    model = SingleTaskGP(
        train_x,
        train_y,
        covar_module=covar,
        mean_module=MixingLawMean(k) if mixing_law else None,
        likelihood=likelihood,
        outcome_transform=Standardize(m=1),
    )
    if fixed is not None:
        model.load_state_dict(fixed, strict=False)
    else:
        if init is not None:
            model.load_state_dict(init, strict=False)
        mll = ExactMarginalLogLikelihood(model.likelihood, model)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", OptimizationWarning)
            fit_gpytorch_mll(
                mll,
                closure=_dense_loss(mll),
                optimizer_kwargs={"options": {"maxiter": maxiter}},
            )
    model.eval()
    return model


def _dense_loss(mll: ExactMarginalLogLikelihood) -> ForwardBackwardClosure:
    """The negative marginal log likelihood per observation, with its priors, as GPyTorch's
    `ExactMarginalLogLikelihood` computes it, but on the dense kernel matrix.

    A study has tens to hundreds of observations: a Cholesky factor of that size costs
    microseconds, and GPyTorch's lazy-tensor machinery around it (lazy kernel evaluation,
    the multivariate normal's checks) was most of each of the ~150 L-BFGS steps of a fit."""
    model = mll.model
    parameters = {k: v for k, v in mll.named_parameters() if v.requires_grad}

    return ForwardBackwardClosure(lambda: _map_loss(model), parameters)


def fit_loss(model: SingleTaskGP) -> float:
    """What a fit minimises, at the model's hyperparameters: the negative log marginal
    likelihood per observation with the priors' log densities (lower is better; two fits of
    the same observations compare on it)."""
    with torch.no_grad():
        return float(_map_loss(model))


def _map_loss(model: SingleTaskGP) -> Tensor:
    x, y = model.train_inputs[0], model.train_targets
    n = len(y)
    chol = psd_safe_cholesky(_train_covariance(model))
    resid = (y - model.mean_module(x)).unsqueeze(-1)
    alpha = torch.cholesky_solve(resid, chol)
    log_p = -0.5 * (resid * alpha).sum() - chol.diagonal().log().sum()
    log_p = log_p - 0.5 * n * math.log(2 * math.pi)
    for _, module, prior, closure, _ in model.named_priors():
        log_p = log_p + prior.log_prob(closure(module)).sum()
    return -log_p / n


def _train_covariance(model: SingleTaskGP) -> Tensor:
    """The dense covariance of the training observations, noise included (standardised)."""
    x = model.train_inputs[0]
    with gpytorch_settings.lazily_evaluate_kernels(False):
        cov = to_dense(model.covar_module(x))
    return cov + torch.diag_embed(model.likelihood.noise_covar(x).diagonal())


def _fidelity_kernel(fid_dims: list[int]) -> Kernel:
    """RBF over the fidelity coordinates whose prior says a cheap fidelity is informative:
    at the mode, mixture effects at the two ends of the grid correlate at about 0.8.

    BoTorch's dimension-scaled prior is made for inputs whose relevance is unknown; its mode
    (0.29 for two dimensions) is where the fit starts, and a study whose trials all sit at
    the cheapest fidelity has no data that could move it: the target then seemed unrelated to
    every cheap run, and the acquisitions spent the budget at the target."""
    mode = FIDELITY_LENGTHSCALE_MODE
    prior = LogNormalPrior(math.log(mode) + FIDELITY_PRIOR_SCALE**2, FIDELITY_PRIOR_SCALE)
    kernel = RBFKernel(ard_num_dims=len(fid_dims), active_dims=fid_dims, lengthscale_prior=prior)
    kernel.lengthscale = torch.full_like(kernel.lengthscale, mode)
    return kernel


def _discrepancy_kernel(mix_dims: list[int], fid_dims: list[int]) -> Kernel:
    """delta(w, f): its own mixture lengthscales (BoTorch's dimension-scaled prior) times an
    RBF over the fidelity coordinates with a short lengthscale, scaled small a priori."""
    k_mix = get_covar_module_with_dim_scaled_prior(ard_num_dims=len(mix_dims), active_dims=mix_dims)
    mode = DISCREPANCY_LENGTHSCALE_MODE
    prior = LogNormalPrior(math.log(mode) + 0.5**2, 0.5)
    k_fid = RBFKernel(ard_num_dims=len(fid_dims), active_dims=fid_dims, lengthscale_prior=prior)
    k_fid.lengthscale = torch.full_like(k_fid.lengthscale, mode)
    scale_prior = LogNormalPrior(math.log(DISCREPANCY_SCALE_MODE) + 1.0, 1.0)
    # Bounded away from 0, where its log-normal prior has no density.
    kernel = ScaleKernel(
        k_mix * k_fid, outputscale_prior=scale_prior, outputscale_constraint=GreaterThan(1e-4)
    )
    kernel.outputscale = torch.tensor(DISCREPANCY_SCALE_MODE)
    return kernel


def hyperparameters(model: SingleTaskGP) -> dict[str, Tensor]:
    """The fitted kernel and noise hyperparameters (what `fit_surrogate(fixed=...)` reuses)."""
    # Training data and outcome-transform statistics belong to the new data, not the old.
    return {
        k: v.detach().clone()
        for k, v in model.state_dict().items()
        if k.startswith(("covar_module", "likelihood", "mean_module")) and "prior" not in k
    }


def loo_log_density(model: SingleTaskGP, rows: Tensor) -> float:
    """The leave-one-out predictive log density of the observations at training rows `rows`
    (a boolean mask), summed, in the outcome's own units, with the fitted hyperparameters.

    For an exact GP it is closed-form: with C the inverse of the training covariance (noise
    included) and a = C (y - m), observation i left out is predicted as
    N(y_i - a_i / C_ii, 1 / C_ii). Two models of the same observations compare on it however
    each standardised its outcomes."""
    x, y = model.train_inputs[0], model.train_targets
    with torch.no_grad():
        inverse = torch.cholesky_inverse(psd_safe_cholesky(_train_covariance(model)))
        alpha = inverse @ (y - model.mean_module(x))
        var = 1.0 / inverse.diagonal()
        resid = alpha * var
        scale = model.outcome_transform.stdvs.squeeze()
        density = -0.5 * (resid**2 / var + var.log() + math.log(2 * math.pi)) - scale.log()
    return float(density[rows].sum())
