"""Domain data in the forms users already have: Parquet files and saved Hugging Face datasets
(text, tokenised by the study), and pre-tokenised arrays (nanoGPT `.bin`, `.npy`), which are
memory-mapped and used as they are: never decoded, never tokenised again.

Every reader raises a ConfigError without the `runner.sources.NAME:` prefix (the caller adds
it) that names the file and the problem.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np

from admire.config import ConfigError

HF_MARKERS = ("dataset_dict.json", "state.json")
"""Files `Dataset.save_to_disk` / `DatasetDict.save_to_disk` write at the top of the folder."""
TOKEN_SUFFIXES = (".bin", ".npy")
SCAN_TOKENS = 1 << 24
"""Tokens read at a time when hashing and range-checking an array (32 MB of uint16)."""


def _first_line(err: Exception) -> str:
    return str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__


def is_hf_dataset(folder: Path) -> bool:
    return folder.is_dir() and any((folder / m).is_file() for m in HF_MARKERS)


def parquet_files(path: Path) -> list[Path]:
    """The Parquet files a path names: itself, or those in the folder (recursively)."""
    if path.is_file():
        return [path] if path.suffix == ".parquet" else []
    return sorted(p for p in path.rglob("*.parquet") if p.is_file()) if path.is_dir() else []


def _text(value: object, where: str, field: str) -> str:
    if not isinstance(value, str):
        raise ConfigError(f"{where}: '{field}' is {type(value).__name__}, not text")
    return value


def parquet_documents(files: list[Path], field: str) -> Iterator[str]:
    """The `field` column of each file, row by row, in file order."""
    for path in files:
        row = 0
        for batch in _parquet_file(path, field).iter_batches(columns=[field], batch_size=1024):
            for value in batch.column(0).to_pylist():
                row += 1
                yield _text(value, f"{path}: row {row}", field)


def _parquet_file(path: Path, field: str, setting: str = "text_field"):  # type: ignore[no-untyped-def]
    """The open Parquet file, refused unless it has column `field` (the error names the
    study setting that chose it)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as err:
        raise ConfigError(f"{path}: not a Parquet file ({_first_line(err)})") from None
    names = pf.schema_arrow.names
    if field not in names:
        raise ConfigError(
            f"{path}: no column '{field}' (columns: {', '.join(names)}; set {setting})"
        )
    return pf


def hf_documents(folder: Path, field: str, split: str | None) -> Iterator[str]:
    """The `field` column of a dataset saved with `save_to_disk`, row by row (`split` of a
    DatasetDict)."""
    ds = _saved_dataset(folder, split, field)
    row = 0
    for batch in ds.select_columns([field]).iter(batch_size=1024):
        for value in batch[field]:
            row += 1
            yield _text(value, f"{folder}: row {row}", field)


def _saved_dataset(folder: Path, split: str | None, field: str, setting: str = "text_field"):  # type: ignore[no-untyped-def]
    """The saved Dataset (the `split` of a DatasetDict), refused unless it has `field` (the
    error names the study setting that chose it)."""
    try:
        import datasets
    except ImportError:
        raise ConfigError(
            f"{folder} is a Hugging Face dataset; reading it needs the `datasets` package "
            "(pip install 'admire[data]')"
        ) from None
    try:
        ds = datasets.load_from_disk(str(folder))
    except (OSError, ValueError, KeyError) as err:
        raise ConfigError(f"{folder}: not a readable saved dataset ({_first_line(err)})") from None
    if isinstance(ds, datasets.DatasetDict):
        splits = list(ds)
        chosen = split or (splits[0] if len(splits) == 1 else None)
        if chosen not in ds:
            raise ConfigError(
                f"{folder}: a DatasetDict with splits {splits}; set `split` to one of them"
            )
        ds = ds[chosen]
    elif split is not None:
        raise ConfigError(f"{folder}: one Dataset, not a DatasetDict; remove `split`")
    if field not in ds.column_names:
        raise ConfigError(
            f"{folder}: no column '{field}' (columns: {', '.join(ds.column_names)}; set {setting})"
        )
    return ds


