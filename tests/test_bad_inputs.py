"""The bad-input catalogue: every malformed study file, domain source, run table, command-line
argument or tracking URI gets one line on stderr naming the problem and the field, exit code 2,
no traceback, and leaves the tracking store and the corpus cache as they were.

Cases run through `admire.cli.main` in-process (the same code path as `python -m admire`); a
few also run as real subprocesses to prove nothing escapes as a traceback.

Not here yet: the command runner's output (a missing result file, malformed JSON, missing
metrics); it is being built on another branch and its cases belong with it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import yaml

from admire.cli import main
from tests.conftest import REPO, pile_config, proxy_config, table_config

LATIN1 = "Données de l'été".encode("latin-1")


@dataclass(frozen=True)
class Case:
    """A malformed input: `make` writes it under a folder and returns the CLI arguments;
    stderr must contain every string of `expect` (the field and the problem)."""

    name: str
    make: Callable[[Path], list[str]]
    expect: tuple[str, ...]


def _study(folder: Path, data: object) -> list[str]:
    path = folder / "study.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return ["run", str(path)]


def _raw(text: str | bytes) -> Callable[[Path], list[str]]:
    def make(folder: Path) -> list[str]:
        path = folder / "study.yaml"
        if isinstance(text, bytes):
            path.write_bytes(text)
        else:
            path.write_text(text)
        return ["run", str(path)]

    return make


def _pile(**overrides: object) -> Callable[[Path], list[str]]:
    return lambda folder: _study(folder, pile_config(**overrides))


def _fidelities(**changes: object) -> Callable[[Path], list[str]]:
    def make(folder: Path) -> list[str]:
        data = pile_config()
        data["fidelities"] = {**data["fidelities"], **changes}
        return _study(folder, data)

    return make


PILE_YAML = (REPO / "studies" / "pile-replay.yaml").read_text()

STUDY_FILES = [
    Case("empty-file", _raw(""), ("study.yaml", "empty")),
    Case("a-list-not-a-mapping", _raw("- a\n- b\n"), ("expected a mapping", "list")),
    Case("a-scalar-not-a-mapping", _raw("just words\n"), ("expected a mapping", "str")),
    Case("yaml-syntax", _raw("name: [pile\n"), ("not valid YAML", "line 2")),
    Case("latin-1-bytes", _raw(b"description: " + LATIN1 + b"\n"), ("not UTF-8", "line 1")),
    Case("duplicate-key", _raw(PILE_YAML + "seed: 3\n"), ("duplicate key 'seed'",)),
    Case("missing-file", lambda folder: ["run", str(folder / "nope.yaml")], ("no such study",)),
    Case("unknown-field", _pile(seeed=3), ("seeed", "unknown field")),
    Case("unknown-nested-field", _pile(budget={"max_trails": 3}), ("max_trails", "unknown")),
    Case("bad-study-name", _pile(name="my study!"), ("name", "pattern")),
    Case("seed-not-a-number", _pile(seed="abc"), ("seed", "integer")),
    Case("seed-negative", _pile(seed=-1), ("seed", "greater than or equal to 0")),
    Case("max-trials-boolean", _pile(budget={"max_trials": True}), ("max_trials", "boolean")),
    Case("max-trials-fraction", _pile(budget={"max_trials": 2.5}), ("max_trials", "integer")),
    Case("max-trials-negative", _pile(budget={"max_trials": -1}), ("max_trials", "greater")),
    Case("max-cost-negative", _pile(budget={"max_cost": -3.0}), ("max_cost", "greater")),
    Case(
        "budget-without-limits",
        _pile(budget={"max_trials": None, "max_cost": None}),
        ("budget", "max_trials, max_cost"),
    ),
    Case(
        "n-initial-over-max-trials",
        _pile(budget={"max_trials": 5}, optimizer={"n_initial": 8}),
        ("optimizer.n_initial (8)", "budget.max_trials (5)"),
    ),
    Case("n-initial-too-small", _pile(optimizer={"n_initial": 1}), ("optimizer.n_initial",)),
    Case(
        "noise-floor-without-scaling",
        _pile(optimizer={"noise_floor": True, "fidelity_scaling": False}),
        ("optimizer", "noise_floor", "fidelity_scaling: true"),
    ),
    Case("domains-not-a-list", _pile(domains="arxiv"), ("domains", "list")),
    Case("one-domain", _pile(domains=["arxiv"]), ("domains", "at least 2")),
    Case("domain-twice", _pile(domains=["arxiv", "arxiv", "github"]), ("domains", "['arxiv']")),
    Case("domain-name-with-space", _pile(domains=["a b", "c"]), ("domains.0.name", "'a b'")),
    Case("domain-name-dotdot", _pile(domains=["../etc", "c"]), ("domains.0.name", "'../etc'")),
    Case("domain-name-201-chars", _pile(domains=["d" * 201, "c"]), ("domains.0.name", "200")),
    Case(
        "domain-min-over-max",
        _pile(domains=[{"name": "arxiv", "min": 0.6, "max": 0.2}, "github"]),
        ("domains.0", "min (0.6) is larger than max (0.2)"),
    ),
    Case(
        "bounds-empty-the-simplex",
        _pile(domains=[{"name": "arxiv", "min": 0.7}, {"name": "github", "min": 0.5}]),
        ("domains", "mins sum to 1.2"),
    ),
    Case(
        "maxes-below-one",
        _pile(domains=[{"name": "arxiv", "max": 0.3}, {"name": "github", "max": 0.3}]),
        ("domains", "maxes to 0.6"),
    ),
    Case(
        "target-not-a-fidelity",
        _fidelities(target={"model_size": "60M", "tokens": 2.5e10}),
        ("fidelities", "target (60M, 2.5e+10 tokens)"),
    ),
    Case(
        "target-unknown-size",
        _fidelities(target={"model_size": "7B", "tokens": 1e9}),
        ("fidelities", "'7B'"),
    ),
    Case("pairs-entry-short", _fidelities(pairs=[["1M"]]), ("fidelities.pairs", "pairs[0]")),
    Case("pairs-entry-a-string", _fidelities(pairs=["1M"]), ("fidelities.pairs.0",)),
    Case(
        "pairs-tokens-negative",
        _fidelities(pairs=[["1M", -5]]),
        ("fidelities.pairs.0.tokens", "greater than 0"),
    ),
    Case("tokens-boolean", _fidelities(tokens=[True]), ("fidelities.tokens.0", "boolean")),
    Case(
        "direction-unknown",
        _pile(objective={"metrics": "loss.*", "direction": "down"}),
        ("objective.direction", "'minimize'"),
    ),
    Case(
        "weighted-without-weights",
        _pile(objective={"metrics": "loss.*", "aggregate": "weighted"}),
        ("objective", "weights"),
    ),
    Case(
        "metric-matches-nothing",
        _pile(objective={"metrics": "accuracy.*"}),
        ("objective.metrics", "'accuracy.*' matches no metric"),
    ),
    Case("runner-kind-unknown", _pile(runner={"kind": "magic"}), ("runner", "'replay'")),
    Case(
        "max-retries-negative",
        _pile(runner={"kind": "replay", "max_retries": -1}),
        ("runner.replay.max_retries", "greater than or equal to 0"),
    ),
    Case(
        "max-retries-boolean",
        _pile(runner={"kind": "replay", "max_retries": True}),
        ("runner.replay.max_retries", "boolean"),
    ),
    Case(
        "retry-new-seed-not-a-boolean",
        _pile(runner={"kind": "replay", "retry_new_seed": "sometimes"}),
        ("runner.replay.retry_new_seed", "boolean"),
    ),
    Case(
        "max-failure-rate-zero",
        _pile(budget={"max_failure_rate": 0}),
        ("budget.max_failure_rate", "greater than 0"),
    ),
    Case(
        "max-failure-rate-over-one",
        _pile(budget={"max_failure_rate": 1.5}),
        ("budget.max_failure_rate", "less than or equal to 1"),
    ),
    Case(
        "max-consecutive-failures-zero",
        _pile(budget={"max_consecutive_failures": 0}),
        ("budget.max_consecutive_failures", "greater than or equal to 1"),
    ),
    Case(
        "replay-mode-unknown",
        _pile(runner={"kind": "replay", "mode": "grid"}),
        ("runner.replay.mode", "'pool'"),
    ),
]


def _table(lines: list[str] | bytes, table: str = "runs.csv") -> Callable[[Path], list[str]]:
    """A replay study over domains a, b; `lines` are written to runs.csv, the study reads
    `table`."""

    def make(folder: Path) -> list[str]:
        path = folder / "runs.csv"
        if isinstance(lines, bytes):
            path.write_bytes(lines)
        else:
            path.write_text("\n".join(lines) + "\n")
        data = table_config("tab", table, ["a", "b"], optimizer={"n_initial": 2})
        return _study(folder, data)

    return make


HEADER = "run_id,model_size,tokens,model_params,weight.a,weight.b,metric.loss"
GOOD = ["r1,S,1e6,1e5,0.5,0.5,3.0", "r2,S,1e6,1e5,0.2,0.8,3.1", "r3,S,1e6,1e5,0.9,0.1,3.2"]

RUN_TABLES = [
    Case("table-missing", _table(GOOD, table="gone.csv"), ("runner.table", "gone.csv", "neither")),
    Case("table-empty", _table(b""), ("runs.csv", "empty")),
    Case("table-binary", _table(b"PAR1\x00\x15\x04\x00\x00binary"), ("runs.csv", "not a CSV")),
    Case("table-latin-1", _table(HEADER.encode() + b"\n" + LATIN1), ("runs.csv", "not a UTF-8")),
    Case(
        "table-missing-column",
        _table(["model_size,weight.a,weight.b,metric.loss", "S,0.5,0.5,3.0"]),
        ("runs.csv", "missing ['tokens']"),
    ),
    Case("table-header-only", _table([HEADER]), ("runs.csv", "at least one row")),
    Case(
        "table-nan-metric",
        _table([HEADER, *GOOD, "r4,S,1e6,1e5,0.5,0.5,nan"]),
        ("runs.csv:5", "metric.loss", "not finite"),
    ),
    Case(
        "table-inf-metric",
        _table([HEADER, "r0,S,1e6,1e5,0.5,0.5,inf", *GOOD]),
        ("runs.csv:2", "metric.loss", "not finite"),
    ),
    Case(
        "table-text-in-number",
        _table([HEADER, "r0,S,lots,1e5,0.5,0.5,3.0"]),
        ("runs.csv:2", "column tokens", "not a number"),
    ),
    Case(
        "table-negative-weight",
        _table([HEADER, "r0,S,1e6,1e5,-0.2,1.2,3.0"]),
        ("runs.csv:2", "weight.a", "negative"),
    ),
    Case(
        "table-row-not-summing-to-1",
        _table([HEADER, *GOOD, "r4,S,1e6,1e5,0.5,0.2,3.0"]),
        ("runs.csv:5", "weight.*", "sum to 0.7"),
    ),
    Case(
        "table-duplicated-run-id",
        _table([HEADER, *GOOD, "r2,S,1e6,1e5,0.4,0.6,3.0"]),
        ("runs.csv", "run_id", "['r2']"),
    ),
    Case(
        "table-duplicated-column",
        _table([HEADER + ",weight.a", "r1,S,1e6,1e5,0.5,0.5,3.0,0.5"]),
        ("runs.csv", "['weight.a']", "more than once"),
    ),
    Case(
        "table-other-domains",
        _table([HEADER.replace("weight.b", "weight.c"), *GOOD]),
        ("domains", "unknown ['b']"),
    ),
]


def _proxy(folder: Path, **runner: object) -> list[str]:
    """A proxy study over the builtin `code` domain and a user domain `web`."""
    data = proxy_config(folder, **runner)
    del data["runner"]["cache_dir"]  # the cache is $ADMIRE_CACHE, watched by the test
    data["domains"] = ["code", "web"]
    return _study(folder, data)


def _source(build: Callable[[Path], object], **fields: object) -> Callable[[Path], list[str]]:
    """`build` makes the `web` domain's data under the folder and returns its path."""

    def make(folder: Path) -> list[str]:
        path = build(folder)
        return _proxy(folder, sources={"web": {"path": str(path), **fields}})

    return make


