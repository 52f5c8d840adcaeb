"""What an Ax user would do today: Ax's `Client` with its default generation strategy, at
the target fidelity only, the baseline users know.

The mixture is written the way Ax's maintainers recommend for a simplex (facebook/Ax#3867,
#727): k - 1 free weights with `sum <= 1 - min_last` (and `>= 1 - max_last` under an upper
bound), the last weight derived as one minus their sum. The Ax experiment is rebuilt from the
trial history on every proposal (trials still running are attached as running), so MLflow
stays the one source of truth. In pool mode the proposal is snapped to the nearest unused
target-fidelity run. The recommendation is the best target run observed.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from admire.optim.base import History, Optimizer, Proposal, Recommendation
from admire.trial import TrialSpec

METRIC = "objective"


class AxClient(Optimizer):
    """Ax's Client, default generation strategy, single fidelity (the target)."""

    name = "ax"

    def _names(self) -> list[str]:
        # Domain names need not be identifiers; Ax's constraint strings need them to be.
        return [f"w{i}" for i in range(self.space.mixtures.dim)]

    def _client(self, seed: int):  # type: ignore[no-untyped-def]
        from ax import Client, RangeParameterConfig
        from ax.api.configs import DerivedParameterConfig

        # Ax sets its own level on every logger it makes; its per-call INFO lines would bury
        # a study's output.
        for name in list(logging.root.manager.loggerDict):
            if name == "ax" or name.startswith("ax."):
                logging.getLogger(name).setLevel(logging.ERROR)
        mix = self.space.mixtures
        names = self._names()
        free, last = names[:-1], names[-1]
        params = [
            RangeParameterConfig(name=n, bounds=(lo, hi), parameter_type="float")
            for n, lo, hi in zip(free, mix.lower[:-1], mix.upper[:-1], strict=True)
        ]
        derived = DerivedParameterConfig(
            name=last, expression_str="1.0 - " + " - ".join(free), parameter_type="float"
        )
        total = " + ".join(free)
        constraints = [f"{total} <= {1.0 - mix.lower[-1]!r}"]
        if mix.upper[-1] < 1.0:
            constraints.append(f"{total} >= {1.0 - mix.upper[-1]!r}")
        client = Client(random_seed=seed)
        client.configure_experiment(
            parameters=[*params, derived], parameter_constraints=constraints
        )
        sign = "" if self.space.maximize else "-"
        client.configure_optimization(objective=f"{sign}{METRIC}")
        return client

    def _params(self, spec: TrialSpec) -> dict[str, float]:
        w = self.space.weights(spec)
        return {n: float(x) for n, x in zip(self._names(), w, strict=True)}

    def propose(
        self,
        history: History,
        remaining: float,
        pending: Sequence[TrialSpec] = (),
        n: int = 1,
    ) -> list[Proposal]:
        fids = self.space.fidelities
        if not history.affordable(remaining, [fids.target_index]):
            return []
        client = self._client(self.space.seed)
        target = [r for r in history.records if r.spec.fidelity == fids.target]
        for r in target:
            index = client.attach_trial(self._params(r.spec))
            if r in history.completed:
                client.complete_trial(index, raw_data={METRIC: float(r.objective)})  # type: ignore[arg-type]
            else:
                client.mark_trial_failed(index)
        for p in pending:
            client.attach_trial(self._params(p))
        out: list[Proposal] = []
        taken: set[str] = set()
        for params in client.get_next_trials(max_trials=n).values():
            w = np.array([float(params[k]) for k in self._names()])
            # The derived weight carries the rounding of a k-term sum (~1e-16 below 0).
            w = np.clip(w, self.space.mixtures.lower, self.space.mixtures.upper)
            if self.space.pool is None:
                self.space.mixtures.check(w)
                out.append(Proposal(w, fids.target, None, "ax"))
                continue
            rows = [
                r
                for r in self.free_rows(history, [fids.target_index], pending)
                if r.pool_id not in taken
            ]
            if not rows:
                break
            row = min(rows, key=lambda r: float(((r.weights - w) ** 2).sum()))
            taken.add(row.pool_id)
            out.append(Proposal(row.weights, fids.target, row.pool_id, "ax"))
        return out

    def recommend(self, history: History) -> Recommendation | None:
        return self.observed_recommendation(history)
