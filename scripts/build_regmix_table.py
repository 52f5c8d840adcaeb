"""Build admire's packaged RegMix Pile table from the released RegMix CSVs.

Usage: python scripts/build_regmix_table.py [../shared/data/regmix] [admire/data]

The released files come in pairs (mixtures, losses) per model size; this writes them as one
table in admire's run-table schema (see README, "Run tables"): one row per trained model.
Cost follows the accounting ADMIRE-BayesOpt used, parameters relative to the 1B target
(1M : 60M : 1B = 0.001 : 0.06 : 1); `flops` (6 * params * tokens) is kept beside it.
"""

from __future__ import annotations

import csv
import shutil
import sys
from pathlib import Path

SIZES = {"1m": ("1M", 1e6, 1e9), "60m": ("60M", 6e7, 1e9), "1B": ("1B", 1e9, 2.5e10)}
SPLITS = [("train", "1m"), ("test", "1m"), ("test", "60m"), ("test", "1B")]
TARGET_PARAMS = 1e9


def _read(path: Path) -> dict[str, dict[str, str]]:
    with path.open(newline="") as fh:
        return {row["index"]: row for row in csv.DictReader(fh)}


def build(src: Path, dst: Path) -> int:
    rows: list[dict[str, str]] = []
    header: list[str] | None = None
    for split, size in SPLITS:
        label, params, tokens = SIZES[size]
        mixtures = _read(src / f"{split}_mixture_{size}.csv")
        losses = _read(src / f"{split}_pile_loss_{size}.csv")
        if set(mixtures) != set(losses):
            raise SystemExit(f"{split}/{size}: mixture and loss ids differ")
        for run_id in sorted(mixtures, key=int):
            mix, loss = mixtures[run_id], losses[run_id]
            row = {
                "run_id": f"{split}-{size}-{run_id}",
                "model_size": label,
                "model_params": f"{params:.0f}",
                "tokens": f"{tokens:.0f}",
                "cost": repr(params / TARGET_PARAMS),
                "flops": f"{6 * params * tokens:.6g}",
            }
            for key, value in mix.items():
                if key.startswith("train_the_pile_"):
                    row["weight." + key.removeprefix("train_the_pile_")] = value
            for key, value in loss.items():
                if key.startswith("metric/the_pile_"):
                    domain = key.removeprefix("metric/the_pile_").removesuffix("_val_loss")
                    row["metric.loss." + domain] = value
            if header is None:
                header = list(row)
            elif list(row) != header:
                raise SystemExit(f"{split}/{size}: columns differ from the first file")
            rows.append(row)
    assert header is not None
    dst.mkdir(parents=True, exist_ok=True)
    with (dst / "regmix_pile.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=header, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    shutil.copyfile(src / "LICENSE", dst / "LICENSE.regmix")
    return len(rows)


if __name__ == "__main__":
    here = Path(__file__).resolve().parent.parent
    src = Path(sys.argv[1]) if len(sys.argv) > 1 else here.parent / "shared" / "data" / "regmix"
    dst = Path(sys.argv[2]) if len(sys.argv) > 2 else here / "admire" / "data"
    print(f"wrote {build(src, dst)} runs to {dst / 'regmix_pile.csv'}")
