"""The bench's verdict: per problem, admire against the best other method.

admire must be the best way to find the target's best mixture on every problem, so the
verdict compares it with whichever other method did best *on that problem*, not with a fixed
baseline. Its ablations (`admire-*`, except the published reference `admire-ref`) are admire
itself and do not count as others.

The measure is the median cost from which the pick stays on the best ("stays from"). Where
no method's pick settles on the best before the budget runs out (every stays-from is the
budget), stays-from says nothing and the final regret is compared instead. A problem is met
when admire's measure is at most `BAR` times the best other's.
"""

from __future__ import annotations

import math

BAR = 1.25
STAYS = "cost_to_best_stable_median"
VERDICT_COLUMNS = [
    "problem",
    "measure",
    "admire",
    "best_other",
    "best_other_value",
    "ratio",
    "meets",
    "vs_admire_ref",
]


def is_other(method: str) -> bool:
    """Whether a method competes with admire (its own ablations do not)."""
    return method == "admire-ref" or not method.startswith("admire")


def verdict(problem: str, rows: list[dict]) -> dict | None:
    """admire's row against the best other method's on one problem's summary rows (as
    `harness.summarise` makes them), or None when the rows lack admire or any other method."""
    by_method = {r["method"]: r for r in rows}
    mine = by_method.get("admire")
    others = [r for r in rows if is_other(r["method"])]
    if mine is None or not others:
        return None
    budget = float(mine["budget"])

    def settles(row: dict) -> bool:
        return float(row[STAYS]) < budget - 1e-9

    settled = any(settles(r) for r in [mine, *others])
    key = STAYS if settled else "final_regret_median"
    best = min(others, key=lambda r: float(r[key]))
    ratio = _ratio(float(mine[key]), float(best[key]))
    ref = by_method.get("admire-ref")
    # The reference bar applies where the reference itself settles on the best.
    vs_ref = (
        _ratio(float(mine[STAYS]), float(ref[STAYS]))
        if ref is not None and settles(ref)
        else math.nan
    )
    return {
        "problem": problem,
        "measure": "stays-from" if settled else "final regret",
        "admire": float(mine[key]),
        "best_other": best["method"],
        "best_other_value": float(best[key]),
        "ratio": ratio,
        "meets": ratio <= BAR,
        "vs_admire_ref": vs_ref,
    }


def _ratio(mine: float, theirs: float) -> float:
    if theirs > 0:
        return mine / theirs
    return 1.0 if mine <= 0 else math.inf


def format_verdict(verdicts: list[dict]) -> str:
    """One line per problem, then how many problems admire meets the bar on."""
    lines = [f"verdict (admire against the best other method; met when ratio <= {BAR:g}):"]
    for v in verdicts:
        ref = "" if math.isnan(v["vs_admire_ref"]) else f", {v['vs_admire_ref']:.3g}x admire-ref"
        lines.append(
            f"  {v['problem']:<16} {v['measure']:<12} admire {v['admire']:<9.4g} "
            f"{v['best_other']:<12} {v['best_other_value']:<9.4g} ratio {v['ratio']:<7.3g} "
            f"{'met' if v['meets'] else 'NOT met'}{ref}"
        )
    met = sum(v["meets"] for v in verdicts)
    lines.append(f"  met on {met} of {len(verdicts)} problems")
    return "\n".join(lines)
