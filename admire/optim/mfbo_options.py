"""The settings of admire's multi-fidelity BO (`AdmireOptimizer.Options`), each with why."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from admire.config import NO_BOOL
from admire.optim.base import Options
from admire.optim.surrogate import FIT_MAXITER


class MFBOOptions(Options):
    """Settings of admire's multi-fidelity BO; the defaults suit most studies."""

    n_initial: Annotated[int, NO_BOOL, Field(ge=2)] = 10
    acquisition: Literal["mf-kg", "mf-mes"] = "mf-kg"
    """`mf-kg`: the knowledge gradient about the best target mixture per unit price;
    `mf-mes`: max-value entropy search per unit cost (an ablation: it also values the
    target's unknown loss level, which only target runs tell, see `acquisition.py`)."""
    n_candidates: Annotated[int, NO_BOOL, Field(ge=16, le=100_000)] = 1024
    fixed_cost: Annotated[float, NO_BOOL, Field(ge=0.0)] = 0.0
    """Overhead charged to every trial in the acquisition's cost (target-run units)."""
    fidelity_scaling: bool = True
    """Learn the spread of mixture effects, and of the noise, per fidelity: a(f) in
    `surrogate.py` (off: one amplitude and one noise level for every fidelity)."""
    informative_fidelity_prior: bool = True
    """Expect a cheap fidelity to rank mixtures much like the target until the data say
    otherwise (off: BoTorch's dimension-scaled prior, under which a study with runs at one
    fidelity only takes every other fidelity to be unrelated; an ablation)."""
    discrepancy: bool = False
    """Add a fidelity-local term delta(w) with its own mixture lengthscales to the GP (see
    `surrogate.py`): the target may then have a landscape of its own, not only a scaled copy
    of the cheap one (an ablation, off by default)."""
    noise_floor: bool = False
    """Add to the noise a variance that does not shrink with scale (`ScaledNoise` in
    `surrogate.py`): where repeated runs of the target vary as much as cheap ones do (an
    evaluation set's sampling noise, a table measured with one error), a noise scaled by
    a(f)^2 alone is too small at the target, and two target runs within that noise of each
    other look different enough to move a measured pick (an ablation, off by default)."""
    mixing_law: bool = False
    """A prior mean linear in the weights and the fidelity coordinates (`MixingLawMean` in
    `surrogate.py`), fitted with the GP, in place of a constant (an ablation, off)."""
    refit_growth: Annotated[float, NO_BOOL, Field(ge=0.0)] = 0.15
    """Fit the GP's hyperparameters anew (see `fit_from`) once the
    trials at some fidelity have grown by this fraction since the last fit, or a fidelity
    has its first trial; in between, the GP is conditioned on every trial with the last
    fit's hyperparameters. A fit is most of a proposal's time, and one more trial among many
    barely moves it. The schedule depends on the history alone, so a resumed study decides
    as the one it resumes (0: fit on every trial)."""
    fit_maxiter: Annotated[int, NO_BOOL, Field(ge=1)] = FIT_MAXITER
    """At most this many L-BFGS steps per fit of the hyperparameters: a fit stopped short
    of its optimum moves the posterior, and with it the pick, from one fit to the next
    (an ablation; more steps cost proportionally more time)."""
    fit_from: Literal["priors", "previous", "better"] = "priors"
    """Where each fit of the hyperparameters on the refit schedule starts: `priors`, from
    their priors' modes; `previous`, from the schedule's previous fit (the same study a few
    trials earlier), except at a fidelity's first trial (the `warm_start` ablation: the pick
    settled later on the bench); `better`, from both, keeping the fit with the higher
    marginal likelihood (priors included; an ablation: the pick settled later on
    `synth-steps`). Each fit in a chain is a function of the history alone, so a resumed
    study refits the chain once and decides as the one it resumes."""
    rescue_fits: bool = True
    """With `fit_from: priors`, take a fit that explains the trials worse than the previous
    point's fit from the priors does (its hyperparameters conditioned on the same trials),
    by more than `FAILED_FIT_MARGIN` nats per observation, for one stopped in a poor basin
    (flat mixture lengthscales, a large noise: it predicts wild values for mixtures far from
    every run), fit again from that previous fit, and keep the better of the two. Costs one
    more Cholesky factor per fit while fits converge, and a study loaded in a new process
    makes two fits where it made one."""
    validate_transfer: bool = False
    """Once the target has been run a few times (`TRANSFER_MIN_RUNS`), check that the cheap
    fidelities help predict it: the multi-fidelity GP's leave-one-out predictions of the
    target runs against those of a GP of the target runs alone. Where the target-only GP
    predicts them better, the cheap runs mislead: it makes the decisions, and only target
    runs are bought (an ablation, off by default)."""
    caution: Annotated[float, NO_BOOL, Field(ge=0.0)] = 0.0
    """Recommend the best `mean - caution * sd` at the target rather than the best mean:
    above 0, a mixture the model is unsure of must be predicted better by that many sds to
    displace one it knows (0: the posterior-mean argmax)."""
    switch_confidence: Annotated[float, NO_BOOL, Field(ge=0.5, lt=1.0)] = 0.9
    """Keep the standing pick unless the posterior says, with at least this probability, that
    the new best mixture beats it at the target: two mixtures the runs cannot tell apart
    would otherwise trade places on every trial (0.5: always the best posterior mean). The
    standing pick is the study's last reported one (`History.pick`, kept in its store);
    which picks are held, and at which fidelities the challenger's win is read: `hold`."""
    hold: Literal["evidence", "measured", "ran", "any"] = "evidence"
    """Which standing picks `switch_confidence` holds, and where a challenger's win counts.
    `evidence` (default): a pick run at the target, judged there, and, while nothing of the
    target's model size has run, any pick, judged at the target or at any fidelity that has
    runs. Until then the target's posterior between two mixtures is an extrapolation
    diluted by how little the model trusts the cheaper fidelities, so near-tied mixtures
    trade places as each cheap run moves the fit; read where the runs were made, the same
    evidence says whether the challenger is really better. Once runs of the target's size
    inform it, an unmeasured pick follows the best posterior mean again, as under
    `measured`: only a pick run at the target is held (from the first run where the study
    has one model size, as `sf-target` and `sf-cheap` do). `any`: every pick, judged at the
    target only. `ran`: a pick run at the target, or at a cheaper fidelity and then judged
    at the target or the dearest fidelity it ran at."""
    keep_best_run: bool = True
    """In a pool, where the pick would be a row run at the target and another target row
    is measured better, recommend that one: two trained target models are compared by their
    measured objective, as a user holding both would, not by a posterior that a GP misfit
    at the target (its noise learned larger than it is) leaves unsure of which is better,
    so that `switch_confidence` held the worse; and a pick run at the target is not moved
    to a row with no run of the target's model size at all, which only the cheaper runs and
    the mixture kernel predict (one refit on `synth-steps` predicted such a row 0.03 better
    than the measured pick; it was 0.52 worse). Off: as the posterior and the hold say. In a
    continuous space the posterior still decides: there it may rightly prefer a mixture
    near the measured ones, and holding the best measured one against it cost final regret
    on `synth-mislead` (worse in 8 of 20 seeds, better in 2)."""
    challenge: bool = True
    """In a pool, end the reserve (`pricing`) with full target runs of the rows that could
    still beat the pick: once its trials left are no more than those rows (a row with no
    target run that the posterior gives at least 1 - `switch_confidence` of beating the
    pick), each trial runs the pick at the target if it has no run there, else the best
    such row. The reserve's earlier runs of the target's size are cheaper (stopped early)
    and find the pick, but two rows whose early checkpoints the model cannot tell apart
    keep the pick held (`switch_confidence`) on the one measured, or moving between them; a
    full run of each measures which is better (`keep_best_run`), as a user would settle it,
    with budget the early stops left unspent. In a study of one model size the tail is the
    whole reserve: every run was of the target's size from the first, so the reserve's
    early-stopped runs would be more of the checkpoints that left the rivals open (off: the
    acquisition chooses every run)."""
    use_curves: bool = True
    """Use each trial's earlier evaluations (its curve) as observations at their tokens."""
    check_pick: bool = True
    """When the acquisition buys the study's first target run (`reserve_at`): run the standing
    pick, predicted from cheaper runs, instead. A cheap pick the target disagrees with is then
    found out at once (only the first: a continuous study's pick moves with almost every
    trial, and checking each one spent the target runs on checks)."""
    pricing: Literal["reserve", "trials", "cost"] = "reserve"
    """What a trial costs the acquisition. `cost`: its cost alone, so that under a trial cap a
    0.001-unit run looks a thousand times cheaper than a target run and the study may never
    check its cheap picks at the target. `trials`: the scarcer of the two budgets it spends,
    its cost over the cost left or one trial over the trials left (cheap and mid-fidelity
    runs then cost alike, and the mid ones, nearer the target, win and move the pick).
    `reserve` (default): by cost while more trials are left than the target runs the cost
    left allows; the trials after that are target runs (the reserve), which check at the
    target what the cheap runs found, as far as the budget allows."""
    hedge: Literal["stall", "alternate", "off"] = "stall"
    """Which GP places the reserve's runs of the target's size from the fourth on. The
    study's GP places its target runs where the cheap runs point; where the cheap runs are
    blind to where the target is good, those runs all land where the target is no better,
    and the GP, explaining them as a scaled copy of the cheap landscape, is sure the rest of
    the simplex is no better either. A GP of the target size's runs alone (curves included)
    knows only what those runs say, so it explores where they have not been, as `sf-target`
    does; the recommendation still comes from the study's GP, with every run. `stall`
    (default): that GP places them while the study is stalled, its last run at the target
    (`HEDGE_STALL` runs) short of the best before it; the study's GP places the run after
    one that beat the best, and so keeps its turns while its runs keep finding better
    mixtures. `alternate` (an ablation): that GP places every other run, and takes runs the
    study's GP needed where it was right. `off`: the study's GP places them all."""
    reserve_at: Literal["target-size", "target"] = "target-size"
    """What the reserve's trials may run, and which run checks the pick (`check_pick`).
    `target-size` (default): runs of the target's model size at any of its token budgets,
    chosen by the acquisition per unit cost. A target-size run stopped early is much
    cheaper, and where its checkpoints rank mixtures as the full run does (which every full
    run's curve tells the model) it checks the cheap runs' pick for a fraction of the price.
    `target`: the target fidelity only. The two are the same where the target size has one
    token budget."""

    @model_validator(mode="after")
    def _floor_needs_scaling(self) -> MFBOOptions:
        if self.noise_floor and not self.fidelity_scaling:
            raise ValueError(
                "noise_floor adds to the fidelity-scaled noise: it needs fidelity_scaling: true"
            )
        return self
