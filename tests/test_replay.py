from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from admire.config import ConfigError, Fidelity, parse_config
from admire.runners.base import TrialSpec
from admire.runners.replay import ReplayRunner, RunTable
from tests.conftest import pile_config, table_config


def test_shipped_regmix_table() -> None:
    table = RunTable.load("regmix-pile")
    assert len(table.run_ids) == 768 + 256 + 64
    assert len(table.domains) == 17 and len(table.metrics) == 13
    assert np.abs(table.weights.sum(axis=1) - 1).max() < 1e-12
    assert sorted(set(table.model_size)) == ["1B", "1M", "60M"]
    one_b = table.rows_at(Fidelity(model_size="1B", tokens=2.5e10))
    assert len(one_b) == 64 and np.allclose(table.cost[one_b], 1.0)


def test_a_table_written_reads_back_the_same(tmp_path: Path) -> None:
    """`write_csv` then `read_csv`: the shipped table (no `run` column), and a sweep with its
    checkpoints' `run` column, come back with every field equal."""
    from admire.bench.problems import load_problem

    sweep = load_problem("synth-steps").make_runner().table  # type: ignore[attr-defined]
    for table in (RunTable.load("regmix-pile"), sweep):
        table.write_csv(tmp_path / "t.csv")
        back = RunTable.read_csv(tmp_path / "t.csv", "t")
        assert (back.run_ids, back.domains, back.metrics) == (
            table.run_ids,
            table.domains,
            table.metrics,
        )
        assert back.model_size == table.model_size and back.runs == table.runs
        for field in ("tokens", "weights", "values", "cost"):
            assert np.allclose(getattr(back, field), getattr(table, field), rtol=1e-8), field


def test_pool_runner_returns_the_released_row() -> None:
    cfg = parse_config(pile_config())
    runner = ReplayRunner.from_config(cfg)
    pool = runner.pool()
    assert pool is not None and len(pool) == 1088
    row = next(p for p in pool if p.pool_id == "test-1B-45")
    weights = dict(zip(cfg.domain_names, row.weights, strict=False))
    result = runner.run(TrialSpec(0, weights, row.fidelity, seed=1, pool_id=row.pool_id))
    # the released 1B loss on Pile-CC of RegMix's run 45
    table = RunTable.load("regmix-pile")
    i = table.run_ids.index("test-1B-45")
    assert result.metrics["loss.pile_cc"] == table.values[i, table.metrics.index("loss.pile_cc")]
    assert result.cost == 1.0
    assert runner.reference(weights, row.fidelity) == result.metrics


def test_continuous_runner_answers_any_mixture_deterministically(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    w = rng.dirichlet(np.ones(3), size=40)
    loss = 3 + ((w - [0.2, 0.5, 0.3]) ** 2).sum(axis=1)
    lines = ["model_size,tokens,model_params,weight.a,weight.b,weight.c,metric.loss"]
    lines += [f"S,1e6,1e5,{a},{b},{c},{y}" for (a, b, c), y in zip(w, loss, strict=False)]
    (tmp_path / "runs.csv").write_text("\n".join(lines))
    data = table_config("syn", str(tmp_path / "runs.csv"), ["a", "b", "c"])
    cfg = parse_config(data | {"runner": {**data["runner"], "mode": "continuous"}})
    runner = ReplayRunner.from_config(cfg)
    fid = cfg.fidelities.target
    near = runner.run(TrialSpec(0, {"a": 0.2, "b": 0.5, "c": 0.3}, fid, 0)).metrics["loss"]
    far = runner.run(TrialSpec(1, {"a": 0.9, "b": 0.05, "c": 0.05}, fid, 0)).metrics["loss"]
    again = runner.run(TrialSpec(2, {"a": 0.2, "b": 0.5, "c": 0.3}, fid, 0)).metrics["loss"]
    assert near == again
    assert near < far
    assert runner.run(TrialSpec(3, {"a": 0.2, "b": 0.5, "c": 0.3}, fid, 0)).cost == pytest.approx(
        6e11
    )


def test_bad_tables_are_reported_with_the_line(tmp_path: Path) -> None:
    path = tmp_path / "runs.csv"
    path.write_text("model_size,tokens,weight.a,weight.b,metric.l\nS,1e6,0.5,0.7,1.0\n")
    with pytest.raises(ConfigError, match=r"runs.csv:2: the weight\.\* columns sum to 1\.2"):
        RunTable.load(str(path))
    path.write_text("model_size,weight.a,weight.b,metric.l\nS,0.5,0.5,1.0\n")
    with pytest.raises(ConfigError, match=r"missing \['tokens'\]"):
        RunTable.load(str(path))


def test_fidelity_missing_from_table_is_a_config_error() -> None:
    data = pile_config()
    data["fidelities"]["model_sizes"]["7B"] = 7e9
    data["fidelities"]["pairs"].append(["7B", 1e11])
    with pytest.raises(ConfigError, match=r"\(7B, 1e\+11 tokens\) has no runs"):
        ReplayRunner.from_config(parse_config(data))
