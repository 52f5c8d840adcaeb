"""The contract every registered optimiser keeps (like Optuna's sampler tests): feasible
proposals on the bounded simplex, pool rows never reused, trials still running never proposed
again, q > 1 proposals distinct, and the same seed giving the same trace.

Optimisers are driven directly with the history a Study would hand them, built from the
answers of real runners (the RegMix replay table, the synthetic problem)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from admire.bench.problems import load_problem
from admire.config import Domain, OptimizerConfig, StudyConfig
from admire.optim import OPTIMIZERS, History, Optimizer, SearchSpace, make_optimizer
from admire.optim.acquisition import mf_kg_scores, p_better, predict
from admire.optim.model import FAILED_FIT_MARGIN
from admire.optim.surrogate import encode, fit_loss, fit_surrogate, hyperparameters
from admire.space import FidelitySpace, MixtureSpace
from admire.trial import COMPLETED, TrialRecord, TrialSpec, trial_seed

SMALL = {
    "admire": {"n_initial": 3, "n_candidates": 64},
    "sf-target": {"n_initial": 2, "n_candidates": 64},
    "sf-cheap": {"n_initial": 3, "n_candidates": 64},
    "admire-ref": {"n_candidates": 64},
    "regression": {"cheap_trials": 3},
    "regression-linear": {"cheap_trials": 3},
}


def _bounded_synth() -> tuple[StudyConfig, object]:
    problem = load_problem("synth-3")
    domains = [
        Domain(name="d0", min=0.1, max=0.6),
        Domain(name="d1", min=0.0, max=0.5),
        Domain(name="d2", min=0.2, max=1.0),
    ]
    config = problem.config.model_copy(update={"domains": domains})
    return config, problem.make_runner()


def _pile() -> tuple[StudyConfig, object]:
    problem = load_problem("pile-pool")
    return problem.config, problem.make_runner()


def _optimizer(kind: str, config: StudyConfig, runner, seed: int = 0) -> Optimizer:  # type: ignore[no-untyped-def]
    pool = runner.pool()
    space = SearchSpace(
        mixtures=MixtureSpace.from_domains(list(config.domains)),
        fidelities=FidelitySpace.from_config(config.fidelities),
        pool=None if pool is None else tuple(pool),
        maximize=False,
        seed=seed,
    )
    return make_optimizer(kind, space, SMALL.get(kind, {}))


def _costs(config: StudyConfig, runner) -> np.ndarray:  # type: ignore[no-untyped-def]
    fids = FidelitySpace.from_config(config.fidelities)
    raw = np.array([runner.expected_cost(f) for f in fids.fidelities])
    return raw / raw[fids.target_index]


def _drive(opt: Optimizer, config: StudyConfig, runner, n: int) -> list[TrialRecord]:  # type: ignore[no-untyped-def]
    """Run `n` trials as a Study would (one at a time), checking each proposal."""
    records: list[TrialRecord] = []
    costs = _costs(config, runner)
    metrics = config.objective.resolve(runner.metric_names())
    for _ in range(n):
        history = History(records, costs)
        proposals = opt.propose(history, remaining=20.0 - sum(_spent(records, costs, opt)))
        if not proposals:
            break
        p = proposals[0]
        opt.space.mixtures.check(p.weights)
        index = history.next_index()
        spec = TrialSpec(
            index,
            opt.space.mixtures.as_dict(p.weights),
            p.fidelity,
            trial_seed(0, index),
            p.pool_id,
        )
        result = runner.run(spec)
        value = config.objective.combine(result.metrics, metrics)
        metrics_out = {**result.metrics, "objective": value, "cost.raw": result.cost}
        records.append(TrialRecord(f"run-{index}", spec, COMPLETED, p.step, metrics_out))
    return records


def _spent(records: list[TrialRecord], costs: np.ndarray, opt: Optimizer) -> list[float]:
    return [float(costs[opt.space.fidelities.index(r.spec.fidelity)]) for r in records]


@pytest.mark.parametrize("kind", list(OPTIMIZERS))
def test_proposals_and_picks_are_feasible_on_the_bounded_simplex(kind: str) -> None:
    config, runner = _bounded_synth()
    opt = _optimizer(kind, config, runner)
    records = _drive(opt, config, runner, 6)
    assert len(records) >= 3, "the optimiser stopped early"
    for r in records:
        opt.space.mixtures.check(opt.space.weights(r.spec))
    rec = opt.recommend(History(records, _costs(config, runner)))
    assert rec is not None
    opt.space.mixtures.check(np.array([rec.weights[n] for n in opt.space.mixtures.names]))


@pytest.mark.parametrize("kind", list(OPTIMIZERS))
def test_pool_rows_are_never_reused_and_pending_trials_never_proposed(kind: str) -> None:
    config, runner = _pile()
    opt = _optimizer(kind, config, runner)
    records = _drive(opt, config, runner, 5)
    ids = [r.spec.pool_id for r in records]
    assert None not in ids and len(set(ids)) == len(ids)
    history = History(records, _costs(config, runner))
    first = opt.propose(history, remaining=20.0, n=2)
    assert first, "nothing proposed"
    pending = [
        TrialSpec(
            history.next_index() + i,
            opt.space.mixtures.as_dict(p.weights),
            p.fidelity,
            0,
            p.pool_id,
        )
        for i, p in enumerate(first)
    ]
    again = opt.propose(history, remaining=20.0, pending=pending, n=2)
    taken = set(ids) | {p.pool_id for p in pending}
    assert all(p.pool_id not in taken for p in again)
    assert len({p.pool_id for p in first}) == len(first)
    assert len({p.pool_id for p in again}) == len(again)


@pytest.mark.parametrize("kind", list(OPTIMIZERS))
def test_the_same_seed_gives_the_same_trace(kind: str) -> None:
    config, runner = _bounded_synth()
    one = _drive(_optimizer(kind, config, runner, seed=5), config, runner, 4)
    two = _drive(_optimizer(kind, config, runner, seed=5), config, runner, 4)
    assert [r.spec for r in one] == [r.spec for r in two]


def test_an_unknown_kind_or_option_is_refused_with_the_known_ones() -> None:
    with pytest.raises(ValueError, match="allowed: admire, "):
        OptimizerConfig(kind="bayes")
    with pytest.raises(ValueError, match=r"\.n_initail: unknown option"):
        OptimizerConfig(kind="admire", n_initail=3)


@pytest.mark.parametrize(
    ("pricing", "early", "late", "reserve"),
    [
        # 50 trials left, 20 target runs affordable: priced by cost; at 18 trials left and
        # 19 target runs affordable, every trial is a target run.
        ("reserve", [0.001, 0.06, 1.0], [0.001, 0.06, 1.0], True),
        ("cost", [0.001, 0.06, 1.0], [0.001, 0.06, 1.0], False),
        ("trials", [1 / 50, 1 / 50, 1 / 20], [1 / 18, 1 / 18, 1 / 18], False),
    ],
)
def test_pricing_keeps_the_last_trials_for_the_target(
    pricing: str, early: list[float], late: list[float], reserve: bool
) -> None:
    config, runner = _pile()
    space = SearchSpace(
        mixtures=MixtureSpace.from_domains(list(config.domains)),
        fidelities=FidelitySpace.from_config(config.fidelities),
        pool=tuple(runner.pool()),
        maximize=False,
        seed=0,
    )
    opt = make_optimizer("admire", space, {"pricing": pricing})
    costs = _costs(config, runner)
    assert np.allclose(costs, [0.001, 0.06, 1.0])
    # A price only matters relative to the others: compare the ratios.
    fifty = History([], costs, trials_left=50)
    at_50 = opt._prices(fifty, 20.0, 0)
    assert np.allclose(at_50 / at_50[0], np.array(early) / early[0])
    assert not opt._in_reserve(fifty, 20.0, 0)
    # 20 trials left, two of them pending, and 19.5 units: at most 19 target runs fit.
    twenty = History([], costs, trials_left=20)
    at_18 = opt._prices(twenty, 19.5, 2)
    assert np.allclose(at_18 / at_18[0], np.array(late) / late[0])
    assert opt._in_reserve(twenty, 19.5, 2) is reserve


def test_the_reserve_trials_run_at_the_target() -> None:
    config, runner = _pile()
    opt = _optimizer("admire", config, runner)
    records = _drive(opt, config, runner, 5)
    costs = _costs(config, runner)
    # 3 trials left and 19 units: all three are kept for the target.
    history = History(records, costs, trials_left=3)
    proposals = opt.propose(history, remaining=19.0, n=3)
    assert [p.fidelity for p in proposals] == [config.fidelities.target] * 3
    assert len({p.pool_id for p in proposals}) == 3


@pytest.mark.parametrize("reserve_at", ["target-size", "target"])
def test_the_reserve_runs_the_target_size_at_any_of_its_token_budgets(reserve_at: str) -> None:
    problem = load_problem("synth-pool")
    config, runner = problem.config, problem.make_runner()
    opt = _optimizer("admire", config, runner)
    records = _drive(opt, config, runner, 5)
    # The acquisition's own choices in the reserve: no challenger takes its last trials.
    options = {**SMALL["admire"], "reserve_at": reserve_at, "challenge": False}
    opt = make_optimizer("admire", opt.space, options)
    target = config.fidelities.target
    pick = next(p for p in opt.space.pool if p.fidelity == target)
    history = History(
        records,
        _costs(config, runner),
        trials_left=4,
        pick=opt.space.mixtures.as_dict(pick.weights),
    )
    first, *rest = opt.propose(history, remaining=9.0, n=4)
    # The first run of the target's size checks the standing pick, at the target itself.
    assert (first.pool_id, first.step, first.fidelity) == (pick.pool_id, "check-pick", target)
    assert len(rest) == 3 and len({p.pool_id for p in rest}) == 3
    assert {p.fidelity.model_size for p in rest} == {target.model_size}
    if reserve_at == "target":
        assert {p.fidelity for p in rest} == {target}
    else:  # a half-token target-size run costs half and, early on, tells about as much
        assert any(p.fidelity.tokens < target.tokens for p in rest)


def _target_runs(opt: Optimizer, config: StudyConfig, runner, records, rows) -> None:  # type: ignore[no-untyped-def]
    """Append completed runs of the target fidelity at pool `rows`, in order, to `records`."""
    metrics = config.objective.resolve(runner.metric_names())
    target = config.fidelities.target
    for row in rows:
        index = len(records)
        spec = TrialSpec(index, opt.space.mixtures.as_dict(row.weights), target, 0, row.pool_id)
        value = config.objective.combine(runner.run(spec).metrics, metrics)
        records.append(TrialRecord(f"run-{index}", spec, COMPLETED, "mf-kg", {"objective": value}))


def test_the_reserve_hedges_every_other_target_run_with_a_gp_of_the_target_size_alone() -> None:
    """`hedge: alternate`: from the fourth target run on, every other one is placed by the
    knowledge gradient of a GP fitted to the target runs alone, not by the study's GP."""
    config, runner = _pile()
    plain = _optimizer("admire", config, runner)
    records = _drive(plain, config, runner, 5)
    # The hedge's own turns: no challenger takes the reserve's last trials.
    options = {**SMALL["admire"], "hedge": "alternate", "challenge": False}
    opt = make_optimizer("admire", plain.space, options)
    costs = _costs(config, runner)
    target = config.fidelities.target
    rows = [p for p in opt.space.pool if p.fidelity == target]
    _target_runs(opt, config, runner, records, rows[:3])
    history = History(records, costs, trials_left=3)
    (hedged,) = opt.propose(history, remaining=10.0)
    assert (hedged.step, hedged.fidelity) == ("hedge", target)
    # The same choice from a GP of the three target runs alone, fitted here.
    ran = records[-3:]
    w = torch.tensor(np.array([opt.space.weights(r.spec) for r in ran]))
    f = torch.tensor(opt.space.fidelities.coords_at([target] * 3))
    y = torch.tensor([[opt.value(r)] for r in ran], dtype=torch.float64)
    alone = fit_surrogate(encode(w, f), y)
    free = rows[3:]
    t = opt.space.fidelities.target_index
    scores = mf_kg_scores(
        alone,
        np.array([p.weights for p in free]),
        np.full(len(free), t),
        opt.space.fidelities.coords(),
        costs,
        t,
        np.array([p.weights for p in rows]),
    )
    assert hedged.pool_id == free[int(np.argmax(scores))].pool_id
    # The predicted value it carries is still the study's GP's.
    mean = predict(opt.model(history), hedged.weights[None, :], opt.space.fidelities.coords()[t])
    assert hedged.predicted is not None
    assert hedged.predicted[0] == pytest.approx(-float(mean.mean[0]))
    # Turns alternate: with the hedged run pending, the next is the study GP's again.
    first, second = opt.propose(history, remaining=10.0, n=2)
    assert (first.pool_id, first.step, second.step) == (hedged.pool_id, "hedge", "mf-kg")
    off = make_optimizer("admire", plain.space, {**options, "hedge": "off"})
    assert off.propose(history, remaining=10.0)[0].step == "mf-kg"
    # Outside the reserve, or where the target size is all the study runs, no hedge.
    assert opt.propose(History(records, costs, trials_left=30), remaining=10.0)[0].step != "hedge"
    only = make_optimizer("sf-target", opt.space, {**SMALL["sf-target"], "hedge": "alternate"})
    target_only = History(records[-3:], costs, trials_left=3)
    assert only.propose(target_only, remaining=10.0)[0].step == "mf-kg"


