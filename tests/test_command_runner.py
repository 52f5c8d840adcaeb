"""The command runner: the user's own trainer in real subprocesses, a real MLflow store."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from admire.cli import main
from admire.config import CommandRunnerConfig, ConfigError, Fidelity, load_config, parse_config
from admire.runners import TrialSpec
from admire.runners.command import CommandRunner, read_results
from admire.study import Study
from admire.tracking import COMPLETED, FAILED
from tests.conftest import STUDIES

DOMAINS = ["prose", "code"]
WEIGHTS = {"prose": 0.75, "code": 0.25}
SPEC = TrialSpec(3, WEIGHTS, Fidelity(model_size="S", tokens=4096), seed=17)


def _runner(tmp_path: Path, script: str, **config: object) -> CommandRunner:
    """A command runner whose command is `python script.py` with `script` as its source."""
    path = tmp_path / "trainer.py"
    path.write_text(script)
    settings = {"kind": "command", "command": ["{python}", str(path)], "timeout_s": 30, **config}
    return CommandRunner(CommandRunnerConfig.model_validate(settings), DOMAINS, {"S": 1000.0})


WRITE_RESULTS = """
import json, os
with open(os.environ["ADMIRE_RESULTS"], "w") as f:
    f.write(json.dumps({"tokens": 2048, "metrics": {"loss.prose": 3.0, "loss.code": 4.0}}) + "\\n")
    f.write(json.dumps({"tokens": 4096, "metrics": {"loss.prose": 2.0, "loss.code": 3.5},
                        "info": {"gpu": "none"}}) + "\\n")
"""


def test_a_trial_reads_metrics_and_curve_from_json_lines(tmp_path: Path) -> None:
    result = _runner(tmp_path, WRITE_RESULTS).run(SPEC)
    assert not result.failed, result.error
    assert result.metrics == {"loss.prose": 2.0, "loss.code": 3.5}
    assert result.curve == [
        (2048, {"loss.prose": 3.0, "loss.code": 4.0}),
        (4096, {"loss.prose": 2.0, "loss.code": 3.5}),
    ]
    assert result.info["gpu"] == "none"
    assert result.cost > 0
    assert result.info["command"].endswith("trainer.py")


def test_the_trial_reaches_the_command_by_placeholders_env_and_json(tmp_path: Path) -> None:
    script = """
import json, os, sys
trial = json.load(open(os.environ["ADMIRE_TRIAL_JSON"]))
info = {"argv": json.dumps(sys.argv[1:]), "trial": json.dumps(trial),
        "env": json.dumps({k: v for k, v in os.environ.items() if k.startswith("ADMIRE_")}),
        "cwd": os.getcwd(), "extra": os.environ["EXTRA"]}
with open(sys.argv[-1], "w") as f:
    json.dump({"metrics": {"loss.prose": 1.0, "loss.code": 2.0}, "info": info}, f)
