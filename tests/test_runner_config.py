"""The command and Ray runner sections of a study file: what is refused, with which message."""

from __future__ import annotations

from pathlib import Path

import pytest

from admire.config import (
    CommandRunnerConfig,
    ConfigError,
    ProxyRunnerConfig,
    load_config,
    parse_config,
)
from admire.study import Study
from tests.conftest import STUDIES


def _study(runner: dict) -> dict:
    data = load_config(STUDIES / "command-example.yaml").model_dump(mode="json")
    return data | {"runner": runner}


COMMAND = {"kind": "command", "command": "train {tokens}"}


@pytest.mark.parametrize(
    ("runner", "message"),
    [
        ({"kind": "command"}, "runner.command.command: Field required"),
        ({"kind": "command", "command": []}, "the command is empty"),
        ({"kind": "command", "command": "train {token}"}, "unknown placeholder {token}"),
        (COMMAND | {"env": {"A": "{seeds}"}}, "runner.command.env: unknown placeholder {seeds}"),
        (COMMAND | {"results": "out.csv"}, "give a .jsonl or .json file name, or `mlflow`"),
        (COMMAND | {"results": "{out_dir}/m.jsonl"}, "unknown placeholder {out_dir}"),
        (COMMAND | {"metrics": "loss.{dom}"}, "unknown placeholder {dom}"),
        (COMMAND | {"timeout_s": 0}, "runner.command.timeout_s: Input should be greater than 0"),
        (COMMAND | {"gpus": 1}, "runner.command.gpus: unknown field"),
        ({"kind": "ray"}, "runner.ray.trial: Field required"),
        ({"kind": "ray", "trial": {"kind": "replay"}}, "runner.ray.trial: got 'replay'"),
        ({"kind": "ray", "trial": COMMAND, "num_gpus": -1}, "runner.ray.num_gpus: Input should"),
        (
            {"kind": "ray", "trial": COMMAND, "address": "auto", "local_cpus": 2},
            "local_cpus sizes a local Ray",
        ),
        ({"kind": "ray", "trial": COMMAND | {"tokens": 1}}, "runner.ray.trial.command.tokens"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_a_bad_runner_section_is_refused_with_the_field(runner: dict, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(_study(runner))
    assert message in str(err.value)


def test_a_literal_shell_brace_is_left_alone() -> None:
    config = CommandRunnerConfig.model_validate(COMMAND | {"command": "echo ${HOME} {tokens}"})
    assert config.command == "echo ${HOME} {tokens}"


def test_ray_wrapping_proxy_training_gets_the_proxy_checks(tmp_path: Path) -> None:
    proxy = {"kind": "proxy", "sources": {"nowhere": str(tmp_path)}}
    data = _study({"kind": "ray", "trial": proxy})
    data["fidelities"] = {
        "model_sizes": ["0.1M"],
        "tokens": [8192],
        "target": {"model_size": "0.1M", "tokens": 8192},
    }
    with pytest.raises(ConfigError, match=r"runner.sources: \['nowhere'\] are not among"):
        parse_config(data)
    data["runner"]["trial"] = {"kind": "proxy"}
    data["domains"] = ["code", "legal"]
    config = parse_config(data)
    assert isinstance(config.trial_runner, ProxyRunnerConfig)
    assert config.fidelities.model_sizes["0.1M"] > 0  # named sizes resolved as for proxy


def test_command_paths_are_pinned_to_the_study_file(tracking_uri: str) -> None:
    study = Study.create(STUDIES / "command-example.yaml", tracking_uri=tracking_uri)
    assert study.config.runner.cwd == str(STUDIES.parent)
    again = Study.load("command-example", tracking_uri=tracking_uri)
    assert again.runner.config.cwd == str(STUDIES.parent)