@pytest.mark.parametrize("best_first", [True, False])
def test_the_reserve_hedges_while_the_target_runs_stall(best_first: bool) -> None:
    """`hedge: stall` (the default): the GP of the target runs alone places the next target
    run once the last one fell short of the best before it, and only then."""
    config, runner = _pile()
    opt = _optimizer("admire", config, runner)
    records = _drive(opt, config, runner, 5)
    # The hedge's own turns: no challenger takes the reserve's last trials.
    opt = make_optimizer("admire", opt.space, {**SMALL["admire"], "challenge": False})
    rows = [p for p in opt.space.pool if p.fidelity == config.fidelities.target]
    # Three target rows, the best (lowest loss) run first or last.
    scratch: list[TrialRecord] = []
    _target_runs(opt, config, runner, scratch, rows[:3])
    order = sorted(range(3), key=lambda i: opt.value(scratch[i]), reverse=best_first)
    _target_runs(opt, config, runner, records, [rows[i] for i in order])
    values = [opt.value(r) for r in records[-3:]]
    assert (values[0] == max(values)) == best_first
    history = History(records, _costs(config, runner), trials_left=3)
    (proposal,) = opt.propose(history, remaining=10.0)
    assert proposal.fidelity == config.fidelities.target
    assert proposal.step == ("hedge" if best_first else "mf-kg")