"""
    runner = _runner(
        tmp_path,
        script,
        command=[
            *["{python}", str(tmp_path / "trainer.py"), "{weights_json}", "{model_size}"],
            *["{params}", "{tokens}", "{seed}", "{index}", "{trial_json}", "{results}"],
        ],
        results="out-{index}.json",
        env={"EXTRA": "seed={seed}"},
        cwd=str(tmp_path),
    )
    result = runner.run(SPEC)
    assert not result.failed, result.error
    argv = json.loads(result.info["argv"])
    assert json.loads(argv[0]) == WEIGHTS
    assert argv[1:6] == ["S", "1000", "4096", "17", "3"]
    assert argv[7].endswith("out-3.json")
    trial = json.loads(result.info["trial"])
    assert trial["weights"] == WEIGHTS
    assert (trial["model_size"], trial["params"], trial["tokens"]) == ("S", 1000.0, 4096)
    assert trial["metrics"] == ["loss.prose", "loss.code"]
    assert trial["mlflow"] is None
    env = json.loads(result.info["env"])
    assert env["ADMIRE_TRIAL_JSON"] == argv[6]
    assert env["ADMIRE_OUT_DIR"] == trial["out_dir"]
    assert (env["ADMIRE_TOKENS"], env["ADMIRE_SEED"]) == ("4096", "17")
    assert json.loads(env["ADMIRE_WEIGHTS_JSON"]) == WEIGHTS
    assert result.info["extra"] == "seed=17"
    assert Path(result.info["cwd"]) == tmp_path
    assert not Path(trial["out_dir"]).exists()  # a temporary folder, removed after the trial


def test_a_shell_command_gets_its_values_quoted(tmp_path: Path) -> None:
    runner = _runner(
        tmp_path,
        WRITE_RESULTS,
        command=f"echo {{weights_json}} > {{out_dir}}/weights.txt && "
        f"{sys.executable} {tmp_path / 'trainer.py'}",
        shell=True,
        out_dir=str(tmp_path / "runs"),
    )
    result = runner.run(SPEC)
    assert not result.failed, result.error
    folder = Path(result.info["out_dir"])
    assert folder == tmp_path / "runs" / "trial-0003"
    assert json.loads((folder / "weights.txt").read_text()) == WEIGHTS


@pytest.mark.parametrize(
    ("script", "error"),
    [
        ("import sys; print('cuda error: out of memory'); sys.exit(3)", "exited with code 3"),
        ("import os, signal; os.kill(os.getpid(), signal.SIGKILL)", "killed by SIGKILL"),
        ("print('trained, forgot to write')", "wrote no results file"),
        (
            "import os; open(os.environ['ADMIRE_RESULTS'], 'w').write('{\"metrics\": {}}\\n{oops')",
            "line 2: not valid JSON",
        ),
        ("import os; open(os.environ['ADMIRE_RESULTS'], 'w').write('')", "is empty"),
        (
            "import os; open(os.environ['ADMIRE_RESULTS'], 'w').write('[1, 2]')",
            "line 1: expected an object with a `metrics` mapping",
        ),
        (
            "import os; open(os.environ['ADMIRE_RESULTS'], 'w').write("
            '\'{"metrics": {"loss.prose": 1.0}}\')',
            "lacks the metrics ['loss.code']",
        ),
        (
            "import os; open(os.environ['ADMIRE_RESULTS'], 'w').write("
            '\'{"metrics": {"loss.prose": NaN, "loss.code": 1}}\')',
            "non-finite",
        ),
        (
            "import os; open(os.environ['ADMIRE_RESULTS'], 'w').write("
            '\'{"metrics": {"loss.prose": "low", "loss.code": 1}}\')',
            "metric 'loss.prose' is not a number",
        ),
    ],
    ids=[
        "exit-code",
        "sigkill",
        "no-file",
        "bad-json",
        "empty",
        "not-object",
        "missing-metric",
        "nan",
        "string-metric",
    ],
)
def test_a_failing_command_fails_the_trial_with_the_reason(
    tmp_path: Path, script: str, error: str
) -> None:
    result = _runner(tmp_path, script).run(SPEC)
    assert result.failed
    assert error in result.error
    assert result.cost > 0


def test_the_tail_of_a_crashed_command_is_in_the_error(tmp_path: Path) -> None:
    result = _runner(tmp_path, "print('loading shards'); raise SystemExit('CUDA OOM')").run(SPEC)
    assert result.failed
    assert "loading shards" in result.error and "CUDA OOM" in result.error


def test_a_command_past_its_timeout_is_killed(tmp_path: Path) -> None:
    result = _runner(tmp_path, "import time; time.sleep(60)", timeout_s=0.5).run(SPEC)
    assert result.failed
    assert "timed out after 0.5 s (runner.timeout_s)" in result.error
    assert result.cost < 30


def test_a_missing_program_fails_the_trial(tmp_path: Path) -> None:
    runner = _runner(tmp_path, "", command="no-such-trainer --tokens {tokens}")
    result = runner.run(SPEC)
    assert result.failed
    assert "could not start the command 'no-such-trainer'" in result.error


def test_a_json_results_file_with_a_curve(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    path.write_text(
        json.dumps(
            {
                "metrics": {"loss.prose": 1.0, "loss.code": 2.0},
                "curve": [{"tokens": 100, "metrics": {"loss.prose": 5.0, "loss.code": 6.0}}],
            }
        )
    )
    evaluations, _ = read_results(path, tokens=400)
    assert evaluations == [
        (100, {"loss.prose": 5.0, "loss.code": 6.0}),
        (400, {"loss.prose": 1.0, "loss.code": 2.0}),
    ]


def test_a_stale_results_file_of_an_interrupted_attempt_is_not_read(tmp_path: Path) -> None:
    runner = _runner(tmp_path, "print('no results this time')", out_dir=str(tmp_path / "runs"))
    stale = tmp_path / "runs" / "trial-0003" / "metrics.jsonl"
    stale.parent.mkdir(parents=True)
    stale.write_text('{"metrics": {"loss.prose": 1.0, "loss.code": 1.0}}\n')
    result = runner.run(SPEC)
    assert result.failed
    assert "wrote no results file" in result.error


def test_metric_names_expand_domains_and_bad_placeholders_are_refused() -> None:
    config = CommandRunnerConfig.model_validate(
        {"kind": "command", "command": "train", "metrics": ["loss.{domain}", "acc"]}
    )
    assert config.metric_names(DOMAINS) == ["loss.prose", "loss.code", "acc"]
    study = load_config(STUDIES / "command-example.yaml").model_dump(mode="json")
    study["runner"]["command"] = "train --w {wieghts_json}"
    with pytest.raises(ConfigError, match=r"runner\.command\.command: unknown placeholder"):
        parse_config(study)
    study["runner"] |= {"command": "train", "results": "metrics.csv"}
    with pytest.raises(ConfigError, match=r"runner\.command\.results: got 'metrics.csv'"):
        parse_config(study)


def test_the_example_study_runs_end_to_end(tracking_uri: str) -> None:
    study = Study.create(STUDIES / "command-example.yaml", tracking_uri=tracking_uri)
    study.optimize(max_trials=2, progress=False)
    trials = study.trials
    assert [t.state for t in trials] == [COMPLETED] * 2
    client = MlflowClient(tracking_uri)
    first = trials[0]
    tokens = int(first.spec.fidelity.tokens)
    history = client.get_metric_history(first.run_id, "loss.prose")
    assert sorted(m.step for m in history) == [tokens // 4, tokens // 2, tokens]
    assert [t for t, _ in first.curve] == [tokens // 4, tokens // 2, tokens]
    tags = client.get_run(first.run_id).data.tags
    assert "examples/mixture_toy.py" in tags["info.command"]
    assert tags["info.rank"] == "2"
    assert study.best() is not None


MLFLOW_TRAINER = """
import json, os, mlflow
trial = json.load(open(os.environ["ADMIRE_TRIAL_JSON"]))
with mlflow.start_run():  # resumes the trial's run: MLFLOW_RUN_ID is set
    for frac, loss in [(0.5, 3.0), (1.0, 2.0)]:
        step = int(trial["tokens"] * frac)
        for d in trial["domains"]:
            mlflow.log_metric(f"loss.{d}", loss + trial["weights"][d], step=step)
    mlflow.set_tag("parent_seen", os.environ["MLFLOW_PARENT_RUN_ID"])
