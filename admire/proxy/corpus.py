"""Domains -> documents -> a BPE tokenizer -> memory-mapped token arrays, cached by content.

Pre-tokenised domains (`.bin`, `.npy`; admire.proxy.formats) skip all of this: their arrays
are memory-mapped where they lie, and the study's vocabulary must be the one they were made
with.

Each domain's documents are read (capped at `max_mb_per_domain`, in a fixed shuffled order so
the cap is a fair sample), split into train and validation *by document* with a fixed seed,
tokenised once and stored as flat uint16/uint32 arrays with an end-of-text token between
documents. The cache key is the sha256 of the selected text plus the tokenizer's hash and the
split settings, so a second study reuses the arrays and a changed file invalidates them.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

from admire.config import ConfigError, DomainSource, ProxyRunnerConfig
from admire.proxy.default_corpus import (
    BUILTIN_DOMAINS,
    BuiltinDomain,
    MissingCorpusPackage,
    package_root,
)
from admire.proxy.formats import (
    TokenSlice,
    check_id_range,
    hf_documents,
    id_range,
    is_hf_dataset,
    is_token_source,
    parquet_documents,
    parquet_files,
    scan,
    token_slices,
    write_ids,
)

EOT = "<|endoftext|>"
CHUNK_BYTES = 16_384
"""Documents longer than this are cut at line breaks into pieces of about this size, so that a
domain made of one big file (a book, a catalogue) still splits into train and validation."""
SPLIT_SEED = 0
FORMAT_VERSION = 1


def cache_root(config: ProxyRunnerConfig) -> Path:
    """Where tokenised domains and tokenizers live (shared by every study on the machine)."""
    if config.cache_dir:
        return Path(config.cache_dir).expanduser()
    return Path(os.environ.get("ADMIRE_CACHE", Path.home() / ".cache" / "admire")).expanduser()


def _chunks(text: str) -> Iterator[str]:
    if len(text) <= CHUNK_BYTES:
        yield text
        return
    piece: list[str] = []
    size = 0
    for line in text.splitlines(keepends=True):
        piece.append(line)
        size += len(line)
        if size >= CHUNK_BYTES:
            yield "".join(piece)
            piece, size = [], 0
    if piece:
        yield "".join(piece)


TEXT_SUFFIXES = (".txt", ".md")


def _document(data: bytes, where: str) -> str:
    """A document's text: UTF-8 and not binary, else a ConfigError saying where."""
    if b"\x00" in data:
        raise ConfigError(f"{where}: holds NUL bytes; a binary file, not text")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError(
            f"{where}: not UTF-8 text (byte 0x{data[err.start]:02x} at offset {err.start}); "
            "convert it to UTF-8"
        ) from None


def _folder_documents(folder: Path) -> Iterator[str]:
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    texts = [p for p in files if p.suffix.lower() in TEXT_SUFFIXES]
    if not texts:
        other = f" (it holds {len(files)} other files, e.g. {files[0].name})" if files else ""
        raise ConfigError(f"{folder}: no .txt or .md files in this folder{other}")
    random.Random(SPLIT_SEED).shuffle(texts)
    for path in texts:
        yield _document(path.read_bytes(), str(path))


def _jsonl_documents(path: Path, field: str) -> Iterator[str]:
    with path.open("rb") as fh:
        for n, raw in enumerate(fh, 1):
            line = _document(raw, f"{path}:{n}")
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise ConfigError(f"{path}:{n}: not valid JSON ({err.msg})") from None
            text = row.get(field) if isinstance(row, dict) else None
            if not isinstance(text, str):
                raise ConfigError(f"{path}:{n}: no string field '{field}' (set text_field)")
            yield text


def _path_documents(path: Path, source: DomainSource) -> Iterator[str]:
    if is_hf_dataset(path):
        return hf_documents(path, source.text_field, source.split)
    parquet = parquet_files(path)
    if parquet and not (path.is_dir() and any(_folder_texts(path))):
        return parquet_documents(parquet, source.text_field)
    if path.is_dir():
        return _folder_documents(path)
    if path.is_file() and path.suffix == ".jsonl":
        return _jsonl_documents(path, source.text_field)
    if not path.exists():
        raise ConfigError(f"{path} does not exist")
    if path.suffix == ".json":
        raise ConfigError(
            f"{path} is a .json file; give a .jsonl file (one JSON object per line) or a folder "
            "of .txt/.md files"
        )
    raise ConfigError(
        f"{path} is none of: a folder of .txt/.md files, a .jsonl file, a Parquet file or "
        "folder, a saved Hugging Face dataset, .bin/.npy token ids"
    )


