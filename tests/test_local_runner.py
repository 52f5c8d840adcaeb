"""The local runner end to end: real training subprocesses, a real MLflow store."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from admire.config import Fidelity, parse_config
from admire.runners import TrialSpec
from admire.runners.local import LocalRunner
from admire.study import Study
from admire.tracking import COMPLETED, FAILED
from tests.conftest import proxy_config

WEIGHTS = {"code": 0.5, "legal": 0.3, "scripture": 0.2}


def _runner(cache: Path, **runner: object) -> LocalRunner:
    return LocalRunner.from_config(parse_config(proxy_config(cache, **runner)))


def _spec(size: str = "0.1M", tokens: float = 8192) -> TrialSpec:
    return TrialSpec(0, WEIGHTS, Fidelity(model_size=size, tokens=tokens), seed=11)


def test_a_trial_that_raises_fails_with_the_reason(corpus_cache: Path) -> None:
    result = _runner(corpus_cache).run(_spec(size="7M"))
    assert result.failed
    assert "unknown model size '7M'" in result.error
    assert result.cost > 0


def test_a_nan_loss_fails_the_trial(corpus_cache: Path) -> None:
    result = _runner(corpus_cache, lr=1e30).run(_spec())
    assert result.failed
    assert "non-finite" in result.error


def test_a_trial_past_its_timeout_is_killed(corpus_cache: Path) -> None:
    result = _runner(corpus_cache, timeout_s=0.5).run(_spec(tokens=1e7))
    assert result.failed
    assert "timed out after 0.5 s" in result.error
    assert result.cost < 30


def test_a_study_logs_curves_and_goes_on_past_a_failed_trial(
    corpus_cache: Path, tracking_uri: str
) -> None:
    study = Study.create(parse_config(proxy_config(corpus_cache)), tracking_uri=tracking_uri)
    healthy = study.runner.config

    def sabotage_trial_two(record) -> None:  # type: ignore[no-untyped-def]
        # The third trial trains with an absurd learning rate: its loss becomes NaN in a real
        # subprocess; the study must record that and carry on.
        bad = record.spec.index == 1
        study.runner.config = healthy.model_copy(update={"lr": 1e30}) if bad else healthy

    study.optimize(progress=False, callback=sabotage_trial_two)
    trials = study.trials
    assert [t.state for t in trials] == [COMPLETED, COMPLETED, FAILED, COMPLETED]
    assert "non-finite" in trials[2].error

    client = MlflowClient(tracking_uri)
    ok = trials[0]
    tokens = int(ok.spec.fidelity.tokens)
    history = client.get_metric_history(ok.run_id, "loss.code")
    assert sorted(m.step for m in history) == [tokens // 2, tokens]
    objective = client.get_metric_history(ok.run_id, "objective")
    assert max(objective, key=lambda m: m.step).value == ok.objective
    assert [t for t, _ in ok.curve] == [tokens // 2, tokens]
    assert ok.curve[-1][1]["loss.code"] == pytest.approx(ok.metrics["loss.code"], rel=1e-6)
    run = client.get_run(ok.run_id)
    assert run.data.tags["info.domain.code.package"] == "django==5.2.19"
    assert len(run.data.tags["info.domain.legal.sha256"]) == 64
    assert run.data.metrics["tokens_per_s"] > 0
    assert len(client.get_metric_history(ok.run_id, "train_loss")) > 5
    assert client.get_run(trials[2].run_id).info.status == "FAILED"
    assert study.best() is not None
    # a proxy study's parent shows the trials' loss curves
    plots = {a.path for a in client.list_artifacts(study.parent_id, "plots")}
    assert "plots/loss_curves.png" in plots


def test_max_epochs_caps_each_domain_by_its_size(corpus_cache: Path, tracking_uri: str) -> None:
    from admire.config import ConfigError

    config = parse_config(proxy_config(corpus_cache, max_epochs=0.1))
    study = Study.create(config, tracking_uri=tracking_uri)
    sizes = {n: d.train_tokens for n, d in study.runner.corpus.domains.items()}
    for i, name in enumerate(study.mixtures.names):
        assert study.mixtures._hi[i] == pytest.approx(min(1.0, 0.1 * sizes[name] / 16384))
    assert study.mixtures._hi.sum() >= 1.0
    tight = parse_config(proxy_config(corpus_cache, max_epochs=0.01)).model_copy(
        update={"name": "too-small"}
    )
    with pytest.raises(ConfigError, match="max_epochs"):
        Study.create(tight, tracking_uri=tracking_uri)
    assert study.store.find_study("too-small") is None  # refused before anything was written


def test_a_source_s_own_max_epochs_overrides_the_runner_s(
    corpus_cache: Path, tracking_uri: str
) -> None:
    code = {"builtin": "code", "max_epochs": 0.5}  # a scarce source allowed more passes
    data = proxy_config(corpus_cache, max_epochs=0.1, sources={"code": code})
    study = Study.create(parse_config(data), tracking_uri=tracking_uri)
    sizes = {n: d.train_tokens for n, d in study.runner.corpus.domains.items()}
    epochs = {"code": 0.5, "legal": 0.1, "scripture": 0.1}
    for i, name in enumerate(study.mixtures.names):
        want = min(1.0, epochs[name] * sizes[name] / 16384)
        assert study.mixtures._hi[i] == pytest.approx(want)
    # Without a runner-wide cap only that source is capped.
    alone = proxy_config(corpus_cache, sources={"code": {"builtin": "code", "max_epochs": 0.01}})
    alone["name"] = "code-capped"
    study = Study.create(parse_config(alone), tracking_uri=tracking_uri)
    assert study.mixtures._hi[study.mixtures.names.index("code")] < 1.0
    hi = dict(zip(study.mixtures.names, study.mixtures._hi, strict=True))
    assert hi["legal"] == hi["scripture"] == 1.0
