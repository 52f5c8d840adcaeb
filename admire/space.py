"""Search spaces: mixtures on the (bounded) probability simplex and the grid of fidelities.

The optimiser only sees numbers in the unit cube: a mixture is its k weights (which already lie
in [0, 1]) and a fidelity is (log model size, log tokens) scaled to [0, 1] over the study's grid.

Every mixture produced here is built to lie on the simplex by construction (normalised
exponentials, affine maps of the simplex, convex combinations of feasible points), never by
clipping and renormalising a point that was off it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from botorch.utils.sampling import get_polytope_samples
from torch.quasirandom import SobolEngine

from admire.config import Domain, Fidelities, Fidelity

SIMPLEX_TOL = 1e-9


class InfeasibleMixtureError(ValueError):
    """A mixture that does not sum to one or breaks a domain's bounds."""


@dataclass(frozen=True)
class MixtureSpace:
    """Mixture weights over `names`, each within [lower, upper], summing to one."""

    names: tuple[str, ...]
    lower: tuple[float, ...]
    upper: tuple[float, ...]

    @classmethod
    def from_domains(cls, domains: list[Domain]) -> MixtureSpace:
        return cls(
            names=tuple(d.name for d in domains),
            lower=tuple(d.min for d in domains),
            upper=tuple(d.max for d in domains),
        )

    @property
    def dim(self) -> int:
        return len(self.names)

    @property
    def _lo(self) -> np.ndarray:
        return np.asarray(self.lower, dtype=np.float64)

    @property
    def _hi(self) -> np.ndarray:
        return np.asarray(self.upper, dtype=np.float64)

    @property
    def has_upper_bounds(self) -> bool:
        slack = 1.0 - math.fsum(self.lower)
        return any(u - lo < slack - 1e-15 for lo, u in zip(self.lower, self.upper, strict=True))

    def violation(self, w: np.ndarray) -> float:
        """Largest violation of the sum or of a bound, over the rows of `w`."""
        w = np.atleast_2d(w)
        sum_err = np.abs(w.sum(axis=1) - 1.0)
        low_err = np.clip(self._lo - w, 0.0, None).max(axis=1)
        high_err = np.clip(w - self._hi, 0.0, None).max(axis=1)
        return float(np.max(np.maximum(sum_err, np.maximum(low_err, high_err))))

    def check(self, w: np.ndarray, tol: float = SIMPLEX_TOL) -> None:
        """Raise InfeasibleMixtureError unless every row of `w` is a feasible mixture."""
        err = self.violation(w)
        if not np.isfinite(err) or err > tol:
            raise InfeasibleMixtureError(f"mixture off the feasible simplex by {err:.3g}")

    def as_dict(self, w: np.ndarray) -> dict[str, float]:
        return {n: float(x) for n, x in zip(self.names, w, strict=True)}

    def sample(self, n: int, seed: int) -> np.ndarray:
        """`n` quasi-random mixtures spread uniformly over the feasible region.

        Scrambled Sobol points, one dimension per domain, become exponential variates and are
        normalised: a uniform Dirichlet that treats every domain alike. Lower bounds are an
        affine map of that simplex; upper bounds are met by rejection, or, when rejection
        would waste too much, by hit-and-run sampling of the bounded polytope.
        """
        if n <= 0:
            return np.empty((0, self.dim))
        lo = self._lo
        slack = 1.0 - float(lo.sum())
        if slack <= 0.0:
            return np.tile(lo, (n, 1))
        engine = SobolEngine(self.dim, scramble=True, seed=seed)
        out: list[np.ndarray] = []
        need = n
        for _ in range(8):
            u = engine.draw(max(4 * need, 64), dtype=torch.float64).numpy()
            e = -np.log1p(-np.clip(u, 0.0, 1.0 - 1e-16))
            s = e / e.sum(axis=1, keepdims=True)
            w = lo + slack * s
            if self.has_upper_bounds:
                w = w[(w <= self._hi).all(axis=1)]
            out.append(w)
            need -= len(w)
            if need <= 0:
                return np.concatenate(out)[:n]
        return self._hit_and_run(n, seed)

    def _hit_and_run(self, n: int, seed: int) -> np.ndarray:
        k = self.dim
        bounds = torch.tensor([self.lower, self.upper], dtype=torch.float64)
        eq = [(torch.arange(k), torch.ones(k, dtype=torch.float64), 1.0)]
        x = get_polytope_samples(
            n=n, bounds=bounds, equality_constraints=eq, seed=seed, n_burnin=500, n_thinning=k
        ).numpy()
        # Hit-and-run moves along directions that sum to zero; only rounding drifts the sum.
        self.check(x, tol=1e-10)
        return x

    def space_filling(self, n: int, seed: int, oversample: int = 32) -> np.ndarray:
        """An initial design: `n` points picked greedily (farthest-point) from a Sobol cloud."""
        cloud = self.sample(max(n * oversample, 256), seed)
        centre = cloud.mean(axis=0)
        chosen = [int(np.argmin(((cloud - centre) ** 2).sum(axis=1)))]
        dist = ((cloud - cloud[chosen[0]]) ** 2).sum(axis=1)
        while len(chosen) < n:
            nxt = int(np.argmax(dist))
            chosen.append(nxt)
            dist = np.minimum(dist, ((cloud - cloud[nxt]) ** 2).sum(axis=1))
        return cloud[chosen]

    def neighbours(self, centres: np.ndarray, n: int, seed: int) -> np.ndarray:
        """Mixtures near `centres`: convex steps toward random feasible points.

        A convex combination of two feasible mixtures is feasible, so these stay on the simplex
        and inside the bounds exactly (up to rounding).
        """
        if len(centres) == 0 or n <= 0:
            return np.empty((0, self.dim))
        rng = np.random.default_rng(seed)
        targets = self.sample(n, seed + 7919)
        base = centres[rng.integers(len(centres), size=n)]
        step = np.exp(rng.uniform(np.log(0.01), np.log(0.5), size=(n, 1)))
        return (1.0 - step) * base + step * targets