def _folder_texts(folder: Path) -> Iterator[Path]:
    return (p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in TEXT_SUFFIXES)


@dataclass(frozen=True)
class DomainText:
    """The documents selected for one domain, with where they came from."""

    name: str
    documents: list[str]
    sha256: str
    provenance: dict[str, str]


def _select(docs_iter: Iterator[str], max_bytes: int) -> tuple[list[str], int]:
    """Non-blank pieces of the documents, in order, up to `max_bytes` of text."""
    docs: list[str] = []
    size = 0
    for doc in docs_iter:
        for piece in _chunks(doc):
            if not piece.strip():
                continue
            docs.append(piece)
            size += len(piece.encode("utf-8"))
            if size >= max_bytes:
                return docs, size
    return docs, size


def _builtin(name: str, source: DomainSource | None) -> BuiltinDomain:
    return BUILTIN_DOMAINS[name if source is None else str(source.builtin)]


def read_domain(
    name: str, source: DomainSource | None, max_bytes: int, base: Path | None = None
) -> DomainText:
    """Read a domain's documents up to `max_bytes` of text, in a fixed order."""
    if source is None or source.builtin is not None:
        builtin = _builtin(name, source)
        docs_iter = builtin.documents(package_root(builtin))
        provenance = {
            "source": f"builtin:{builtin.name}",
            "package": f"{builtin.package}=={builtin.version}",
            "licence": builtin.licence,
        }
        # Builtin iterators are in a fixed file order; shuffle their pieces so a cap samples
        # the whole package rather than its first folders.
        pieces = [c for d in docs_iter for c in _chunks(d)]
        random.Random(SPLIT_SEED).shuffle(pieces)
        docs, size = _select(iter(pieces), max_bytes)
        where = f"domain '{name}'"
    else:
        path = _source_path(source, base)
        provenance = {"source": str(path)}
        where = f"runner.sources.{name}"
        try:
            docs, size = _select(_path_documents(path, source), max_bytes)
        except ConfigError as err:
            raise ConfigError(f"{where}: {err}") from None
    if len(docs) < 2:
        raise ConfigError(
            f"{where}: found {len(docs)} document(s); at least 2 are needed to hold "
            "one out for validation"
        )
    digest = hashlib.sha256()
    for doc in docs:
        digest.update(doc.encode("utf-8"))
        digest.update(b"\x00")
    return DomainText(name, docs, digest.hexdigest(), provenance | {"bytes": str(size)})


def _source_path(source: DomainSource, base: Path | None) -> Path:
    path = Path(str(source.path)).expanduser()
    return base / path if not path.is_absolute() and base is not None else path


def token_domain_names(
    config: ProxyRunnerConfig, domains: list[str], base: Path | None = None
) -> list[str]:
    """The domains whose source is token ids already made (`.bin`, `.npy`, or the `ids_field`
    column of a saved dataset or Parquet files)."""
    return [
        name
        for name in domains
        if (src := config.sources.get(name)) is not None
        and src.path is not None
        and (src.ids_field is not None or is_token_source(_source_path(src, base)))
    ]


def _vocabulary(
    config: ProxyRunnerConfig, tokens: list[str], texts: list[str], base: Path | None
) -> tuple[int, str]:
    """The vocabulary size pre-tokenised domains must fit, and where it comes from."""
    if config.tokenizer.file:
        path = Path(config.tokenizer.file).expanduser()
        if not path.is_absolute() and base is not None:
            path = base / path
        return _user_tokenizer(path).get_vocab_size(), f"runner.tokenizer.file {path.name}"
    if texts:
        raise ConfigError(
            f"runner.tokenizer.file: domains {tokens} are token ids and {texts} are text; give "
            "the tokenizer file the ids were made with, so the text is tokenised the same way"
        )
    return config.tokenizer.vocab_size, "runner.tokenizer.vocab_size"


