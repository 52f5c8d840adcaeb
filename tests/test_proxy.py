"""Proxy training: sampler, corpus cache, model family, and real training runs."""

from __future__ import annotations

import itertools
import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from admire.config import ConfigError, DomainSource, ProxyRunnerConfig, parse_config
from admire.proxy.corpus import prepare_corpus, read_domain
from admire.proxy.default_corpus import BUILTIN_DOMAINS, package_root
from admire.proxy.model import GPT
from admire.proxy.sampler import MixtureSampler
from admire.proxy.sizes import MODEL_SIZES
from admire.proxy.train import TrainJob, lr_at, train
from tests.conftest import proxy_config


@settings(max_examples=40, deadline=None)
@given(
    raw=st.lists(st.floats(0.0, 1.0), min_size=2, max_size=8).filter(lambda w: sum(w) > 0.05),
    batch=st.integers(1, 16),
    steps=st.integers(1, 60),
)
def test_sampler_tracks_the_proportions_at_every_step(
    raw: list[float], batch: int, steps: int
) -> None:
    weights = {f"d{i}": w / sum(raw) for i, w in enumerate(raw)}
    arrays = {n: np.arange(200, dtype=np.uint16) for n in weights}
    sampler = MixtureSampler(arrays, weights, batch, 8, seed=1)
    drawn = np.zeros(len(sampler.names))
    for step in range(1, steps + 1):
        counts = sampler.allocate()
        assert counts.sum() == batch
        drawn += counts
        target = sampler.weights * batch * step
        assert np.all(np.abs(drawn - target) < 1.0 + 1e-9)
    zero = [n for n, w in weights.items() if w == 0.0]
    assert not set(zero) & set(sampler.counts())


def test_sampler_is_deterministic_given_the_seed() -> None:
    arrays = {"a": np.arange(1000, dtype=np.uint16), "b": np.arange(1000, 2000, dtype=np.uint16)}
    w = {"a": 0.3, "b": 0.7}
    one, two, other = (MixtureSampler(arrays, w, 4, 16, seed=s) for s in (5, 5, 6))
    for _ in range(5):
        x, y, z = one.batch(), two.batch(), other.batch()
        assert np.array_equal(x, y)
    assert not np.array_equal(x, z)
    assert x.shape == (4, 17)


def test_named_sizes_span_the_range_and_match_the_model() -> None:
    params = [s.non_embedding_params for s in MODEL_SIZES.values()]
    assert params == sorted(params)
    assert params[0] < 2e5 and params[-1] > 1e8
    for name in ["0.1M", "0.5M", "1M", "3M"]:
        model = GPT(MODEL_SIZES[name], vocab_size=300, seq_len=32)
        assert model.non_embedding_params() == MODEL_SIZES[name].non_embedding_params
        # Tied: the output head adds no parameters beyond the embedding.
        total = sum(p.numel() for p in model.parameters())
        assert total == MODEL_SIZES[name].non_embedding_params + 300 * MODEL_SIZES[name].d_model


def test_schedule_warms_up_and_ends_decayed() -> None:
    lrs = [lr_at(s, 100, 1e-3, 10, 0.1) for s in range(100)]
    assert lrs[0] == pytest.approx(1e-4) and max(lrs) == pytest.approx(1e-3)
    assert lrs[-1] == pytest.approx(1e-4, rel=0.01)
    assert all(a >= b for a, b in itertools.pairwise(lrs[10:]))


def test_embedded_domains_are_real_text_from_pinned_packages() -> None:
    for name, dom in BUILTIN_DOMAINS.items():
        assert package_root(dom).is_dir()
        text = read_domain(name, None, max_bytes=50_000)
        assert len(text.documents) >= 2 and len(text.sha256) == 64
        assert text.provenance["package"] == f"{dom.package}=={dom.version}"
    kjv = read_domain("scripture", None, max_bytes=10**9).documents
    assert any("In the beginning God created the heaven and the earth" in d for d in kjv)


def _folder_domain(root: Path) -> Path:
    """A user's folder of .txt files: real licence texts copied from the spdx package."""
    folder = root / "licences"
    folder.mkdir()
    data = package_root(BUILTIN_DOMAINS["legal"]) / "data"
    for src in sorted(data.glob("*.txt"))[:40]:
        shutil.copy(src, folder / src.name)
    return folder


def test_token_cache_is_reused_and_invalidated_by_a_changed_file(tmp_path: Path) -> None:
    folder = _folder_domain(tmp_path)
    jsonl = tmp_path / "verses.jsonl"
    kjv = read_domain("scripture", None, max_bytes=60_000).documents
    jsonl.write_text("".join(json.dumps({"body": d}) + "\n" for d in kjv))
    config = ProxyRunnerConfig(
        kind="proxy",
        sources={
            "licences": DomainSource(path=str(folder)),
            "verses": DomainSource(path=str(jsonl), text_field="body"),
        },
        tokenizer={"vocab_size": 400, "sample_mb": 0.05},
        cache_dir=str(tmp_path / "cache"),
    )
    first = prepare_corpus(config, ["licences", "verses"], log=lambda _: None)
    lic = first.domains["licences"]
    assert lic.train_tokens > 1000 and lic.val_tokens > 0
    stamp = (lic.folder / "train.bin").stat().st_mtime_ns
    assert lic.train().max() < first.vocab_size

    second = prepare_corpus(config, ["licences", "verses"], log=lambda _: None)
    assert second.domains["licences"].folder == lic.folder
    assert (lic.folder / "train.bin").stat().st_mtime_ns == stamp  # reused, not rewritten
    assert second.tokenizer_sha256 == first.tokenizer_sha256

    victim = sorted(folder.glob("*.txt"))[0]
    victim.write_text(victim.read_text() + "\nAn amendment.\n")
    third = prepare_corpus(config, ["licences", "verses"], log=lambda _: None)
    assert third.domains["licences"].folder != lic.folder
    assert third.domains["licences"].sha256 != lic.sha256