# ---- token-id columns (a tokenised saved dataset or Parquet) -------------------------------
def id_batches(path: Path, field: str, split: str | None) -> Iterator[np.ndarray]:
    """The token ids of column `field` (a list of ids per row, as `Dataset.map` with a
    tokenizer writes `input_ids`) of a saved dataset or of Parquet files, flattened in row
    order, one array per batch (read from Arrow's memory map, not decoded row by row)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    for where, column in _id_columns(path, field, split):
        kind = column.type
        if not (pa.types.is_list(kind) or pa.types.is_large_list(kind)) or not (
            pa.types.is_integer(kind.value_type)
        ):
            raise ConfigError(f"{where}: column '{field}' holds {kind}, not lists of token ids")
        yield pc.list_flatten(column).to_numpy(zero_copy_only=False)


def _id_columns(path: Path, field: str, split: str | None) -> Iterator[tuple[Path, object]]:
    """(file or folder, Arrow column) batches of `field`."""
    if is_hf_dataset(path):
        ds = _saved_dataset(path, split, field, "ids_field").select_columns([field])
        for table in ds.with_format("arrow").iter(batch_size=8192):
            yield path, table.column(0)
        return
    files = parquet_files(path)
    if not files:
        raise ConfigError(
            f"{path}: ids_field reads a saved Hugging Face dataset or Parquet files, and this "
            "is neither"
        )
    for file in files:
        yield file, _parquet_file(file, field, "ids_field").read(columns=[field]).column(0)


def id_range(path: Path, field: str, split: str | None) -> tuple[int, int, int]:
    """(number of ids, smallest, largest) of a token-id column (see `id_batches`)."""
    count, low, high = 0, 0, -1
    for ids in id_batches(path, field, split):
        if ids.size:
            count += ids.size
            low, high = min(low, int(ids.min())), max(high, int(ids.max()))
    return count, low, high


def write_ids(path: Path, field: str, split: str | None, out: Path) -> None:
    """Write a token-id column to `out` as one `.npy` array (uint16 when every id fits, else
    uint32), atomically: the ids are copied once, never tokenised again."""
    count, low, high = id_range(path, field, split)
    if low < 0:
        raise ConfigError(f"{path}: column '{field}' holds negative token ids ({low})")
    dtype = np.uint16 if high < 1 << 16 else np.uint32
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".tmp-{out.name}")
    arr = np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype, shape=(count,))
    at = 0
    for ids in id_batches(path, field, split):
        arr[at : at + ids.size] = ids
        at += ids.size
    arr.flush()
    del arr
    tmp.replace(out)


# ---- pre-tokenised arrays --------------------------------------------------------------------
@dataclass(frozen=True)
class TokenSlice:
    """A run of token ids in a file: `count` ids of `dtype` from byte `offset` on."""

    path: str
    dtype: str
    offset: int
    count: int

    def open(self) -> np.ndarray:
        """The ids, memory-mapped read-only (nothing is copied)."""
        return np.memmap(
            self.path, dtype=self.dtype, mode="r", offset=self.offset, shape=(self.count,)
        )

    def as_dict(self) -> dict[str, str | int]:
        return {"path": self.path, "dtype": self.dtype, "offset": self.offset, "count": self.count}


def is_token_source(path: Path) -> bool:
    """A `.bin`/`.npy` file, or a folder with a `train.bin` or `train.npy`."""
    if path.is_file():
        return path.suffix in TOKEN_SUFFIXES
    return path.is_dir() and any((path / f"train{s}").is_file() for s in TOKEN_SUFFIXES)


def _whole(path: Path, bin_dtype: str) -> TokenSlice:
    """All the ids of one `.bin` or `.npy` file."""
    if path.suffix == ".npy":
        try:
            arr = np.load(path, mmap_mode="r", allow_pickle=False)
        except (ValueError, OSError) as err:
            raise ConfigError(f"{path}: not a .npy array ({_first_line(err)})") from None
        if arr.ndim != 1 or arr.dtype.kind not in "ui":
            raise ConfigError(
                f"{path}: a {arr.ndim}-D array of {arr.dtype}; token ids are a 1-D array of "
                "integers (flatten it, e.g. arr.reshape(-1))"
            )
        return TokenSlice(str(path), arr.dtype.str, int(arr.offset), int(arr.size))
    size = path.stat().st_size
    itemsize = np.dtype(bin_dtype).itemsize
    if size % itemsize:
        raise ConfigError(
            f"{path}: {size} bytes is not a whole number of {bin_dtype} token ids (set dtype)"
        )
    return TokenSlice(str(path), np.dtype(bin_dtype).str, 0, size // itemsize)


def token_slices(path: Path, bin_dtype: str, val_fraction: float) -> tuple[TokenSlice, TokenSlice]:
    """(train, validation) ids: a folder's `train.*` and `val.*` as they are, or one file's
    ids with its last `val_fraction` held out (a contiguous tail, so no document of the
    training part is cut into validation but the one at the boundary)."""
    if path.is_dir():
        suffix = next(s for s in TOKEN_SUFFIXES if (path / f"train{s}").is_file())
        val = path / f"val{suffix}"
        if not val.is_file():
            raise ConfigError(f"{path}: has train{suffix} but no val{suffix}")
        return _whole(path / f"train{suffix}", bin_dtype), _whole(val, bin_dtype)
    whole = _whole(path, bin_dtype)
    n_val = max(1, round(whole.count * val_fraction))
    itemsize = np.dtype(whole.dtype).itemsize
    train = TokenSlice(whole.path, whole.dtype, whole.offset, whole.count - n_val)
    val = TokenSlice(whole.path, whole.dtype, whole.offset + train.count * itemsize, n_val)
    return train, val


@cache
def _scan(path: str, dtype: str, offset: int, count: int, mtime_ns: int) -> tuple[str, int, int]:
    """(sha256 of the ids' bytes, smallest id, largest id); memoised per file version within a
    process, so checking a study and preparing its corpus read a large file once."""
    arr = TokenSlice(path, dtype, offset, count).open()
    digest = hashlib.sha256()
    low, high = 0, -1
    for start in range(0, count, SCAN_TOKENS):
        chunk = np.asarray(arr[start : start + SCAN_TOKENS])
        digest.update(chunk.tobytes())
        if chunk.size:
            low, high = min(low, int(chunk.min())), max(high, int(chunk.max()))
    return digest.hexdigest(), low, high


def scan(part: TokenSlice, vocab_size: int, vocab_from: str) -> str:
    """The sha256 of a slice's ids, refusing an id outside [0, vocab_size) (the embedding
    would fail on it mid-trial); `vocab_from` says where the vocabulary size came from."""
    mtime = Path(part.path).stat().st_mtime_ns
    sha, low, high = _scan(part.path, part.dtype, part.offset, part.count, mtime)
    check_id_range(part.path, low, high, vocab_size, vocab_from)
    return sha


def check_id_range(where: str, low: int, high: int, vocab_size: int, vocab_from: str) -> None:
    """Refuse ids outside [0, vocab_size): the embedding would fail on them mid-trial."""
    if low < 0:
        raise ConfigError(f"{where}: holds negative token ids ({low})")
    if high >= vocab_size:
        raise ConfigError(
            f"{where}: token id {high} is not below the vocabulary size {vocab_size} "
            f"({vocab_from}); give the vocab_size or tokenizer file the ids were made with"
        )