def token_domain(
    name: str,
    source: DomainSource,
    config: ProxyRunnerConfig,
    vocab: tuple[int, str],
    base: Path | None = None,
) -> TokenizedDomain:
    """A pre-tokenised domain, memory-mapped where it lies, its ids checked against the
    vocabulary (a ConfigError naming the field otherwise)."""
    path = _source_path(source, base)
    where = f"runner.sources.{name}"
    try:
        if source.ids_field is not None:
            path = _id_array(source, path, config)
        train, val = token_slices(path, source.dtype, config.val_fraction)
        for part, label in ((train, "training"), (val, "validation")):
            if part.count <= config.seq_len + 1:
                raise ConfigError(
                    f"{part.path}: {part.count} {label} tokens, fewer than one window of "
                    f"runner.seq_len + 1 = {config.seq_len + 1}"
                )
        digest = hashlib.sha256()
        for part in (train, val):
            digest.update(scan(part, *vocab).encode())
    except ConfigError as err:
        raise ConfigError(f"{where}: {err}") from None
    provenance = {"source": str(path), "format": f"token ids ({np.dtype(train.dtype).name})"}
    if source.ids_field is not None:
        provenance |= {"source": str(_source_path(source, base)), "ids_field": source.ids_field}
    folder = path if path.is_dir() else path.parent
    return TokenizedDomain(name, train, val, digest.hexdigest(), provenance, folder)


def _id_array(source: DomainSource, path: Path, config: ProxyRunnerConfig) -> Path:
    """The `.npy` copy in the cache of a saved dataset's or Parquet's token-id column, made
    once per version of its files (keyed by their names, sizes and times)."""
    if not path.exists():
        raise ConfigError(f"{path} does not exist")
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    stats = [(str(p.relative_to(path) if path.is_dir() else p.name), *_stat(p)) for p in files]
    key = hashlib.sha256(
        json.dumps(
            {"files": stats, "field": source.ids_field, "split": source.split}, sort_keys=True
        ).encode()
    ).hexdigest()[:20]
    out = cache_root(config) / "ids" / f"{path.name}-{key}.npy"
    if not out.is_file():
        write_ids(path, str(source.ids_field), source.split, out)
    return out