def _files(**files: bytes) -> Callable[[Path], Path]:
    def build(folder: Path) -> Path:
        web = folder / "web"
        web.mkdir()
        for name, data in files.items():
            (web / name.replace("_", ".")).write_bytes(data)
        return web

    return build


def _jsonl(*lines: bytes) -> Callable[[Path], Path]:
    def build(folder: Path) -> Path:
        path = folder / "web.jsonl"
        path.write_bytes(b"\n".join(lines) + b"\n")
        return path

    return build


def _json_file(folder: Path) -> Path:
    path = folder / "web.json"
    path.write_text(json.dumps([{"text": "a"}, {"text": "b"}]))
    return path


DOC = b"A page of ordinary text about the web.\n" * 5

DOMAINS = [
    Case(
        "source-missing-path",
        _source(lambda folder: folder / "nowhere"),
        ("runner.sources.web", "does not exist"),
    ),
    Case("source-empty-folder", _source(_files()), ("runner.sources.web", "no .txt or .md")),
    Case(
        "source-only-binary-files",
        _source(_files(a_bin=b"\x00\x01\x02", b_png=b"\x89PNG\r\n")),
        ("runner.sources.web", "no .txt or .md", "2 other files"),
    ),
    Case(
        "source-binary-txt",
        _source(_files(a_txt=DOC, b_txt=b"\x7fELF\x02\x01\x00\x00\x00")),
        ("runner.sources.web", "b.txt", "binary"),
    ),
    Case(
        "source-latin-1-text",
        _source(_files(a_txt=DOC, b_txt=LATIN1)),
        ("runner.sources.web", "b.txt", "not UTF-8"),
    ),
    Case("source-json-file", _source(_json_file), ("runner.sources.web", ".json file")),
    Case(
        "source-jsonl-without-text-field",
        _source(_jsonl(b'{"text": "one"}', b'{"body": "two"}')),
        ("runner.sources.web", "web.jsonl:2", "no string field 'text'"),
    ),
    Case(
        "source-jsonl-other-text-field",
        _source(_jsonl(b'{"text": "one"}', b'{"text": "two"}'), text_field="content"),
        ("runner.sources.web", "web.jsonl:1", "'content'"),
    ),
    Case(
        "source-jsonl-invalid-line",
        _source(_jsonl(b'{"text": "one"}', b'{"text": "two"')),
        ("runner.sources.web", "web.jsonl:2", "not valid JSON"),
    ),
    Case(
        "source-jsonl-latin-1",
        _source(_jsonl(b'{"text": "one"}', b'{"text": "' + LATIN1 + b'"}')),
        ("runner.sources.web", "web.jsonl:2", "not UTF-8"),
    ),
    Case(
        "source-one-document",
        _source(_files(a_txt=DOC)),
        ("runner.sources.web", "found 1 document"),
    ),
    Case(
        "source-for-unknown-domain",
        lambda folder: _proxy(folder, sources={"web": str(folder), "mail": str(folder)}),
        ("runner.sources", "['mail']"),
    ),
    Case(
        "domain-without-source",
        lambda folder: _proxy(folder),
        ("domain 'web' has no source", "runner.sources.web"),
    ),
    Case(
        "tokenizer-file-missing",
        lambda folder: _proxy(
            folder,
            sources={"web": str(_files(a_txt=DOC, b_txt=DOC)(folder))},
            tokenizer={"file": str(folder / "tok.json")},
        ),
        ("runner.tokenizer.file", "does not exist"),
    ),
]


