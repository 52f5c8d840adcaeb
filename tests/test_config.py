from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from admire.config import ConfigError, load_config, parse_config
from tests.conftest import REPO, STUDIES, pile_config


def test_shipped_studies_are_valid() -> None:
    for path in STUDIES.glob("*.yaml"):
        cfg = load_config(path)
        assert cfg.name == path.stem
        assert cfg.fidelities.target in cfg.fidelities.grid()


def test_grid_is_sorted_cheapest_first() -> None:
    cfg = parse_config(pile_config())
    assert [f.model_size for f in cfg.fidelities.grid()] == ["1M", "60M", "1B"]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            {"runner": {"kind": "replay", "mode": "grid"}},
            ["runner.replay.mode", "'pool'", "'continuous'"],
        ),
        ({"runner": {"kind": "magic"}}, ["runner", "'replay'"]),
        (
            {"objective": {"metrics": ["loss.*"], "direction": "down"}},
            ["objective.direction", "'minimize'"],
        ),
        (
            {"fidelities": {"target": {"model_size": "2B", "tokens": 1e9}}},
            ["fidelities", "'2B'", "['1M', '60M', '1B']"],
        ),
        ({"budget": {}}, ["budget", "max_trials"]),
        (
            {"domains": [{"name": "a", "min": 0.6}, {"name": "b", "min": 0.6}]},
            ["domains", "mins sum to 1.2"],
        ),
        ({"domains": ["a", "a", "b"]}, ["domains", "['a']"]),
        ({"seeed": 3}, ["seeed", "unknown field"]),
    ],
)
def test_bad_configs_name_the_field_and_the_choices(change: dict, expected: list[str]) -> None:
    data = pile_config()
    for key, value in change.items():
        if key == "fidelities":
            data["fidelities"] = {**data["fidelities"], **value}
        else:
            data[key] = value
    with pytest.raises(ConfigError) as info:
        parse_config(data, "studies/x.yaml")
    message = str(info.value)
    assert message.startswith("studies/x.yaml: invalid study config")
    for part in expected:
        assert part in message, message


def test_objective_patterns_and_aggregates() -> None:
    cfg = parse_config(
        pile_config(
            objective={
                "metrics": ["loss.pile_cc", "loss.git*"],
                "aggregate": "weighted",
                "weights": {"loss.pile_cc": 3, "loss.github": 1},
            }
        )
    )
    names = cfg.objective.resolve(["loss.arxiv", "loss.github", "loss.pile_cc"])
    assert names == ["loss.pile_cc", "loss.github"]
    assert cfg.objective.combine({"loss.pile_cc": 2.0, "loss.github": 6.0}, names) == pytest.approx(
        3.0
    )
    with pytest.raises(ConfigError, match="matches no metric"):
        cfg.objective.resolve(["loss.arxiv"])


def test_missing_file_lists_the_studies(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("name: a\n")
    with pytest.raises(ConfigError, match=r"no such study file \(studies here: a\)"):
        load_config(tmp_path / "b.yaml")


def _cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "admire", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)},
        timeout=300,
    )


def test_cli_bad_config_exits_2_and_writes_nothing(tmp_path: Path) -> None:
    bad = pile_config(budget={"max_trials": -1})
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(bad))
    wrong_domain = pile_config(domains=["arxiv", "web"])
    (tmp_path / "dom.yaml").write_text(yaml.safe_dump(wrong_domain))
    for name, needle in [("bad.yaml", "budget.max_trials"), ("dom.yaml", "unknown ['web']")]:
        proc = _cli(["run", name], tmp_path)
        assert proc.returncode == 2, proc.stderr
        assert needle in proc.stderr
        assert "Traceback" not in proc.stderr
    assert not (tmp_path / "mlruns").exists()