def _five_trials_in(config: StudyConfig, runner):  # type: ignore[no-untyped-def]
    """An admire optimiser after five trials of a pool study: (optimiser, records, costs, the
    target rows, the target's coordinates, the model, its mean at each target row)."""
    opt = _optimizer("admire", config, runner)
    records = _drive(opt, config, runner, 5)
    costs = _costs(config, runner)
    rows = [p for p in opt.space.pool if p.fidelity == config.fidelities.target]
    coords = opt.space.fidelities.coords()[opt.space.fidelities.target_index]
    model = opt.model(History(records, costs))
    mean = predict(model, np.array([r.weights for r in rows]), coords).mean
    return opt, records, costs, rows, coords, model, mean


def test_a_target_run_checks_the_standing_pick_first() -> None:
    config, runner = _pile()
    opt, records, costs, rows, _, _, mean = _five_trials_in(config, runner)
    target = config.fidelities.target
    # A pick the acquisition would never run for its own sake: the worst predicted mixture.
    worst = rows[int(np.argmin(mean))]
    history = History(records, costs, trials_left=3, pick=opt.space.mixtures.as_dict(worst.weights))
    first, second, third = opt.propose(history, remaining=19.0, n=3)
    assert (first.pool_id, first.step, first.fidelity) == (worst.pool_id, "check-pick", target)
    # Two trials left, and more rows than that may beat the worst: the reserve ends with the
    # rivals the posterior ranks best, best first (believing a pending trial's own mean
    # leaves the mean everywhere as it was).
    top, runner_up = (rows[int(i)] for i in np.argsort(-mean)[:2])
    assert (second.pool_id, second.step, second.fidelity) == (top.pool_id, "challenge", target)
    assert (third.pool_id, third.step, third.fidelity) == (runner_up.pool_id, "challenge", target)
    plain_options = {**SMALL["admire"], "challenge": False}
    unchallenged = make_optimizer("admire", opt.space, plain_options)
    first, second = unchallenged.propose(history, remaining=19.0, n=2)
    assert (first.pool_id, first.step) == (worst.pool_id, "check-pick")
    assert second.pool_id != worst.pool_id and second.step == "mf-kg"
    unchecked = make_optimizer("admire", opt.space, {**SMALL["admire"], "check_pick": False})
    (plain,) = unchecked.propose(history, remaining=19.0)
    assert plain.step == "mf-kg" and plain.pool_id != worst.pool_id