def _resume(*args: str) -> Callable[[Path], list[str]]:
    return lambda folder: ["resume", "pile-replay", *args]


def _uri(uri: str) -> Callable[[Path], list[str]]:
    return lambda folder: ["status", "pile-replay", "--tracking-uri", uri]


COMMAND_LINE = [
    Case("resume-negative-max-trials", _resume("--max-trials", "-3"), ("--max-trials", "-3")),
    Case("resume-zero-max-trials", _resume("--max-trials", "0"), ("--max-trials", "positive")),
    Case("resume-negative-max-cost", _resume("--max-cost", "-1.5"), ("--max-cost", "-1.5")),
    Case("resume-text-max-cost", _resume("--max-cost", "lots"), ("--max-cost", "'lots'")),
    Case("resume-unknown-study", _resume(), ("no tracking store", "--tracking-uri")),
    Case(
        "tracking-uri-driver-missing",
        _uri("mssql://user:pw@127.0.0.1:1/db"),
        ("tracking URI", "driver", "not installed"),
    ),
    Case("tracking-uri-unknown-scheme", _uri("nosuch://host/db"), ("tracking URI", "nosuch")),
    Case(
        "tracking-server-not-answering",
        _uri("http://127.0.0.1:9"),
        ("tracking URI", "does not answer"),
    ),
]


