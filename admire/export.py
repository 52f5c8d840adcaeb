"""The recommended mixture in the forms training stacks take.

- `weights`: `{domain: weight}` (most data loaders and mixture configs);
- `interleave_datasets`: the domains and their probabilities in the study's domain order, as
  Hugging Face `datasets.interleave_datasets(datasets, probabilities=...)` takes them;
- `tokens` (with a total): whole tokens per domain summing exactly to the total, with no domain
  asked for more than its epoch cap allows (the excess goes to the others in proportion).
"""

from __future__ import annotations

import json
import math
from typing import Any

import yaml


def token_counts(
    weights: dict[str, float], total: int, caps: dict[str, float] | None = None
) -> dict[str, int]:
    """Tokens per domain for a run of `total` tokens: `weights` scaled to the total, each
    domain held at `caps[domain] * total` at most (its epoch cap) with the excess moved to the
    uncapped domains in proportion to their weights; whole numbers summing to `total`.

    >>> token_counts({"code": 0.5, "web": 0.3, "math": 0.2}, 1000, {"math": 0.1})
    {'code': 563, 'web': 337, 'math': 100}
    """
    caps = caps or {}
    limit = {d: caps.get(d, math.inf) * total for d in weights}
    share = {d: float(w) * total for d, w in weights.items()}
    while True:
        over = [d for d in share if share[d] > limit[d] + 1e-9]
        if not over:
            break
        excess = sum(share[d] - limit[d] for d in over)
        for d in over:
            share[d] = limit[d]
        room = {d: weights[d] for d in share if share[d] < limit[d] - 1e-9 and weights[d] > 0}
        if not room:
            room = {d: 1.0 for d in share if share[d] < limit[d] - 1e-9}
        if not room:
            have = sum(limit.values())
            raise ValueError(
                f"--tokens {total}: the domains' epoch caps allow only {have:.0f} tokens "
                "without repeating a domain more often than max_epochs"
            )
        norm = sum(room.values())
        for d, w in room.items():
            share[d] += excess * w / norm
    counts = {d: math.floor(v) for d, v in share.items()}
    # Largest remainders take the tokens lost to rounding, so the counts sum to the total.
    order = sorted(share, key=lambda d: counts[d] - share[d])
    for d in order[: total - sum(counts.values())]:
        counts[d] += 1
    return counts


def mixture_export(
    study: str,
    fidelity: str,
    predicted: float,
    predicted_sd: float,
    weights: dict[str, float],
    tokens: int | None = None,
    caps: dict[str, float] | None = None,
) -> dict[str, Any]:
    """The recommended mixture as plain data (see the module docstring for the forms)."""
    out: dict[str, Any] = {
        "study": study,
        "fidelity": fidelity,
        # null while unknown (no target run yet) or not given: JSON has no NaN.
        "predicted_objective": None if math.isnan(predicted) else predicted,
        "predicted_sd": None if math.isnan(predicted_sd) else predicted_sd,
        "weights": {d: float(w) for d, w in weights.items()},
        "interleave_datasets": {
            "domains": list(weights),
            "probabilities": [float(w) for w in weights.values()],
        },
    }
    if tokens is not None:
        out["tokens"] = token_counts(weights, tokens, caps)
    return out


def dump(data: dict[str, Any], fmt: str) -> str:
    """`data` as YAML or JSON text."""
    if fmt == "json":
        return json.dumps(data, indent=2) + "\n"
    return yaml.safe_dump(data, sort_keys=False)