def test_with_one_model_size_the_reserve_runs_the_pick_and_its_rivals_at_the_target() -> None:
    problem = load_problem("synth-steps")  # one 1B size, ten token budgets
    config, runner = problem.config, problem.make_runner()
    opt, records, costs, rows, coords, model, mean = _five_trials_in(config, runner)
    target = config.fidelities.target
    # A pick that few rows could still beat, so that more trials are left than rivals.
    pick = rows[int(np.argmax(mean))]
    odds = p_better(model, pick.weights, [r.weights for r in rows if r is not pick], coords)
    rivals = sum(o <= opt.options.switch_confidence for o in odds)
    left = rivals + 4
    history = History(
        records, costs, trials_left=left, pick=opt.space.mixtures.as_dict(pick.weights)
    )
    # In the reserve: no more trials left than the target runs the cost left pays for.
    remaining = float(left + 1)
    first, second = opt.propose(history, remaining=remaining, n=2)
    # Early checkpoints are all this study has run: the reserve measures the pick first.
    assert (first.pool_id, first.step, first.fidelity) == (pick.pool_id, "challenge", target)
    if rivals:
        assert (second.step, second.fidelity) == ("challenge", target)
    else:
        assert second.step != "challenge"
    unchallenged = make_optimizer("admire", opt.space, {**SMALL["admire"], "challenge": False})
    (plain,) = unchallenged.propose(history, remaining=remaining)
    assert plain.step == "mf-kg"