def _ids(folder: Path, name: str, ids: np.ndarray) -> Path:
    path = folder / name
    if name.endswith(".npy"):
        np.save(path, ids)
    else:
        ids.tofile(path)
    return path


def _tokens(build: Callable[[Path], Path]) -> Callable[[Path], list[str]]:
    """A study of two pre-tokenised domains (vocabulary 512): a good `code` and `build`'s `web`."""

    def make(folder: Path) -> list[str]:
        code = _ids(folder, "code.npy", (np.arange(4000) % 500).astype(np.uint16))
        sources = {"code": str(code), "web": str(build(folder))}
        return _proxy(folder, sources=sources, tokenizer={"vocab_size": 512})

    return make


GOOD_IDS = (np.arange(4000) % 500).astype(np.uint16)


def _hf(data: object) -> Callable[[Path], Path]:
    def build(folder: Path) -> Path:
        data.save_to_disk(str(folder / "web"))  # type: ignore[attr-defined]
        return folder / "web"

    return build


def _parquet(folder: Path) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"body": ["one page", "another page"]}), folder / "web.parquet")
    return folder / "web.parquet"


def _hf_data() -> tuple[object, object]:
    import datasets

    datasets.disable_progress_bars()  # saving the test's data would print to stderr
    one = datasets.Dataset.from_dict({"body": ["one page", "another page"]})
    return one, datasets.DatasetDict({"train": one, "test": one})