def test_bad_domain_sources_are_clear_errors(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ConfigError, match=r"no \.txt or \.md"):
        read_domain("x", DomainSource(path=str(empty)), 1000)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "fine"}\n{"other": 1}\n')
    with pytest.raises(ConfigError, match=r"bad\.jsonl:2: no string field 'text'"):
        read_domain("x", DomainSource(path=str(bad)), 1000)
    cfg = proxy_config(tmp_path, sources={"code": str(tmp_path / "nowhere")})
    cfg["domains"] = ["code", "web"]
    with pytest.raises(ConfigError, match="domain 'web' has no source"):
        parse_config(cfg)
    cfg = proxy_config(tmp_path)
    cfg["fidelities"]["model_sizes"] = ["0.1M", "7M"]
    with pytest.raises(ConfigError, match=r"\['7M'\] are not model sizes"):
        parse_config(cfg)


@pytest.fixture(scope="module")
def small_corpus(corpus_cache: Path):  # type: ignore[no-untyped-def]
    config = parse_config(proxy_config(corpus_cache)).runner
    return prepare_corpus(config, ["code", "legal", "scripture"], log=lambda _: None)


def _job(corpus, weights: dict[str, float], seed: int, tokens: int = 49_152) -> TrainJob:  # type: ignore[no-untyped-def]
    return TrainJob(
        weights=weights,
        model_size="0.1M",
        tokens=tokens,
        seed=seed,
        domains={n: d.job_spec() for n, d in corpus.domains.items()},
        vocab_size=corpus.vocab_size,
        seq_len=64,
        batch_size=2,
        eval_at=[0.25, 0.5, 1.0],
        eval_tokens=2048,
    )


def test_the_mixture_matters_more_than_the_seed(small_corpus) -> None:  # type: ignore[no-untyped-def]
    """Two clearly different mixtures differ on their domains by more than seeds do."""
    code_heavy = {"code": 0.8, "legal": 0.1, "scripture": 0.1}
    scripture_heavy = {"code": 0.1, "legal": 0.1, "scripture": 0.8}
    runs = {
        (name, seed): train(_job(small_corpus, w, seed), log=lambda _: None).metrics
        for name, w in [("code", code_heavy), ("scripture", scripture_heavy)]
        for seed in (1, 2)
    }
    for dom in ("code", "scripture"):
        key = f"loss.{dom}"
        spread = max(
            abs(runs[("code", 1)][key] - runs[("code", 2)][key]),
            abs(runs[("scripture", 1)][key] - runs[("scripture", 2)][key]),
        )
        gap = (
            abs(
                (runs[("code", 1)][key] + runs[("code", 2)][key])
                - (runs[("scripture", 1)][key] + runs[("scripture", 2)][key])
            )
            / 2
        )
        print(f"{key}: mixture gap {gap:.3f} nats, seed spread {spread:.3f}")
        assert gap > 2 * spread
    assert runs[("code", 1)]["loss.code"] < runs[("scripture", 1)]["loss.code"]
    assert runs[("scripture", 1)]["loss.scripture"] < runs[("code", 1)]["loss.scripture"]


def test_a_run_records_its_curve_and_speed(small_corpus) -> None:  # type: ignore[no-untyped-def]
    w = {"code": 0.5, "legal": 0.25, "scripture": 0.25}
    one = train(_job(small_corpus, w, 7), log=lambda _: None)
    again = train(_job(small_corpus, w, 7), log=lambda _: None)
    assert not one.failed
    assert [p["tokens"] for p in one.curve] == [12288, 24576, 49152]
    assert one.curve[-1]["metrics"] == {k: one.metrics[k] for k in one.curve[-1]["metrics"]}
    assert one.metrics["tokens_per_s"] > 0 and one.metrics["flops"] > 0
    assert 0 < one.metrics["first_step_s"] < one.metrics["wall_s"]
    assert json.loads(one.info["sequences_per_domain"]) == {
        "code": 384,
        "legal": 192,
        "scripture": 192,
    }
    assert one.curve == again.curve  # the seed makes the run reproducible
    means = [sum(p["metrics"].values()) for p in one.curve]
    assert means[-1] < means[0]
    assert all(math.isfinite(v) for v in one.metrics.values())


def test_a_trial_process_imports_neither_mlflow_nor_botorch() -> None:
    """`python -m admire.proxy.train` runs once per trial: the study layer stays out of it."""
    code = (
        "import sys, admire.proxy.train; "
        "print(sorted(m for m in ('mlflow', 'botorch', 'admire.study') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    out = subprocess.run(
        [sys.executable, "-c", "from admire import Study; print(Study.__module__)"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == "admire.study"