def _stat(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_size, st.st_mtime_ns


def check_ids(
    name: str, source: DomainSource, config: ProxyRunnerConfig, vocab: tuple[int, str]
) -> None:
    """Refuse a token-id column that cannot be a domain: missing, not lists of integers, ids
    outside the vocabulary, too few for a training and a validation window. Writes nothing."""
    path = _source_path(source, None)
    try:
        if not path.exists():
            raise ConfigError(f"{path} does not exist")
        count, low, high = id_range(path, str(source.ids_field), source.split)
        check_id_range(str(path), low, high, *vocab)
        window = config.seq_len + 1
        if (
            round(count * config.val_fraction) <= window
            or count * (1 - config.val_fraction) <= window
        ):
            raise ConfigError(
                f"{path}: {count} token ids, too few for a training and a validation window "
                f"of runner.seq_len + 1 = {window} (val_fraction {config.val_fraction})"
            )
    except ConfigError as err:
        raise ConfigError(f"runner.sources.{name}: {err}") from None


def check_sources(config: ProxyRunnerConfig, domains: list[str]) -> None:
    """Refuse, with a ConfigError naming the field, a source that cannot be read: a missing
    path, a folder without text files, binary or non-UTF-8 text, a bad `.jsonl` line, a
    Parquet file or saved dataset without the text column, token ids outside the vocabulary
    or too few of them, token and text domains without the tokenizer file, a builtin domain
    whose package is not installed at its pinned version, a tokenizer file that does not
    load. It reads what a trial would read and writes nothing."""
    max_bytes = int(config.max_mb_per_domain * 1e6)
    tokens = token_domain_names(config, domains)
    texts = [n for n in domains if n not in tokens]
    for name in texts:
        source = config.sources.get(name)
        if source is None or source.builtin is not None:
            try:
                package_root(_builtin(name, source))
            except MissingCorpusPackage as err:
                raise ConfigError(f"runner.sources.{name}: {err}") from None
        else:
            read_domain(name, source, max_bytes)
    if tokens:
        vocab = _vocabulary(config, tokens, texts, None)
        for name in tokens:
            if config.sources[name].ids_field is not None:
                check_ids(name, config.sources[name], config, vocab)
            else:
                token_domain(name, config.sources[name], config, vocab)
    elif config.tokenizer.file:
        _user_tokenizer(Path(config.tokenizer.file).expanduser())


def _file_sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.replace(tmp, path)


def _user_tokenizer(path: Path) -> Tokenizer:
    if not path.is_file():
        raise ConfigError(f"runner.tokenizer.file: {path} does not exist")
    try:
        tok = Tokenizer.from_file(str(path))
    except Exception as err:  # the tokenizers library raises its own untyped errors
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ConfigError(
            f"runner.tokenizer.file: {path} is not a tokenizer file ({reason})"
        ) from None
    if tok.token_to_id(EOT) is None:
        tok.add_special_tokens([EOT])
    return tok


def train_tokenizer(texts: list[DomainText], vocab_size: int, sample_bytes: int) -> Tokenizer:
    """Byte-level BPE trained on up to `sample_bytes` of every domain."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOT],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )

    def sample() -> Iterator[str]:
        for text in texts:
            size = 0
            for doc in text.documents:
                yield doc
                size += len(doc)
                if size >= sample_bytes:
                    break

    tok.train_from_iterator(sample(), trainer=trainer)
    return tok


def load_tokenizer(
    config: ProxyRunnerConfig, texts: list[DomainText], base: Path | None = None
) -> tuple[Tokenizer, Path, str]:
    """The study's tokenizer, its cached file and its sha256: the user's file, or a BPE
    trained once per (domain contents, vocab size, sample size) and cached."""
    root = cache_root(config)
    if config.tokenizer.file:
        path = Path(config.tokenizer.file).expanduser()
        if not path.is_absolute() and base is not None:
            path = base / path
        return _user_tokenizer(path), path, _file_sha(path)
    key = hashlib.sha256(
        json.dumps(
            {
                "domains": sorted(t.sha256 for t in texts),
                "vocab": config.tokenizer.vocab_size,
                "sample_mb": config.tokenizer.sample_mb,
                "format": FORMAT_VERSION,
            },
            sort_keys=True,
        ).encode()
    ).hexdigest()[:20]
    path = root / "tokenizers" / f"bpe-{config.tokenizer.vocab_size}-{key}.json"
    if not path.is_file():
        tok = train_tokenizer(
            texts, config.tokenizer.vocab_size, int(config.tokenizer.sample_mb * 1e6)
        )
        _atomic_write_bytes(path, tok.to_str().encode("utf-8"))
    return Tokenizer.from_file(str(path)), path, _file_sha(path)


@dataclass(frozen=True)
class TokenizedDomain:
    """One domain's token ids for training and validation (opened read-only, memory-mapped):
    the cache's arrays of a text domain, or the user's own of a pre-tokenised one."""

    name: str
    train_part: TokenSlice
    val_part: TokenSlice
    sha256: str
    provenance: dict[str, str]
    folder: Path
    """The cache folder of a text domain; the folder of a pre-tokenised domain's files."""

    @property
    def dtype(self) -> str:
        return np.dtype(self.train_part.dtype).name

    @property
    def train_tokens(self) -> int:
        return self.train_part.count

    @property
    def val_tokens(self) -> int:
        return self.val_part.count

    def train(self) -> np.ndarray:
        return self.train_part.open()

    def val(self) -> np.ndarray:
        return self.val_part.open()

    def job_spec(self) -> dict[str, dict[str, str | int]]:
        """Where a training process finds the ids (TrainJob.domains)."""
        return {"train": self.train_part.as_dict(), "val": self.val_part.as_dict()}


def _split(n_docs: int, val_fraction: float, sizes: list[int]) -> np.ndarray:
    """A boolean mask of validation documents: a seeded random subset holding about
    `val_fraction` of the text, at least one document, never all of them."""
    order = np.random.default_rng(SPLIT_SEED).permutation(n_docs)
    target = val_fraction * sum(sizes)
    mask = np.zeros(n_docs, dtype=bool)
    held = 0
    for i in order[:-1]:
        mask[i] = True
        held += sizes[i]
        if held >= target:
            break
    return mask


def tokenize_domain(
    text: DomainText, tok: Tokenizer, tok_sha: str, val_fraction: float, root: Path
) -> TokenizedDomain:
    """Tokenise a domain into train/val arrays, or open the cached ones."""
    key = hashlib.sha256(
        f"{text.sha256}|{tok_sha}|{val_fraction}|{SPLIT_SEED}|{FORMAT_VERSION}".encode()
    ).hexdigest()[:20]
    # Domain names may hold slashes (`org/dataset`); the cache keeps one folder per domain.
    folder = root / "domains" / f"{text.name.replace('/', '__')}-{key}"
    meta_path = folder / "meta.json"
    if not meta_path.is_file():
        eot = tok.token_to_id(EOT)
        dtype = np.uint16 if tok.get_vocab_size() <= 65_536 else np.uint32
        encoded = tok.encode_batch(text.documents)
        mask = _split(len(encoded), val_fraction, [len(e.ids) for e in encoded])
        arrays = {}
        for part, wanted in (("train", False), ("val", True)):
            ids = [
                np.asarray([*e.ids, eot], dtype=dtype)
                for e, m in zip(encoded, mask, strict=True)
                if m == wanted
            ]
            arrays[part] = np.concatenate(ids)
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=".tmp-"))
        for part, arr in arrays.items():
            arr.tofile(tmp / f"{part}.bin")
        meta = {
            "name": text.name,
            "dtype": np.dtype(dtype).name,
            "train_tokens": int(arrays["train"].size),
            "val_tokens": int(arrays["val"].size),
            "documents": len(encoded),
            "val_documents": int(mask.sum()),
            "sha256": text.sha256,
            "tokenizer_sha256": tok_sha,
            "provenance": text.provenance,
        }
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2))
        try:
            os.replace(tmp, folder)
        except OSError:  # another process finished the same domain first; theirs is identical
            shutil.rmtree(tmp, ignore_errors=True)
    meta = json.loads(meta_path.read_text())
    return TokenizedDomain(
        name=text.name,
        train_part=TokenSlice(str(folder / "train.bin"), meta["dtype"], 0, meta["train_tokens"]),
        val_part=TokenSlice(str(folder / "val.bin"), meta["dtype"], 0, meta["val_tokens"]),
        sha256=meta["sha256"],
        provenance=meta["provenance"],
        folder=folder,
    )


