"""The multi-fidelity knowledge gradient and the surrogate it scores with, on the synthetic
multi-fidelity problem (a real function of the simplex with a known optimum)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from admire.bench.problems import load_problem
from admire.optim.acquisition import mf_kg_scores, predict
from admire.optim.surrogate import encode, fit_surrogate
from admire.space import FidelitySpace, MixtureSpace


@pytest.fixture(scope="module")
def synth():
    problem = load_problem("synth-3")
    runner = problem.make_runner()
    space = MixtureSpace.from_domains(list(problem.config.domains))
    fids = FidelitySpace.from_config(problem.config.fidelities)
    return problem, runner, space, fids


def _fit(runner, fids, weights: np.ndarray, fid_index: list[int]):
    coords = fids.coords()
    y = [[-runner.value(w, fids.fidelities[i])] for w, i in zip(weights, fid_index, strict=True)]
    x = encode(torch.tensor(weights), torch.tensor(coords[fid_index]))
    torch.manual_seed(0)
    return fit_surrogate(x, torch.tensor(y, dtype=torch.float64))


def test_cheap_runs_inform_the_target_before_any_target_run(synth) -> None:
    """With every run at the cheapest fidelity, a cheap run still has value for the target
    ranking (the fidelity prior expects cheap runs to be informative), and the knowledge
    gradient is positive, finite and divided by the price (scores are its logs)."""
    _, runner, space, fids = synth
    observed = space.space_filling(8, seed=0)
    model = _fit(runner, fids, observed, [0] * 8)
    cand = space.sample(32, seed=1)
    target = fids.target_index
    kg = mf_kg_scores(
        model,
        np.concatenate([cand, cand]),
        np.array([0] * 32 + [target] * 32),
        fids.coords(),
        np.ones(len(fids.fidelities)),
        target,
        space.sample(64, seed=2),
    )
    assert np.all(np.isfinite(kg)), "every run carries some information about the target"
    priced = mf_kg_scores(
        model,
        cand,
        np.zeros(32, dtype=int),
        fids.coords(),
        np.full(len(fids.fidelities), 2.0),
        target,
        space.sample(64, seed=2),
    )
    assert priced == pytest.approx(kg[:32] - math.log(2.0))


def test_an_observed_target_run_has_no_value_left(synth) -> None:
    """Running again, at the target, a mixture already observed there (noise aside) cannot
    move the target ranking as much as a run where the model is unsure."""
    _, runner, space, fids = synth
    cheap = space.space_filling(8, seed=0)
    at_target = space.sample(3, seed=5)
    target = fids.target_index
    model = _fit(runner, fids, np.concatenate([cheap, at_target]), [0] * 8 + [target] * 3)
    fresh = space.sample(64, seed=6)
    kg = mf_kg_scores(
        model,
        np.concatenate([at_target, fresh]),
        np.full(3 + 64, target),
        fids.coords(),
        np.ones(len(fids.fidelities)),
        target,
        np.concatenate([at_target, fresh]),
    )
    assert kg[:3].max() < kg[3:].max()


def test_the_target_ranking_is_learned_mostly_from_cheap_runs(synth) -> None:
    """20 cheap runs and 6 target runs: the target predictions rank the simplex like the
    truth does."""
    _, runner, space, fids = synth
    cheap = space.space_filling(20, seed=0)
    at_target = space.sample(6, seed=3)
    target = fids.target_index
    model = _fit(runner, fids, np.concatenate([cheap, at_target]), [0] * 20 + [target] * 6)
    grid = space.sample(256, seed=4)
    truth_t = np.array([runner.value(w, fids.fidelities[target]) for w in grid])
    pred_t = predict(model, grid, fids.coords()[target])
    assert np.corrcoef(-pred_t.mean, truth_t)[0, 1] > 0.5
    # Its pick is better than a mixture drawn at random from the simplex is, typically.
    assert truth_t[np.argmax(pred_t.mean)] < np.median(truth_t)


def test_the_discrepancy_term_keeps_the_cheap_ranking_and_widens_the_target(synth) -> None:
    """`discrepancy: true` (delta(w), local in fidelity): before any target run the target
    ranking still follows the cheap runs, and it is less sure of the target than the shared
    term alone, since the target may have a landscape of its own."""
    _, runner, space, fids = synth
    observed = space.space_filling(12, seed=0)
    coords = fids.coords()
    y = [[-runner.value(w, fids.fidelities[0])] for w in observed]
    x = encode(torch.tensor(observed), torch.tensor(coords[[0] * 12]))
    cand = space.sample(64, seed=1)
    preds = []
    for discrepancy in (False, True):
        torch.manual_seed(0)
        model = fit_surrogate(x, torch.tensor(y, dtype=torch.float64), discrepancy=discrepancy)
        preds.append(predict(model, cand, coords[fids.target_index]))
    shared, delta = preds
    rank = np.corrcoef(np.argsort(np.argsort(shared.mean)), np.argsort(np.argsort(delta.mean)))
    assert rank[0, 1] > 0.9
    assert np.median(delta.sd) > np.median(shared.sd)


@pytest.mark.parametrize(
    ("discrepancy", "mixing_law", "noise_floor"),
    [(False, False, False), (True, False, False), (False, True, False), (False, False, True)],
)
def test_the_fit_loss_is_gpytorchs_marginal_likelihood_with_its_priors(
    synth, discrepancy, mixing_law, noise_floor
) -> None:
    """The dense loss the fit minimises is GPyTorch's exact marginal log likelihood (priors
    included), negated, in value and gradient, at the fitted and at perturbed
    hyperparameters, with the fidelity-scaled noise of observations at three fidelities (and
    with the mixing-law prior mean's parameters and prior, and the noise floor's)."""
    from botorch.optim.closures import get_loss_closure_with_grads
    from gpytorch.mlls import ExactMarginalLogLikelihood

    from admire.optim.surrogate import _dense_loss

    _, runner, space, fids = synth
    observed = space.space_filling(15, seed=2)
    index = [i % 3 for i in range(15)]
    coords = fids.coords()
    y = [[-runner.value(w, fids.fidelities[i])] for w, i in zip(observed, index, strict=True)]
    x = encode(torch.tensor(observed), torch.tensor(coords[index]))
    torch.manual_seed(0)
    model = fit_surrogate(
        x,
        torch.tensor(y, dtype=torch.float64),
        discrepancy=discrepancy,
        mixing_law=mixing_law,
        noise_floor=noise_floor,
    )
    assert any("mean_module.weights" in k for k, _ in model.named_parameters()) == mixing_law
    assert any("raw_floor" in k for k, _ in model.named_parameters()) == noise_floor
    model.train()
    mll = ExactMarginalLogLikelihood(model.likelihood, model)
    params = {k: v for k, v in mll.named_parameters() if v.requires_grad}
    for step in range(2):
        value, grads = get_loss_closure_with_grads(mll, params)()
        grads = [g.clone() for g in grads]
        dense_value, dense_grads = _dense_loss(mll)()
        assert torch.isclose(value, dense_value, rtol=1e-10)
        for g, h in zip(grads, dense_grads, strict=True):
            assert torch.allclose(g, h, rtol=1e-8, atol=1e-10)
        with torch.no_grad():
            for p in params.values():
                p.add_(0.3 * (step + 1))


def test_more_fit_steps_reach_a_higher_marginal_likelihood(synth) -> None:
    """`maxiter` (the optimiser option `fit_maxiter`) bounds the fit's L-BFGS steps: one step
    leaves the hyperparameters far from the optimum, and more steps never end lower."""
    from gpytorch.mlls import ExactMarginalLogLikelihood

    from admire.optim.surrogate import _dense_loss

    _, runner, space, fids = synth
    observed = space.space_filling(30, seed=3)
    index = [0] * 20 + [1] * 7 + [2] * 3
    coords = fids.coords()
    y = [[-runner.value(w, fids.fidelities[i])] for w, i in zip(observed, index, strict=True)]
    x = encode(torch.tensor(observed), torch.tensor(coords[index]))
    losses = []
    for maxiter in (1, 150, 1000):
        torch.manual_seed(0)
        model = fit_surrogate(x, torch.tensor(y, dtype=torch.float64), maxiter=maxiter)
        model.train()
        loss, _ = _dense_loss(ExactMarginalLogLikelihood(model.likelihood, model))()
        losses.append(float(loss))
    one, default, long = losses
    assert one > default + 0.05 and long <= default + 1e-9


def test_the_noise_floor_keeps_the_targets_noise_near_the_cheap_runs() -> None:
    """`noise_floor`: where every fidelity is measured with the same error (sd 0.02) but
    mixture effects are ten times smaller at the target, noise scaled by a(f)^2 alone is
    learned far too small at the target; the floor keeps it nearer the truth."""
    rng = np.random.default_rng(0)
    optimum = np.array([0.5, 0.3, 0.2])
    cheap, target = rng.dirichlet(np.ones(3), 40), rng.dirichlet(np.ones(3), 12)
    w = torch.tensor(np.vstack([cheap, target]))
    f = torch.zeros(len(w), 2, dtype=torch.float64)
    f[len(cheap) :] = 1.0
    effect = ((w.numpy() - optimum) ** 2).sum(-1)
    level = np.where(f[:, 0].numpy() > 0, 2.0 + 0.3 * effect, 5.0 + 3.0 * effect)
    y = -torch.tensor(level + 0.02 * rng.standard_normal(len(w)))[:, None]
    target_sd = []
    for floor in (False, True):
        torch.manual_seed(0)
        model = fit_surrogate(encode(w, f), y, noise_floor=floor)
        noise = model.likelihood.noise_covar(encode(w, f)).diagonal().detach()
        noise = noise * model.outcome_transform.stdvs.squeeze() ** 2
        target_sd.append(float(noise[len(cheap) :].mean().sqrt()))
    scaled, floored = target_sd
    assert floored > 1.2 * scaled
    assert abs(math.log(floored / 0.02)) < abs(math.log(scaled / 0.02))


def test_the_leave_one_out_density_is_the_gp_conditioned_on_the_others(synth) -> None:
    """The closed form equals, row by row, the GP's prediction of each observation from the
    others (same hyperparameters), in the outcome's own units."""
    from admire.optim.surrogate import loo_log_density

    _, runner, space, fids = synth
    observed = space.space_filling(12, seed=3)
    index = [i % 3 for i in range(12)]
    model = _fit(runner, fids, observed, index)
    x, z = model.train_inputs[0], model.train_targets
    with torch.no_grad():
        cov = model.covar_module(x).to_dense() + torch.diag_embed(
            model.likelihood.noise_covar(x).diagonal()
        )
        m = model.mean_module(x)
    std = model.outcome_transform.stdvs.squeeze()
    for i in range(12):
        rest = torch.arange(12) != i
        solve = torch.linalg.solve(cov[rest][:, rest], cov[rest, i])
        mean = m[i] + solve @ (z[rest] - m[rest])
        var = cov[i, i] - cov[i, rest] @ solve
        expected = torch.distributions.Normal(mean * std, var.sqrt() * std).log_prob(z[i] * std)
        mask = torch.zeros(12, dtype=torch.bool)
        mask[i] = True
        assert loo_log_density(model, mask) == pytest.approx(float(expected.detach()), rel=1e-6)