HF_ONE, HF_DICT = _hf_data()

FORMATS = [
    Case(
        "tokens-id-above-vocabulary",
        _tokens(lambda f: _ids(f, "web.bin", np.arange(4000, dtype=np.uint16) % 600)),
        ("runner.sources.web", "web.bin", "token id 599", "vocabulary size 512"),
    ),
    Case(
        "tokens-bin-odd-bytes",
        _tokens(lambda f: _ids(f, "web.bin", np.zeros(4001, dtype=np.uint8))),
        ("runner.sources.web", "4001 bytes", "uint16"),
    ),
    Case(
        "tokens-npy-2d",
        _tokens(lambda f: _ids(f, "web.npy", GOOD_IDS.reshape(40, 100))),
        ("runner.sources.web", "a 2-D array", "1-D array of integers"),
    ),
    Case(
        "tokens-npy-floats",
        _tokens(lambda f: _ids(f, "web.npy", GOOD_IDS.astype(np.float32))),
        ("runner.sources.web", "float32", "integers"),
    ),
    Case(
        "tokens-folder-without-val",
        _tokens(lambda f: _ids(f, "train.bin", GOOD_IDS).parent),
        ("runner.sources.web", "no val.bin"),
    ),
    Case(
        "tokens-too-few",
        _tokens(lambda f: _ids(f, "web.bin", GOOD_IDS[:100])),
        ("runner.sources.web", "fewer than one window"),
    ),
    Case(
        "tokens-and-text-without-tokenizer-file",
        _source(lambda f: _ids(f, "web.npy", GOOD_IDS)),
        ("runner.tokenizer.file", "['web'] are token ids", "['code'] are text"),
    ),
    Case(
        "parquet-without-text-column",
        _source(_parquet),
        ("runner.sources.web", "web.parquet", "no column 'text'", "body"),
    ),
    Case(
        "parquet-not-parquet",
        _source(lambda f: _ids(f, "web.parquet", GOOD_IDS)),
        ("runner.sources.web", "not a Parquet file"),
    ),
    Case(
        "hf-dataset-without-text-column",
        _source(_hf(HF_ONE)),
        ("runner.sources.web", "no column 'text'", "body"),
    ),
    Case(
        "hf-datasetdict-without-split",
        _source(_hf(HF_DICT), text_field="body"),
        ("runner.sources.web", "splits ['train', 'test']", "set `split`"),
    ),
]
CATALOGUE = STUDY_FILES + RUN_TABLES + DOMAINS + FORMATS + COMMAND_LINE


