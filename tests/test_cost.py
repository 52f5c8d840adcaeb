"""The cost model: measured costs replace the prior, and calibrate the fidelities not run yet
as a fixed per-trial overhead plus a scale on the prior."""

from __future__ import annotations

import numpy as np
import pytest

from admire.optim.cost import CostModel


def test_an_unrun_fidelity_is_priced_as_overhead_plus_scaled_prior() -> None:
    # Priors in FLOPs 1 : 2 : 100; every trial pays 10 s of start-up, then 1 s per prior unit.
    model = CostModel([1.0, 2.0, 100.0], target_index=2)
    for _ in range(3):
        model.observe(0, 11.0)
        model.observe(1, 12.0)
    overhead, scale = model.calibration()
    assert overhead == pytest.approx(10.0) and scale == pytest.approx(1.0)
    assert model.raw() == pytest.approx([11.0, 12.0, 110.0])
    # A ratio alone (11/1, 12/2: median 8.5) would have priced the target at 850 s, and a
    # cheap trial at 1/77 of a target run instead of 1/10.
    assert model.relative() == pytest.approx([0.1, 12 / 110, 1.0])
    assert model.to_units(55.0) == pytest.approx(0.5)


def test_one_fidelity_run_or_a_fit_that_is_no_overhead_falls_back_to_the_ratio() -> None:
    one = CostModel([1.0, 2.0, 100.0], target_index=2)
    one.observe(0, 4.0)
    assert one.calibration() == (0.0, 4.0)
    assert one.raw() == pytest.approx([4.0, 8.0, 400.0])
    # Costs that fall with the prior cannot be an overhead plus a positive scale.
    falling = CostModel([1.0, 2.0, 100.0], target_index=2)
    falling.observe(0, 6.0)
    falling.observe(1, 5.0)
    assert falling.calibration() == (0.0, pytest.approx(np.median([6.0, 2.5])))
    # A negative intercept (costs growing faster than the prior) is not an overhead either.
    steep = CostModel([1.0, 2.0, 100.0], target_index=2)
    steep.observe(0, 1.0)
    steep.observe(1, 3.0)
    assert steep.calibration()[0] == 0.0


def test_nothing_measured_is_the_prior_and_bad_priors_are_refused() -> None:
    model = CostModel([1.0, 4.0], target_index=1)
    assert model.relative() == pytest.approx([0.25, 1.0])
    model.observe(0, float("nan"))
    model.observe(0, 0.0)
    assert model.calibration() == (0.0, 1.0)
    with pytest.raises(ValueError, match="positive and finite"):
        CostModel([1.0, 0.0], target_index=1)
