"""Figures of one study, for its parent run in MLflow (matplotlib, drawn off-screen).

Each function takes plain numbers and returns a figure; `admire.report` gathers the numbers
from the study and logs the figures. Nothing here knows MLflow or the optimiser.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def _figure(width: float = 7.0, height: float = 4.2) -> tuple[Figure, object]:
    # The object-oriented API without pyplot: no global figure registry, no GUI backend.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=110)
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot(1, 1, 1)


def progress(
    cost: Sequence[float],
    predicted: Sequence[float],
    predicted_sd: Sequence[float],
    best_observed: Sequence[float | None],
    title: str,
) -> Figure:
    """The recommendation's predicted target objective (± sd band) and the best value observed
    at the target fidelity, against the cost spent after each trial."""
    fig, ax = _figure()
    x = np.asarray(cost, dtype=float)
    mean = np.asarray(predicted, dtype=float)
    sd = np.asarray(predicted_sd, dtype=float)
    ax.step(x, mean, where="post", label="recommended mixture, predicted")
    ax.fill_between(x, mean - sd, mean + sd, step="post", alpha=0.25, label="± 1 sd")
    seen = [(c, b) for c, b in zip(x, best_observed, strict=True) if b is not None]
    if seen:
        ax.step(*zip(*seen, strict=True), where="post", ls="--", label="best observed at target")
    ax.set_xscale("log")
    ax.set_xlabel("cost spent (target-run units)")
    ax.set_ylabel("objective at the target fidelity")
    ax.set_title(f"{title}: recommendation vs cost")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def fidelity_usage(
    cost: Sequence[float], fidelities: Sequence[str], order: Sequence[str]
) -> Figure:
    """Trials run at each fidelity, cumulatively, against the cost spent after each trial."""
    fig, ax = _figure()
    x = np.asarray(cost, dtype=float)
    for name in order:
        counts = np.cumsum([f == name for f in fidelities])
        ax.step(x, counts, where="post", label=name)
    ax.set_xscale("log")
    ax.set_xlabel("cost spent (target-run units)")
    ax.set_ylabel("trials so far")
    ax.set_title("fidelity usage")
    ax.grid(True, alpha=0.3)
    ax.legend(title="fidelity", fontsize=8)
    fig.tight_layout()
    return fig


def mixture(weights: dict[str, float], title: str) -> Figure:
    """The recommended mixture as horizontal bars, each next to the uniform share."""
    names = list(weights)
    fig, ax = _figure(7.0, 0.8 + 0.32 * len(names))
    y = np.arange(len(names))
    ax.barh(y + 0.2, [weights[n] for n in names], height=0.4, label="recommended")
    ax.barh(y - 0.2, [1 / len(names)] * len(names), height=0.4, alpha=0.5, label="uniform")
    ax.set_yticks(y, names, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("weight")
    ax.set_title(title, fontsize=10)
    ax.grid(True, axis="x", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def domain_effect(effects: dict[str, float], direction: str) -> Figure:
    """The model's sensitivity of the objective to each domain's weight at the recommendation:
    the predicted change per unit of weight moved into the domain from all others."""
    names = sorted(effects, key=effects.__getitem__)
    fig, ax = _figure(7.0, 0.8 + 0.32 * len(names))
    values = [effects[n] for n in names]
    good = [(v < 0) == (direction == "minimize") for v in values]
    ax.barh(names, values, color=["tab:green" if g else "tab:red" for g in good])
    ax.invert_yaxis()  # the most helpful domain on top
    ax.axvline(0.0, color="black", lw=0.8)
    ax.tick_params(axis="y", labelsize=8)
    ax.set_xlabel("d objective / d weight (green: more of it helps)")
    ax.set_title("per-domain effect at the recommended mixture (surrogate model)", fontsize=10)
    ax.grid(True, axis="x", alpha=0.3)
    fig.tight_layout()
    return fig


def loss_curves(curves: dict[str, tuple[str, list[tuple[int, float]]]]) -> Figure:
    """Objective against tokens seen, one line per trial (name -> (fidelity, points)), coloured
    by fidelity."""
    fig, ax = _figure()
    colours: dict[str, str] = {}
    for fid, points in curves.values():
        if fid not in colours:
            colours[fid] = f"C{len(colours) % 10}"
        tokens, values = zip(*points, strict=True)
        label = fid if fid not in ax.get_legend_handles_labels()[1] else None
        ax.plot(tokens, values, color=colours[fid], alpha=0.6, marker=".", label=label)
    ax.set_xscale("log")
    ax.set_xlabel("tokens seen")
    ax.set_ylabel("objective (validation)")
    ax.set_title("trial loss curves")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(title="fidelity", fontsize=8)
    fig.tight_layout()
    return fig