def test_the_pick_moves_only_when_the_posterior_is_sure_the_new_one_is_better() -> None:
    """As a study runs it: 16 trials under caps of 20 trials and 10 units, the standing pick
    handed back each time: the last 5 are target runs, the first of them checking the pick."""
    config, runner = _pile()
    opt = _optimizer("admire", config, runner)
    costs = _costs(config, runner)
    all_coords = opt.space.fidelities.coords()
    target_index = opt.space.fidelities.target_index
    coords = all_coords[target_index]
    names = list(config.domain_names)
    target = config.fidelities.target
    target_w = np.array([p.weights for p in opt.space.pool if p.fidelity == target])
    metrics = config.objective.resolve(runner.metric_names())
    records: list[TrialRecord] = []
    kept = moved = held_unmeasured = 0
    previous = None
    for index in range(16):
        standing = None if previous is None else opt.space.mixtures.as_dict(previous)
        left = 20 - len(records)
        history = History(records, costs, trials_left=left, pick=standing)
        remaining = 10.0 - sum(_spent(records, costs, opt))
        (p,) = opt.propose(history, remaining=remaining)
        spec = TrialSpec(index, opt.space.mixtures.as_dict(p.weights), p.fidelity, 0, p.pool_id)
        result = runner.run(spec)
        value = config.objective.combine(result.metrics, metrics)
        records.append(TrialRecord(f"run-{index}", spec, COMPLETED, p.step, {"objective": value}))
        if index < 3:
            continue
        history = History(records, costs, trials_left=left - 1, pick=standing)
        rec = opt.recommend(history)
        assert rec is not None
        pick = np.array([rec.weights[d] for d in names])
        model = opt.model(history)
        top = target_w[int(np.argmax(predict(model, target_w, coords).mean))]
        measured = previous is not None and any(
            r.spec.fidelity == target and np.allclose(opt.space.weights(r.spec), previous)
            for r in records
        )
        # A pick not yet run at the target is held while nothing of the target's size has
        # run, and judged at every fidelity that has runs too; after that it is not held.
        ran = {opt.space.fidelities.index(r.spec.fidelity) for r in records} - {target_index}
        at = [coords] + ([] if measured else [all_coords[i] for i in sorted(ran)])
        sized = any(r.spec.fidelity.model_size == target.model_size for r in records)
        if previous is None or (sized and not measured):
            assert np.allclose(pick, top)
        elif not np.allclose(pick, previous):
            # The pick moves to the target run measured best (`keep_best_run`), or else only
            # to a mixture the posterior is 90 % sure beats the one standing.
            runs = [r for r in records if r.spec.fidelity == target]
            best_run = min(runs, key=lambda r: r.objective) if runs else None
            moved += 1
            if best_run is None or not np.allclose(pick, opt.space.weights(best_run.spec)):
                assert max(p_better(model, pick, [previous], c)[0] for c in at) >= 0.9
                assert np.allclose(pick, top)
        elif not np.allclose(top, previous):
            kept += 1  # the best mean is elsewhere, but not surely better: the pick stays
            held_unmeasured += not measured
            assert max(p_better(model, top, [previous], c)[0] for c in at) < 0.9
        previous = pick
    steps = [r.step for r in records]
    assert "check-pick" in steps and steps[-1] != "sobol"
    assert held_unmeasured > 0 and moved > 0, (kept, moved, held_unmeasured, steps)