@pytest.mark.parametrize("faithful", [True, False])
def test_validate_transfer_drops_cheap_runs_only_where_they_mislead(faithful: bool) -> None:
    """Twelve cheap and six target runs of a 3-domain problem. When the cheap fidelity ranks
    mixtures as the target does, the multi-fidelity GP predicts the target runs better and
    is kept; when it ranks them in reverse, the target runs alone do, and only target runs
    are proposed."""
    from admire.config import Fidelity
    from admire.optim import History, SearchSpace, make_optimizer
    from admire.trial import COMPLETED, TrialRecord, TrialSpec

    mixtures = MixtureSpace(names=("a", "b", "c"), lower=(0.0,) * 3, upper=(1.0,) * 3)
    grid = [Fidelity(model_size="S", tokens=1e9), Fidelity(model_size="L", tokens=1e9)]
    fids = FidelitySpace(tuple(grid), (1e6, 1e9), grid[1])
    space = SearchSpace(mixtures, fids, None, False, 0)
    centre = np.array([0.6, 0.3, 0.1])

    def target(w: np.ndarray) -> float:
        return 2.0 + float(np.sum((w - centre) ** 2))

    def cheap(w: np.ndarray) -> float:
        return 5.0 + 3.0 * (target(w) - 2.0) * (1 if faithful else -1)

    records = []
    for i, w in enumerate(mixtures.space_filling(18, seed=4)):
        fid = grid[1] if i % 3 == 2 else grid[0]
        value = target(w) if fid == grid[1] else cheap(w)
        spec = TrialSpec(i, mixtures.as_dict(w), fid, 0, None)
        records.append(TrialRecord(f"r{i}", spec, COMPLETED, "test", {"objective": value}))
    history = History(records, np.array([0.001, 1.0]), trials_left=10)
    opt = make_optimizer("admire", space, {"validate_transfer": True, "n_initial": 2})
    assert opt.transfers(history) is faithful
    (proposal,) = opt.propose(history, remaining=5.0)
    if not faithful:
        assert proposal.fidelity == grid[1]