@pytest.fixture
def places(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path, Path]:
    """(input folder, tracking store folder, corpus cache), the last two empty."""
    inputs, store, cache = tmp_path / "in", tmp_path / "mlruns", tmp_path / "cache"
    for folder in (inputs, store, cache):
        folder.mkdir()
    monkeypatch.setenv("ADMIRE_CACHE", str(cache))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{store / 'mlflow.db'}")
    return inputs, store, cache


def _files_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file())


def test_catalogue_is_large_and_uniquely_named() -> None:
    names = [c.name for c in CATALOGUE]
    assert len(names) >= 40 and len(set(names)) == len(names)


@pytest.mark.parametrize("case", CATALOGUE, ids=[f"bad_input-{c.name}" for c in CATALOGUE])
def test_bad_input(
    case: Case, places: tuple[Path, Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    inputs, store, cache = places
    argv = case.make(inputs)
    before = _files_under(inputs)
    with pytest.raises(SystemExit) as exit_info:
        raise SystemExit(main(argv))
    err = capsys.readouterr().err
    assert exit_info.value.code == 2, err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
    for part in case.expect:
        assert part in err, err
    assert _files_under(store) == [] and _files_under(cache) == []
    assert _files_under(inputs) == before


SUBPROCESS = ["latin-1-bytes", "pairs-entry-short", "source-latin-1-text", "table-binary"]


@pytest.mark.parametrize("name", SUBPROCESS, ids=[f"bad_input-subprocess-{n}" for n in SUBPROCESS])
def test_bad_input_through_python_m_admire(name: str, tmp_path: Path) -> None:
    case = next(c for c in CATALOGUE if c.name == name)
    inputs, cache = tmp_path / "in", tmp_path / "cache"
    inputs.mkdir()
    argv = case.make(inputs)
    db = tmp_path / "mlruns" / "mlflow.db"
    proc = subprocess.run(
        [sys.executable, "-m", "admire", *argv, "--tracking-uri", f"sqlite:///{db}"],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO), "ADMIRE_CACHE": str(cache)},
        timeout=300,
    )
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert all(part in proc.stderr for part in case.expect), proc.stderr
    assert not (tmp_path / "mlruns").exists() and not cache.exists()
