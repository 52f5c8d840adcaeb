"""The bench's verdict: per problem, admire against the best other method.

admire must be the best way to find the target's best mixture on every problem, so the
verdict compares it with whichever other method did best *on that problem*, not with a fixed
baseline. Its ablations (`admire-*`, except the published reference `admire-ref`) are admire
itself and do not count as others.

The measure is the median cost from which the pick stays on the best ("stays from"). Where
no method's pick settles on the best before the budget runs out (every stays-from is the
budget), stays-from says nothing and the final regret is compared instead. A problem is met
when admire's measure is at most `BAR` times the best other's.

A median of 20 seeds moves with the seeds drawn, so with the seeds' own values the
verdict also gives a bootstrap interval of the ratio (seeds resampled within each method):
a ratio near the bar whose interval spans it is a tie, not a verdict.
"""

from __future__ import annotations

import math

import numpy as np

BAR = 1.25
STAYS = "cost_to_best_stable_median"
FINAL = "final_regret_median"
INTERVAL = 0.9
"""The bootstrap interval's coverage: from its 5th to its 95th percentile."""
RESAMPLES = 2000
VERDICT_COLUMNS = [
    "problem",
    "measure",
    "admire",
    "best_other",
    "best_other_value",
    "ratio",
    "ratio_lo",
    "ratio_hi",
    "meets",
    "vs_admire_ref",
]


def is_other(method: str) -> bool:
    """Whether a method competes with admire (its own ablations do not)."""
    return method == "admire-ref" or not method.startswith("admire")


def verdict(
    problem: str, rows: list[dict], per_seed: dict[str, dict[str, list[float]]] | None = None
) -> dict | None:
    """admire's row against the best other method's on one problem's summary rows (as
    `harness.summarise` makes them), or None when the rows lack admire or any other method.
    `per_seed` (method -> summary column -> one value per seed, as `harness.seed_measures`
    makes them) adds the ratio's bootstrap interval (`ratio_lo`, `ratio_hi`; NaN without)."""
    by_method = {r["method"]: r for r in rows}
    mine = by_method.get("admire")
    others = [r for r in rows if is_other(r["method"])]
    if mine is None or not others:
        return None
    budget = float(mine["budget"])

    def settles(row: dict) -> bool:
        return float(row[STAYS]) < budget - 1e-9

    settled = any(settles(r) for r in [mine, *others])
    key = STAYS if settled else FINAL
    best = min(others, key=lambda r: float(r[key]))
    ratio = _ratio(float(mine[key]), float(best[key]))
    ref = by_method.get("admire-ref")
    # The reference bar applies where the reference itself settles on the best.
    vs_ref = (
        _ratio(float(mine[STAYS]), float(ref[STAYS]))
        if ref is not None and settles(ref)
        else math.nan
    )
    lo, hi = math.nan, math.nan
    if per_seed is not None:
        lo, hi = ratio_interval(per_seed["admire"][key], per_seed[best["method"]][key])
    return {
        "problem": problem,
        "measure": "stays-from" if settled else "final regret",
        "admire": float(mine[key]),
        "best_other": best["method"],
        "best_other_value": float(best[key]),
        "ratio": ratio,
        "ratio_lo": lo,
        "ratio_hi": hi,
        "meets": ratio <= BAR,
        "vs_admire_ref": vs_ref,
    }


def _ratio(mine: float, theirs: float) -> float:
    if theirs > 0:
        return mine / theirs
    return 1.0 if mine <= 0 else math.inf


def ratio_interval(mine: list[float], theirs: list[float], seed: int = 0) -> tuple[float, float]:
    """The `INTERVAL` bootstrap interval of median(mine) / median(theirs), each method's
    seeds resampled with replacement (`RESAMPLES` times, from a fixed `seed`)."""
    rng = np.random.default_rng(seed)
    a, b = np.asarray(mine, dtype=float), np.asarray(theirs, dtype=float)
    ma = np.median(rng.choice(a, (RESAMPLES, len(a))), axis=1)
    mb = np.median(rng.choice(b, (RESAMPLES, len(b))), axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = np.where(mb > 0, ma / mb, np.where(ma <= 0, 1.0, np.inf))
    # Nearest ranks, not interpolation: an infinite ratio (theirs 0, mine not) stays one.
    tail = (1 - INTERVAL) / 2
    lo = float(np.quantile(ratios, tail, method="lower"))
    hi = float(np.quantile(ratios, 1 - tail, method="higher"))
    return lo, hi


def format_verdict(verdicts: list[dict]) -> str:
    """One line per problem, then how many problems admire meets the bar on."""
    lines = [
        f"verdict (admire against the best other method; met when ratio <= {BAR:g}; "
        f"[{INTERVAL:.0%} bootstrap interval over seeds]):"
    ]
    for v in verdicts:
        ref = "" if math.isnan(v["vs_admire_ref"]) else f", {v['vs_admire_ref']:.3g}x admire-ref"
        spread = ""
        if not math.isnan(v.get("ratio_lo", math.nan)):
            spread = f" [{v['ratio_lo']:.3g}, {v['ratio_hi']:.3g}]"
        lines.append(
            f"  {v['problem']:<16} {v['measure']:<12} admire {v['admire']:<9.4g} "
            f"{v['best_other']:<12} {v['best_other_value']:<9.4g} ratio {v['ratio']:.3g}"
            f"{spread} {'met' if v['meets'] else 'NOT met'}{ref}"
        )
    met = sum(v["meets"] for v in verdicts)
    lines.append(f"  met on {met} of {len(verdicts)} problems")
    return "\n".join(lines)