def _synth_pool_after(n: int):  # type: ignore[no-untyped-def]
    """`synth-pool` after `n` trials of admire: config, runner, space, records, costs."""
    problem = load_problem("synth-pool")
    config, runner = problem.config, problem.make_runner()
    space = _optimizer("admire", config, runner).space
    records = _drive(make_optimizer("admire", space, SMALL["admire"]), config, runner, n)
    return config, runner, space, records, _costs(config, runner)


def test_a_pick_run_at_the_target_gives_way_to_a_target_run_measured_better() -> None:
    """`keep_best_run`, in a pool: with target runs measured, a pick that would be one of
    them (the posterior unsure which is better holds it) gives way to the one measured
    best, and so does one the posterior reads for a row with no run of the target's size
    (a prediction); a pick with a run of that size is left as the posterior chose it."""
    config, runner, space, records, costs = _synth_pool_after(8)
    fids = space.fidelities
    rows = [p for p in space.pool if p.fidelity == fids.target]
    metrics = config.objective.resolve(runner.metric_names())
    for i, row in enumerate(rows[:4]):
        spec = TrialSpec(
            len(records), space.mixtures.as_dict(row.weights), fids.target, i, row.pool_id
        )
        value = config.objective.combine(runner.run(spec).metrics, metrics)
        records.append(TrialRecord(f"t-{i}", spec, COMPLETED, "mf-kg", {"objective": value}))
    runs = sorted(records[-4:], key=lambda r: r.objective)
    measured = [space.weights(r.spec) for r in runs]
    on = make_optimizer("admire", space, SMALL["admire"])
    off = make_optimizer("admire", space, {**SMALL["admire"], "keep_best_run": False})
    gave_way = 0
    for worse in runs[1:]:
        history = History(records, costs, pick=space.mixtures.as_dict(space.weights(worse.spec)))
        got_on, got_off = (
            np.array([opt.recommend(history).weights[d] for d in config.domain_names])  # type: ignore[union-attr]
            for opt in (on, off)
        )
        sized = any(
            r.spec.fidelity.model_size == fids.target.model_size
            and np.allclose(space.weights(r.spec), got_off)
            for r in records
        )
        if not sized or any(np.allclose(got_off, w) for w in measured):
            assert np.allclose(got_on, measured[0])
            gave_way += not np.allclose(got_off, measured[0])
        else:
            assert np.allclose(got_on, got_off)
    assert gave_way > 0, "the posterior never held a worse target run"


