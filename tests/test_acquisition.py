"""The multi-fidelity knowledge gradient and the surrogate it scores with, on the synthetic
multi-fidelity problem (a real function of the simplex with a known optimum)."""

from __future__ import annotations

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
    gradient is positive, finite and divided by the price."""
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
    assert np.all(np.isfinite(kg)) and np.all(kg >= 0)
    assert kg[:32].max() > 0, "cheap runs must carry information about the target"
    assert kg[32:].max() > 0
    priced = mf_kg_scores(
        model,
        cand,
        np.zeros(32, dtype=int),
        fids.coords(),
        np.full(len(fids.fidelities), 2.0),
        target,
        space.sample(64, seed=2),
    )
    assert priced == pytest.approx(kg[:32] / 2.0)


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