def _exact_kg(
    model, weights: np.ndarray, fid: np.ndarray, target_w: np.ndarray
) -> tuple[float, float]:
    """The knowledge gradient of one run, from the model itself: the target means after
    conditioning on two outcomes of the run (they move linearly in it), then the expectation
    of their best over the outcome's normal, integrated on a fine grid out to 12 sds; and the
    share of it from outcomes more than 2.4 sds out."""
    x = encode(torch.tensor(weights[None, :]), torch.tensor(fid[None, :]))
    xt = encode(torch.tensor(target_w), torch.tensor(fid[None, :]).expand(len(target_w), -1))
    with torch.no_grad():
        post = model.posterior(x, observation_noise=True)
        mu_y, sd_y = post.mean.reshape(1, 1), post.variance.sqrt().reshape(1, 1)
        now = model.posterior(xt).mean.squeeze(-1)
        moved = model.condition_on_observations(x, mu_y + sd_y).posterior(xt).mean.squeeze(-1)
        # Conditioning on the mean itself leaves every target mean where it is.
        still = model.condition_on_observations(x, mu_y).posterior(xt).mean.squeeze(-1)
    slope = (moved - still).numpy()
    z = np.linspace(-12.0, 12.0, 24_001)
    best = (now.numpy()[None, :] + z[:, None] * slope[None, :]).max(axis=1)
    pdf = np.exp(-0.5 * z**2) / math.sqrt(2 * math.pi)
    gain = (best - now.numpy().max()) * pdf * (z[1] - z[0])
    return float(gain.sum()), float(gain[np.abs(z) > 2.4].sum() / max(gain.sum(), 1e-300))