@dataclass(frozen=True)
class FidelitySpace:
    """The runnable fidelities of a study and their unit-cube coordinates."""

    fidelities: tuple[Fidelity, ...]
    params: tuple[float, ...]
    target: Fidelity

    @classmethod
    def from_config(cls, cfg: Fidelities) -> FidelitySpace:
        grid = cfg.grid()
        return cls(
            fidelities=tuple(grid), params=tuple(cfg.params(f) for f in grid), target=cfg.target
        )

    @property
    def target_index(self) -> int:
        return self.fidelities.index(self.target)

    @property
    def one_model_size(self) -> bool:
        """Whether every fidelity trains the same model (a sweep of training tokens only)."""
        return len({f.model_size for f in self.fidelities}) == 1

    def index(self, fid: Fidelity) -> int:
        try:
            return self.fidelities.index(fid)
        except ValueError:
            raise ValueError(f"{label(fid)} is not a fidelity of this study") from None

    def coords(self) -> np.ndarray:
        """(n_fidelities, 2): log params and log tokens scaled to [0, 1] over the grid."""
        return self.coords_at(self.fidelities)

    def coords_at(self, points: Sequence[Fidelity]) -> np.ndarray:
        """Coordinates of any (size, tokens) points on the grid's scale: a checkpoint at fewer
        tokens than the grid's smallest budget lies below 0 on the token axis."""
        grid = np.log(
            np.array([[p, f.tokens] for p, f in zip(self.params, self.fidelities, strict=True)])
        )
        size = dict(zip((f.model_size for f in self.fidelities), self.params, strict=False))
        raw = np.log(np.array([[size[f.model_size], f.tokens] for f in points]).reshape(-1, 2))
        lo, hi = grid.min(axis=0), grid.max(axis=0)
        span = np.where(hi > lo, hi - lo, 1.0)
        return np.where(hi > lo, (raw - lo) / span, 1.0)

    def flops(self, i: int) -> float:
        return 6.0 * self.params[i] * self.fidelities[i].tokens


def short_count(x: float) -> str:
    """A count in K/M/B/T with up to three significant digits: 2.5e10 -> `25B`."""
    for div, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "K")):
        if abs(x) >= div:
            return f"{x / div:.3g}{suffix}"
    return f"{x:.3g}"


def label(fid: Fidelity) -> str:
    """A fidelity for reading, as the run list, console and recommendation show it:
    `60M × 1B tok`."""
    return f"{fid.model_size} × {short_count(fid.tokens)} tok"
