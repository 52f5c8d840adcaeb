"""Proxy-runner domains from the user's data as it already is: nanoGPT `.bin` token files,
`.npy` arrays, a Hugging Face dataset saved with `save_to_disk`, and Parquet files.

The files are written here from real text of the embedded corpus; token files are made with a
tokenizer file the test trains, which the study is then given (no tokenising twice)."""

from __future__ import annotations

from pathlib import Path

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from tokenizers import Tokenizer

from admire import Study
from admire.config import ConfigError, parse_config
from admire.proxy.corpus import EOT, check_sources, prepare_corpus, read_domain, train_tokenizer
from tests.conftest import proxy_config


def _docs(builtin: str, n_bytes: int = 40_000) -> list[str]:
    return read_domain(builtin, None, max_bytes=n_bytes).documents


def _ids(tok: Tokenizer, docs: list[str]) -> np.ndarray:
    eot = tok.token_to_id(EOT)
    return np.concatenate([[*e.ids, eot] for e in tok.encode_batch(docs)]).astype(np.uint16)


@pytest.fixture(scope="module")
def user_data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One domain in each format, and the tokenizer file the token files were made with."""
    root = tmp_path_factory.mktemp("user-data")
    texts = [read_domain(d, None, max_bytes=40_000) for d in ("legal", "scripture")]
    tok = train_tokenizer(texts, vocab_size=400, sample_bytes=40_000)
    tok.save(str(root / "tok.json"))

    owt = root / "owt"  # nanoGPT's prepare.py layout: train.bin and val.bin, uint16
    owt.mkdir()
    legal = _ids(tok, texts[0].documents)
    cut = int(legal.size * 0.9)
    legal[:cut].tofile(owt / "train.bin")
    legal[cut:].tofile(owt / "val.bin")
    np.save(root / "verses.npy", _ids(tok, texts[1].documents))

    datasets.Dataset.from_dict({"text": _docs("code")}).save_to_disk(str(root / "hf"))
    # Tokenised with `Dataset.map`, as most pipelines leave it: the text kept beside its ids.
    docs = texts[0].documents[:40]
    tokenised = datasets.Dataset.from_dict({"text": docs}).map(
        lambda row: {"input_ids": [*tok.encode(row["text"]).ids, tok.token_to_id(EOT)]}
    )
    datasets.DatasetDict({"train": tokenised}).save_to_disk(str(root / "hf-ids"))
    ids_pq = root / "ids-pq"
    ids_pq.mkdir()
    rows = [[*e.ids, tok.token_to_id(EOT)] for e in tok.encode_batch(texts[1].documents)]
    pq.write_table(pa.table({"tokens": rows}), ids_pq / "part-0.parquet")
    shards = root / "pq"
    shards.mkdir()
    i18n = _docs("i18n")
    for k, part in enumerate((i18n[::2], i18n[1::2])):
        pq.write_table(pa.table({"content": part}), shards / f"part-{k}.parquet")
    return {
        "tok": root / "tok.json",
        "owt": owt,
        "npy": root / "verses.npy",
        "hf": root / "hf",
        "pq": shards,
        "hf-ids": root / "hf-ids",
        "ids-pq": ids_pq,
    }


def _runner(user_data: dict[str, Path], cache: Path) -> dict:
    return {
        "sources": {
            "owt": str(user_data["owt"]),
            "verses": str(user_data["npy"]),
            "code": str(user_data["hf"]),
            "i18n": {"path": str(user_data["pq"]), "text_field": "content"},
            "legal": {"path": str(user_data["hf-ids"]), "ids_field": "input_ids"},
            "psalms": {"path": str(user_data["ids-pq"]), "ids_field": "tokens"},
        },
        "tokenizer": {"file": str(user_data["tok"])},
        "cache_dir": str(cache),
    }


def test_each_format_is_read_as_it_is(user_data: dict[str, Path], tmp_path: Path) -> None:
    data = proxy_config(tmp_path / "cache", **_runner(user_data, tmp_path / "cache"))
    data["domains"] = ["owt", "verses", "code", "i18n", "legal", "psalms"]
    config = parse_config(data).runner
    corpus = prepare_corpus(config, data["domains"], log=lambda _: None)
    owt, verses = corpus.domains["owt"], corpus.domains["verses"]
    # Token files are memory-mapped where they lie: the very ids, not a re-tokenised copy.
    assert owt.train_part.path == str(user_data["owt"] / "train.bin")
    assert np.array_equal(owt.train(), np.fromfile(user_data["owt"] / "train.bin", np.uint16))
    assert np.array_equal(owt.val(), np.fromfile(user_data["owt"] / "val.bin", np.uint16))
    ids = np.load(user_data["npy"])
    assert verses.train_tokens + verses.val_tokens == ids.size  # the tail is held out
    assert np.array_equal(np.concatenate([verses.train(), verses.val()]), ids)
    assert not any((tmp_path / "cache" / "domains").glob("owt-*"))
    # Text from a saved dataset and from Parquet shards is tokenised once, into the cache.
    for name, source in (("code", user_data["hf"]), ("i18n", user_data["pq"])):
        dom = corpus.domains[name]
        assert dom.folder.parent == tmp_path / "cache" / "domains"
        assert dom.provenance["source"] == str(source) and dom.train_tokens > 1000
    assert corpus.vocab_size == Tokenizer.from_file(str(user_data["tok"])).get_vocab_size()
    assert corpus.manifest()["domain.owt.format"] == "token ids (uint16)"
    # Token-id columns are the very ids, copied once into the cache: never tokenised again.
    hf_ids = datasets.load_from_disk(str(user_data["hf-ids"]))["train"]["input_ids"]
    pq_ids = pq.read_table(user_data["ids-pq"] / "part-0.parquet").column("tokens").to_pylist()
    for name, rows in (("legal", hf_ids), ("psalms", pq_ids)):
        dom = corpus.domains[name]
        assert np.array_equal(np.concatenate([dom.train(), dom.val()]), np.concatenate(rows))
        assert Path(dom.train_part.path).parent == tmp_path / "cache" / "ids"
    copies = sorted((tmp_path / "cache" / "ids").iterdir())
    stamps = [p.stat().st_mtime_ns for p in copies]
    prepare_corpus(config, data["domains"], log=lambda _: None)
    assert [p.stat().st_mtime_ns for p in sorted((tmp_path / "cache" / "ids").iterdir())] == stamps


def test_token_domains_need_only_a_vocabulary_size(
    user_data: dict[str, Path], tmp_path: Path
) -> None:
    config = parse_config(
        proxy_config(
            tmp_path,
            sources={"a": str(user_data["owt"]), "b": str(user_data["npy"])},
            tokenizer={"vocab_size": 400},
        )
        | {"domains": ["a", "b"]}
    ).runner
    corpus = prepare_corpus(config, ["a", "b"], log=lambda _: None)
    assert corpus.vocab_size == 400 and corpus.tokenizer_path is None
    assert not (tmp_path / "tokenizers").exists()  # no tokenizer was trained


def test_a_proxy_trial_trains_on_every_format(
    user_data: dict[str, Path], tmp_path: Path, tracking_uri: str
) -> None:
    data = proxy_config(tmp_path / "cache", **_runner(user_data, tmp_path / "cache"))
    data["domains"] = ["owt", "verses", "code", "i18n", "legal", "psalms"]
    data["budget"] = {"max_trials": 2}
    study = Study.create(parse_config(data), tracking_uri=tracking_uri)
    study.optimize(max_trials=1, progress=False)
    (trial,) = study.trials
    assert trial.state == "COMPLETED", trial.error
    losses = {k: v for k, v in trial.metrics.items() if k.startswith("loss.")}
    assert set(losses) == {f"loss.{d}" for d in data["domains"]}
    assert all(0 < v < 10 for v in losses.values())


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ({"path": "hf-ids", "ids_field": "text"}, "column 'text' holds string, not lists of token"),
        (
            {"path": "hf-ids", "ids_field": "ids"},
            "no column 'ids' (columns: text, input_ids; set ids_field)",
        ),
        (
            {"path": "ids-pq", "ids_field": "input_ids"},
            "no column 'input_ids' (columns: tokens; set ids_field)",
        ),
        ({"path": "owt", "ids_field": "input_ids"}, "is neither"),
        ({"path": "nowhere", "ids_field": "input_ids"}, "nowhere does not exist"),
    ],
)
def test_a_bad_token_id_column_is_refused_before_the_study_starts(
    user_data: dict[str, Path], tmp_path: Path, tracking_uri: str, source: dict, message: str
) -> None:
    source = source | {"path": str(user_data.get(source["path"], tmp_path / source["path"]))}
    data = proxy_config(
        tmp_path / "cache", sources={"legal": source}, tokenizer={"file": str(user_data["tok"])}
    )
    data["domains"] = ["legal", "code"]
    with pytest.raises(ConfigError, match=r"runner\.sources\.legal: ") as err:
        Study.create(parse_config(data), tracking_uri=tracking_uri)
    assert message in str(err.value)
    assert not (tmp_path / "cache" / "ids").exists()


def test_token_ids_outside_the_vocabulary_are_refused(
    user_data: dict[str, Path], tmp_path: Path
) -> None:
    data = proxy_config(
        tmp_path,
        sources={
            "legal": {"path": str(user_data["hf-ids"]), "ids_field": "input_ids"},
            "verses": str(user_data["npy"]),
        },
        tokenizer={"vocab_size": 300},
    )
    data["domains"] = ["legal", "verses"]
    with pytest.raises(
        ConfigError, match=r"sources\.legal: .* is not below the vocabulary size 300"
    ):
        check_sources(parse_config(data).runner, data["domains"])
