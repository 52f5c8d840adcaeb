from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from admire.config import Domain
from admire.space import SIMPLEX_TOL, InfeasibleMixtureError, MixtureSpace


@st.composite
def bounded_spaces(draw: st.DrawFn, k_min: int = 3, k_max: int = 24) -> MixtureSpace:
    """Random feasible bounds: mins summing below 1, maxes summing above 1."""
    k = draw(st.integers(k_min, k_max))
    raw_lo = np.array(draw(st.lists(st.floats(0, 1), min_size=k, max_size=k)))
    lo_total = draw(st.floats(0, 0.9))
    lo = raw_lo / raw_lo.sum() * lo_total if raw_lo.sum() > 0 else np.zeros(k)
    caps = np.array(draw(st.lists(st.floats(0.02, 1), min_size=k, max_size=k)))
    hi = np.minimum(1.0, lo + caps)
    if hi.sum() < 1.0:  # loosen until some mixture fits
        hi = np.minimum(1.0, hi + (1.0 - hi.sum()) / k + 1e-3)
    domains = [
        Domain(name=f"d{i}", min=float(a), max=float(b))
        for i, (a, b) in enumerate(zip(lo, hi, strict=True))
    ]
    return MixtureSpace.from_domains(domains)


@settings(max_examples=60, deadline=None)
@given(space=bounded_spaces(), seed=st.integers(0, 2**30), n=st.integers(1, 40))
def test_samples_lie_on_the_bounded_simplex(space: MixtureSpace, seed: int, n: int) -> None:
    w = space.sample(n, seed)
    assert w.shape == (n, space.dim)
    assert space.violation(w) <= SIMPLEX_TOL


@settings(max_examples=30, deadline=None)
@given(space=bounded_spaces(k_min=20, k_max=20), seed=st.integers(0, 2**30))
def test_twenty_domain_design_and_local_moves_stay_feasible(space: MixtureSpace, seed: int) -> None:
    design = space.space_filling(12, seed)
    local = space.neighbours(design[:3], 200, seed)
    assert space.violation(design) <= SIMPLEX_TOL
    assert space.violation(local) <= SIMPLEX_TOL


def test_tight_upper_bounds_use_hit_and_run() -> None:
    # Each domain may take at most 0.07 of 17: uniform-Dirichlet rejection almost never fits.
    space = MixtureSpace.from_domains([Domain(name=f"d{i}", max=0.07) for i in range(17)])
    w = space.sample(50, seed=3)
    assert space.violation(w) <= SIMPLEX_TOL
    assert w.std(axis=0).min() > 1e-3  # spread out, not a single point


def test_design_treats_domains_alike_and_covers_the_simplex() -> None:
    space = MixtureSpace.from_domains([Domain(name=f"d{i}") for i in range(12)])
    w = space.sample(4096, seed=0)
    means = w.mean(axis=0)
    assert np.allclose(means, 1 / 12, atol=0.004)  # no domain absorbs the slack
    design = space.space_filling(10, seed=0)
    # the first point is the most central one; the rest spread out (maximin)
    dists = np.sqrt(((design[:, None, :] - design[None, :, :]) ** 2).sum(-1))
    assert dists[np.triu_indices(10, 1)].min() > 0.1


def test_sampling_is_reproducible_by_seed() -> None:
    space = MixtureSpace.from_domains([Domain(name=f"d{i}") for i in range(5)])
    assert np.array_equal(space.sample(8, 1), space.sample(8, 1))
    assert not np.array_equal(space.sample(8, 1), space.sample(8, 2))


def test_check_rejects_off_simplex_points() -> None:
    space = MixtureSpace.from_domains([Domain(name="a", max=0.5), Domain(name="b")])
    space.check(np.array([0.5, 0.5]))
    with pytest.raises(InfeasibleMixtureError):
        space.check(np.array([0.6, 0.4]))
    with pytest.raises(InfeasibleMixtureError):
        space.check(np.array([0.3, 0.6]))
