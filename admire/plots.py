"""Plots of benchmark results: regret of the recommendation vs cost, the calibration of its
predicted sd vs cost, and fidelity usage."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from admire.bench.harness import Trace
    from admire.bench.problems import Problem


def _pyplot():  # type: ignore[no-untyped-def]
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _cost_grid(traces: list[Trace], budget: float) -> np.ndarray:
    """Costs from the cheapest trial to the budget, evenly on a log axis."""
    costs = [c for t in traces for c in t.costs if c > 0]
    lo = max(min(costs, default=1e-3), 1e-4)
    return np.geomspace(lo, budget if np.isfinite(budget) else max(costs), 200)


def _save_against_cost(fig, ax, path: Path, ylabel: str, title: str) -> None:  # type: ignore[no-untyped-def]
    """Label a plot whose x axis is the cost spent (log), and write it to `path`."""
    ax.set_xscale("log")
    ax.set_xlabel("cost spent (target-run units)")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    _pyplot().close(fig)


def plot_best_so_far(
    traces: list[Trace], budget: float, uninformed: float, path: Path, title: str
) -> None:
    """Median and IQR over seeds of the simple regret of each method's standing
    recommendation, against cost spent (log axis)."""
    from admire.bench.harness import regret_at

    plt = _pyplot()
    grid = _cost_grid(traces, budget)
    fig, ax = plt.subplots(figsize=(8, 5), dpi=120)
    for method in dict.fromkeys(t.method for t in traces):
        ts = [t for t in traces if t.method == method]
        curves = np.array([[regret_at(t, c, uninformed) for c in grid] for t in ts])
        q25, q50, q75 = np.percentile(curves, [25, 50, 75], axis=0)
        (line,) = ax.step(grid, q50, where="post", label=f"{method} (n={len(ts)})")
        ax.fill_between(grid, q25, q75, step="post", alpha=0.2, color=line.get_color())
    _save_against_cost(
        fig,
        ax,
        path,
        "simple regret of the recommendation (median, IQR band)",
        f"{title}: recommendation quality vs cost",
    )


def plot_coverage(traces: list[Trace], budget: float, path: Path, title: str) -> None:
    """Per method, the share of seeds whose standing pick's true value lay within its
    predicted ±2 sd, against cost spent (log axis), next to the 95 % a calibrated sd gives.
    Methods whose picks never come with an sd are left out."""
    from admire.bench.harness import coverage_at

    plt = _pyplot()
    grid = _cost_grid(traces, budget)
    fig, ax = plt.subplots(figsize=(8, 5), dpi=120)
    for method in dict.fromkeys(t.method for t in traces):
        ts = [t for t in traces if t.method == method]
        share = np.array([coverage_at(ts, c) for c in grid])
        if np.isfinite(share).any():
            ax.step(grid, share, where="post", label=f"{method} (n={len(ts)})")
    ax.axhline(0.95, color="grey", linestyle="--", label="95 % (calibrated)")
    ax.set_ylim(-0.02, 1.02)
    _save_against_cost(
        fig,
        ax,
        path,
        "share of seeds: pick's true value within ±2 sd",
        f"{title}: calibration of the pick's predicted sd vs cost",
    )


def plot_fidelity_usage(traces: list[Trace], problem: Problem, path: Path) -> None:
    """Per method, the share of trials at each fidelity and the share of cost they took."""
    plt = _pyplot()
    sizes = list(dict.fromkeys(f.model_size for f in problem.config.fidelities.grid()))
    unit = {f.model_size: c for f, c in problem.costs.items()}
    methods = list(dict.fromkeys(t.method for t in traces))
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.5), dpi=120)
    x = np.arange(len(methods))
    for ax, weighted, label in (
        (axes[0], False, "share of trials"),
        (axes[1], True, "share of cost"),
    ):
        bottom = np.zeros(len(methods))
        for size in sizes:
            share = []
            for m in methods:
                fids = [f for t in traces if t.method == m for f in t.fidelities]
                w = [unit[f] if weighted else 1.0 for f in fids]
                total = sum(w) or 1.0
                share.append(sum(wi for f, wi in zip(fids, w, strict=True) if f == size) / total)
            ax.bar(x, share, bottom=bottom, label=size)
            bottom += np.array(share)
        ax.set_xticks(x, methods, rotation=20)
        ax.set_ylabel(label)
        ax.set_ylim(0, 1)
    axes[1].legend(title="model size", loc="upper right")
    fig.suptitle(f"{problem.name}: fidelity usage")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