def test_a_pick_not_run_at_the_target_is_held_unless_a_fidelity_with_runs_says_otherwise() -> None:
    """`hold`: before anything of the target's size has run, a standing pick stays unless
    the challenger is 90 % sure to beat it at the target or at any fidelity that has runs
    (`evidence`, the default) or at the dearest fidelity the pick ran at (`ran`); under
    `measured` it follows the best posterior mean at the target."""
    config, runner, space, records, costs = _synth_pool_after(8)
    fids = space.fidelities
    target = fids.coords()[fids.target_index]
    with_runs = [fids.coords()[i] for i in sorted({fids.index(r.spec.fidelity) for r in records})]
    rows = np.array([p.weights for p in space.pool if p.fidelity == fids.target])
    holds = {
        hold: make_optimizer("admire", space, {**SMALL["admire"], "hold": hold})
        for hold in ("evidence", "ran", "measured")
    }
    model = holds["measured"].model(History(records, costs))
    mean = predict(model, rows, target).mean
    top = rows[int(np.argmax(mean))]
    # Mixtures run below the target, and the target's runners-up, never run: near-ties.
    below_target = [tuple(space.weights(r.spec)) for r in records if r.spec.fidelity != fids.target]
    runners_up = [tuple(w) for w in rows[np.argsort(-mean)[1:12]]]
    held = moved = 0
    for mixture in dict.fromkeys(below_target + runners_up):
        pick = np.array(mixture)
        if np.allclose(pick, top):
            continue
        ran = [
            fids.index(r.spec.fidelity) for r in records if np.allclose(space.weights(r.spec), pick)
        ]
        dearest = [fids.coords()[max(ran, key=lambda i: costs[i])]] if ran else []
        sure = {
            "evidence": max(p_better(model, top, [pick], c)[0] for c in (target, *with_runs)),
            "ran": max(p_better(model, top, [pick], c)[0] for c in (target, *dearest))
            if ran
            else 1.0,
            "measured": 1.0,
        }
        history = History(records, costs, pick=space.mixtures.as_dict(pick))
        for hold, opt in holds.items():
            rec = opt.recommend(history)
            assert rec is not None
            kept = np.allclose([rec.weights[d] for d in config.domain_names], pick)
            assert kept == (sure[hold] < 0.9), hold
            if not kept:
                assert np.allclose([rec.weights[d] for d in config.domain_names], top)
        held, moved = held + (sure["evidence"] < 0.9), moved + (sure["evidence"] >= 0.9)
        if sure["evidence"] < 0.9:
            kept_pick = pick
    assert held > 0 and moved > 0, (held, moved)
    # One run of the target's size, elsewhere: the target's posterior now rests on it, and
    # the held pick, still not run at the target, follows the best posterior mean again.
    row = next(
        p for p in space.pool if p.fidelity == fids.target and not np.allclose(p.weights, kept_pick)
    )
    spec = TrialSpec(len(records), space.mixtures.as_dict(row.weights), fids.target, 0, row.pool_id)
    value = config.objective.combine(
        runner.run(spec).metrics, config.objective.resolve(runner.metric_names())
    )
    records = [*records, TrialRecord("run-target", spec, COMPLETED, "mf-kg", {"objective": value})]
    history = History(records, costs, pick=space.mixtures.as_dict(kept_pick))
    model = holds["evidence"].model(history)
    top = rows[int(np.argmax(predict(model, rows, target).mean))]
    rec = holds["evidence"].recommend(history)
    assert rec is not None and not np.allclose(top, kept_pick)
    assert np.allclose([rec.weights[d] for d in config.domain_names], top)


def test_hyperparameters_are_refitted_on_a_schedule_that_a_resumed_study_repeats() -> None:
    """Between refits the GP is conditioned on every trial with the hyperparameters of the
    last refit; a fresh optimiser (a resumed study) fits that prefix again and decides alike."""
    config, runner = _pile()
    costs = _costs(config, runner)
    opt = _optimizer("admire", config, runner)
    records = _drive(opt, config, runner, 12)
    points = [opt.gp.refit_points(records[:m])[-1] for m in range(1, len(records) + 1)]
    assert points == sorted(points) and points[0] == 1
    m = max(i for i, p in enumerate(points, start=1) if p < i)  # the last trial not refitted at
    history = History(records[:m], costs)
    model = opt.model(history)
    assert model.train_inputs[0].shape[0] >= m  # conditioned on every trial, curves included
    prefix = _optimizer("admire", config, runner).model(History(records[: points[m - 1]], costs))
    for name, value in hyperparameters(prefix).items():
        assert torch.equal(value, hyperparameters(model)[name]), name
    (again,) = _optimizer("admire", config, runner).propose(history, remaining=10.0)
    (going,) = opt.propose(history, remaining=10.0)
    assert (again.pool_id, again.fidelity, again.predicted) == (
        going.pool_id,
        going.fidelity,
        going.predicted,
    )
    every = make_optimizer("admire", opt.space, {**SMALL["admire"], "refit_growth": 0.0})
    assert [every.gp.refit_points(records[:i])[-1] for i in range(1, m + 1)] == list(
        range(1, m + 1)
    )