def test_late_in_a_study_the_knowledge_gradient_still_ranks_the_runs(synth) -> None:
    """Dense target runs leave every unmeasured mixture some sds behind the best mean: the
    whole gain of a run then lies beyond the fixed quantiles' reach. The scores still rank
    the runs as the exact knowledge gradient does (when every score was 0, the first in the
    list ran, a mixture no likelier than any other to change the pick), and never overstate
    it."""
    _, runner, space, fids = synth
    target = fids.target_index
    coords = fids.coords()
    ran = space.space_filling(40, seed=0)
    model = _fit(runner, fids, ran, [target] * 40)
    pool = space.sample(96, seed=7)
    now = predict(model, np.concatenate([ran, pool]), coords[target])
    gap = (now.mean.max() - now.mean[40:]) / now.sd[40:]
    cand = pool[gap > 3.0]
    targets = np.concatenate([ran, cand])
    kg = mf_kg_scores(
        model,
        cand,
        np.full(len(cand), target),
        coords,
        np.ones(len(fids.fidelities)),
        target,
        targets,
    )
    exact, tail = np.array([_exact_kg(model, w, coords[target], targets) for w in cand]).T
    top = np.argsort(-exact)[:3]
    assert len(cand) > 20 and exact[top[-1]] > 1e-14
    assert np.all(tail[top] > 0.9), "a late study: the gain lies in the tails"
    assert int(np.argmax(kg)) == int(top[0])
    assert np.all(kg[top] <= np.log(exact[top]) + 1e-3)
    assert np.all(kg[top] >= np.log(exact[top]) - math.log(10.0))