"""


def test_metrics_logged_to_the_handed_mlflow_run(tmp_path: Path, tracking_uri: str) -> None:
    (tmp_path / "trainer.py").write_text(MLFLOW_TRAINER)
    data = load_config(STUDIES / "command-example.yaml").model_dump(mode="json")
    data["runner"] |= {"command": f"{{python}} {tmp_path / 'trainer.py'}", "results": "mlflow"}
    study = Study.create(parse_config(data), tracking_uri=tracking_uri)
    study.optimize(max_trials=1, progress=False)
    (trial,) = study.trials
    assert trial.state == COMPLETED, trial.error
    tokens = int(trial.spec.fidelity.tokens)
    assert trial.metrics["loss.code"] == pytest.approx(2.0 + trial.spec.weights["code"])
    assert [t for t, _ in trial.curve] == [tokens // 2, tokens]
    run = MlflowClient(tracking_uri).get_run(trial.run_id)
    assert run.data.tags["parent_seen"] == study.parent_id


def test_a_study_carries_on_past_a_failing_command(tracking_uri: str, tmp_path: Path) -> None:
    data = load_config(STUDIES / "command-example.yaml").model_dump(mode="json")
    (tmp_path / "trainer.py").write_text("import sys; sys.exit(1)")
    data["runner"] |= {"command": f"{{python}} {tmp_path / 'trainer.py'}"}
    study = Study.create(parse_config(data), tracking_uri=tracking_uri)
    study.optimize(max_trials=2, progress=False)
    assert [t.state for t in study.trials] == [FAILED, FAILED]
    assert "exited with code 1" in study.trials[0].error


def test_cli_refuses_a_bad_command_config_without_writing(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    data = load_config(STUDIES / "command-example.yaml").model_dump(mode="json")
    data["runner"]["command"] = "train {steps}"
    path = tmp_path / "bad.yaml"
    path.write_text(json.dumps(data))
    store = tmp_path / "mlruns"
    assert main(["--tracking-uri", f"sqlite:///{store}/mlflow.db", "run", str(path)]) == 2
    assert "unknown placeholder {steps}" in capsys.readouterr().err
    assert not store.exists()
