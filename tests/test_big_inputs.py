"""Inputs at the size of real ones: dataset-length domain names (Tülu's sources run to 67
characters, with an `org/` prefix), 150 domains, paths with spaces."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml
from mlflow.tracking import MlflowClient

from admire.config import DomainSource, ProxyRunnerConfig, parse_config
from admire.proxy.corpus import prepare_corpus
from admire.study import Study
from admire.tracking import CONFIG_ARTIFACT, CONFIG_TAG, SPEC_TAG
from tests.conftest import table_config

# An `org/dataset` name as long as the longest of Tülu 3's SFT sources.
TULU = "allenai/tulu-3-sft-personas-instruction-following-with-constraints1"


def _runs(path: Path, domains: list[str], n: int, seed: int = 0) -> None:
    """A run table of `n` random mixtures whose loss is lowest near the uniform mixture."""
    w = np.random.default_rng(seed).dirichlet(np.ones(len(domains)), size=n)
    loss = 3 + ((w - 1 / len(domains)) ** 2).sum(axis=1)
    lines = ["run_id,model_size,tokens,model_params," + ",".join(f"weight.{d}" for d in domains)]
    lines[0] += ",metric.loss"
    lines += [
        f"r{i},S,1e6,1e5," + ",".join(repr(float(x)) for x in row) + f",{float(y)!r}"
        for i, (row, y) in enumerate(zip(w, loss, strict=True))
    ]
    path.write_text("\n".join(lines) + "\n")


def test_dataset_length_names_and_a_table_path_with_spaces(
    tracking_uri: str, tmp_path: Path
) -> None:
    assert len(TULU) == 67
    domains = [TULU, "Überblick_ünïcode-Daten", "d" * 200]
    folder = tmp_path / "my studies"
    folder.mkdir()
    _runs(folder / "released runs.csv", domains, 12)
    data = table_config("tulu", "released runs.csv", domains, optimizer={"n_initial": 2})
    (folder / "tulu.yaml").write_text(yaml.safe_dump(data, allow_unicode=True))
    study = Study.create(folder / "tulu.yaml", tracking_uri=tracking_uri)
    rec = study.optimize(progress=False)
    assert rec is not None and set(rec.weights) == set(domains)
    trials = Study.load("tulu", tracking_uri=tracking_uri).trials
    assert len(trials) == 3 and all(t.state == "COMPLETED" for t in trials)
    params = MlflowClient(tracking_uri).get_run(trials[0].run_id).data.params
    assert {f"weight.{d}" for d in domains} <= set(params)


def test_150_domains_keep_their_config_as_an_artifact(tracking_uri: str, tmp_path: Path) -> None:
    domains = [f"{TULU[:-4]}-{i:03d}" for i in range(150)]
    _runs(tmp_path / "runs.csv", domains, 4)
    data = table_config("wide", str(tmp_path / "runs.csv"), domains, budget={"max_trials": 2})
    study = Study.create(parse_config(data), tracking_uri=tracking_uri)
    study.optimize(progress=False)
    client = MlflowClient(tracking_uri)
    parent = client.get_run(study.parent_id)
    assert CONFIG_TAG not in parent.data.tags
    assert CONFIG_ARTIFACT in [a.path for a in client.list_artifacts(study.parent_id)]
    again = Study.load("wide", tracking_uri=tracking_uri)
    assert again.config == study.config
    trial = again.trials[1]
    tags = client.get_run(trial.run_id).data.tags
    assert int(tags[f"{SPEC_TAG}.parts"]) >= 2  # the spec spans tags, written in one call
    params = client.get_run(trial.run_id).data.params
    # Params are rounded for reading; the spec keeps every digit.
    assert all(abs(trial.spec.weights[d] - float(params[f"weight.{d}"])) <= 5e-5 for d in domains)


def test_a_slashed_domain_name_is_one_cache_folder(tmp_path: Path) -> None:
    docs = tmp_path / "tulu docs"
    docs.mkdir()
    for i in range(4):
        (docs / f"{i}.txt").write_text(f"Instruction {i}: answer in exactly {i} words.\n" * 20)
    config = ProxyRunnerConfig(
        kind="proxy",
        sources={TULU: DomainSource(path=str(docs))},
        tokenizer={"vocab_size": 300, "sample_mb": 0.01},
        cache_dir=str(tmp_path / "cache"),
    )
    corpus = prepare_corpus(config, [TULU], log=lambda _: None)
    folder = corpus.domains[TULU].folder
    assert folder.parent == tmp_path / "cache" / "domains"
    assert folder.name.startswith("allenai__tulu-3-sft") and corpus.domains[TULU].train_tokens > 0