@dataclass(frozen=True)
class Corpus:
    """Every domain of a study, tokenised, plus the tokenizer that made them."""

    domains: dict[str, TokenizedDomain]
    tokenizer_path: Path | None
    """None when every domain is token ids and only their vocabulary size was given."""
    tokenizer_sha256: str
    vocab_size: int

    def manifest(self) -> dict[str, str]:
        """Provenance of every domain and the tokenizer, to record with each trial."""
        out = {"tokenizer.sha256": self.tokenizer_sha256, "vocab_size": str(self.vocab_size)}
        for name, d in self.domains.items():
            out[f"domain.{name}.sha256"] = d.sha256
            out[f"domain.{name}.train_tokens"] = str(d.train_tokens)
            for k, v in d.provenance.items():
                out[f"domain.{name}.{k}"] = v
        return out


def prepare_corpus(
    config: ProxyRunnerConfig,
    domains: list[str],
    base: Path | None = None,
    log: Callable[[str], None] = print,
) -> Corpus:
    """Read, tokenise and cache every domain (a no-op apart from reading when cached)."""
    root = cache_root(config)
    max_bytes = int(config.max_mb_per_domain * 1e6)
    token_names = token_domain_names(config, domains, base)
    texts = [
        read_domain(name, config.sources.get(name), max_bytes, base)
        for name in domains
        if name not in token_names
    ]
    out: dict[str, TokenizedDomain] = {}
    tok_path: Path | None = None
    if token_names:
        vocab = _vocabulary(config, token_names, [t.name for t in texts], base)
        for name in token_names:
            out[name] = token_domain(name, config.sources[name], config, vocab, base)
        vocab_size, tok_sha = vocab[0], ""
    if texts:
        tok, tok_path, tok_sha = load_tokenizer(config, texts, base)
        vocab_size = tok.get_vocab_size()
        for text in texts:
            out[text.name] = tokenize_domain(text, tok, tok_sha, config.val_fraction, root)
    for name in domains:
        dom = out[name]
        log(
            f"  domain {name:<12} {dom.train_tokens:>10,} train / {dom.val_tokens:>8,} "
            f"val tokens  ({dom.provenance['source']}, sha256 {dom.sha256[:12]})"
        )
    return Corpus({n: out[n] for n in domains}, tok_path, tok_sha, vocab_size)
