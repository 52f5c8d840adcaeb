"""Held-out run tables: new seeds and shapes of the bench's sweep generator, written as CSVs
in the run-table schema, as a user's released runs would come. No default of admire was
chosen on them; they check that the suite's verdicts are not the suite's alone.

    python benchmarks/heldout_tables.py OUT
    python -m admire bench OUT/h3.csv --target L --objective loss --seeds 10

| table | sizes (target) | domains | cheap sizes |
|---|---|---|---|
| h1 | 70M..7B, five checkpoints each (7B) | 8 | faithful (no drift), costs with 10 % noise |
| h2 | 70M..7B, five checkpoints each (7B) | 10 | drifting optimum, costs with 10 % noise |
| h3 | S, M, L, two checkpoints each (L) | 5 | drifting, and a basin the target lacks |
| h4 | S, M, L, two checkpoints each (L) | 6 | faithful |
| h5 | one 1B size, ten checkpoints (1B) | 7 | the checkpoints only |
"""

from __future__ import annotations

import sys
from pathlib import Path

from admire.bench.problems import FIVE_SIZES, ONE_SIZE, synthetic_pool_problem

TABLES = {
    "h1": lambda: synthetic_pool_problem(
        "h1", 8, seed=101, sweep=FIVE_SIZES, cost_noise=0.1, drift=False
    ),
    "h2": lambda: synthetic_pool_problem("h2", 10, seed=102, sweep=FIVE_SIZES, cost_noise=0.1),
    "h3": lambda: synthetic_pool_problem("h3", 5, seed=103, mislead=1.5),
    "h4": lambda: synthetic_pool_problem("h4", 6, seed=104, drift=False),
    "h5": lambda: synthetic_pool_problem("h5", 7, seed=105, sweep=ONE_SIZE),
}


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for name, make in TABLES.items():
        problem = make()
        problem.make_runner().table.write_csv(out / f"{name}.csv")  # type: ignore[attr-defined]
        target = problem.config.fidelities.target
        print(f"{out / name}.csv: target {target.model_size} at {target.tokens:g} tokens")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "heldout"))