@pytest.mark.parametrize("fit_from", ["better", "previous"])
def test_chained_fits_are_refitted_by_a_resumed_study(fit_from: str) -> None:
    """With `fit_from: previous` or `better` a fit starts from the schedule's previous one, so
    the hyperparameters depend on the fits before; a fresh optimiser (a resumed study) refits
    that chain and ends where the one that ran through did. `better` keeps the better of its
    two starts, so it never fits the data worse than a start from the priors alone."""
    config, runner = _pile()
    cold = make_optimizer(
        "admire",
        _optimizer("admire", config, runner).space,
        {**SMALL["admire"], "fit_from": "priors"},
    )
    chained = make_optimizer("admire", cold.space, {**SMALL["admire"], "fit_from": fit_from})
    records = _drive(chained, config, runner, 14)
    points = chained.gp.refit_points(records)
    assert len(points) >= 3
    history = History(records[: points[-1]], _costs(config, runner))
    ran_through = chained.model(history)
    fresh = make_optimizer("admire", cold.space, {**SMALL["admire"], "fit_from": fit_from})
    resumed = hyperparameters(fresh.model(history))
    for name, value in hyperparameters(ran_through).items():
        assert torch.equal(value, resumed[name]), name
    if fit_from == "better":
        losses = [fit_loss(chained.model(History(records[:p], history.costs))) for p in points]
        priors = [fit_loss(cold.model(History(records[:p], history.costs))) for p in points]
        assert all(c <= p for c, p in zip(losses, priors, strict=True))
        assert any(c < p for c, p in zip(losses, priors, strict=True))
    else:
        cold_hp = hyperparameters(cold.model(history))
        assert any(not torch.equal(v, cold_hp[n]) for n, v in hyperparameters(ran_through).items())


def test_a_fit_stuck_far_below_the_last_one_is_fitted_again_from_it() -> None:
    """`rescue_fits`: a fit from the priors that explains the trials worse than the previous
    fit's hyperparameters do, by more than `FAILED_FIT_MARGIN` per observation (here: fits
    stopped after five L-BFGS steps), is fitted again from the previous fit and the better
    kept; a resumed study repeats those fits and ends where the one that ran through did."""
    config, runner = _pile()
    space = _optimizer("admire", config, runner).space
    short = {**SMALL["admire"], "fit_maxiter": 5}
    plain = make_optimizer("admire", space, {**short, "rescue_fits": False})
    records = _drive(plain, config, runner, 14)
    rescued = make_optimizer("admire", space, short)
    costs = _costs(config, runner)
    points = plain.gp.refit_points(records)
    was = [fit_loss(plain.model(History(records[:p], costs))) for p in points]
    now = [fit_loss(rescued.model(History(records[:p], costs))) for p in points]
    assert all(n <= w for n, w in zip(now, was, strict=True))
    assert any(n < w - FAILED_FIT_MARGIN for n, w in zip(now, was, strict=True))
    resumed = make_optimizer("admire", space, short)
    history = History(records, costs)
    after = hyperparameters(resumed.model(history))
    for name, value in hyperparameters(rescued.model(history)).items():
        assert torch.equal(value, after[name]), name


@pytest.mark.parametrize("kind", ["admire", "sf-cheap", "admire-ref", "regression"])
def test_the_target_level_is_not_predicted_before_a_target_run(kind: str) -> None:
    """Cheaper runs rank mixtures but do not tell the target's loss level: until the target
    has been run, the pick comes without a predicted objective, not a confident wrong one."""
    config, runner = _pile()
    opt = _optimizer(kind, config, runner)
    target = config.fidelities.target
    records = _drive(opt, config, runner, 4)
    records = records[: next((i for i, r in enumerate(records) if r.spec.fidelity == target), 4)]
    assert len(records) >= 3
    rec = opt.recommend(History(records, _costs(config, runner)))
    assert rec is not None and math.isnan(rec.predicted) and math.isnan(rec.predicted_sd)
    assert "predicted objective unknown until a run at 1B" in str(rec)
    row = next(p for p in opt.space.pool if p.fidelity == target)
    spec = TrialSpec(len(records), opt.space.mixtures.as_dict(row.weights), target, 0, row.pool_id)
    value = config.objective.combine(
        runner.run(spec).metrics, config.objective.resolve(runner.metric_names())
    )
    records.append(TrialRecord("run-t", spec, COMPLETED, "manual", {"objective": value}))
    rec = opt.recommend(History(records, _costs(config, runner)))
    assert rec is not None
    if kind == "sf-cheap":  # its pick is always a prediction from the cheapest fidelity
        assert math.isnan(rec.predicted)
    else:
        assert math.isfinite(rec.predicted) and abs(rec.predicted - value) < 0.5
        assert kind == "regression" or rec.predicted_sd > 0
