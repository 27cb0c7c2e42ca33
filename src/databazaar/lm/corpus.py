"""Multi-domain text corpora with deterministic train/validation splits.

A :class:`MultiDomainCorpus` maps each domain name to its training and held-out
validation documents. Corpora come from three places:

* :func:`build_corpus` from in-memory lists of texts,
* :func:`load_corpus_dir` from a folder (one sub-folder per domain, every file a
  document, and/or ``DOMAIN.jsonl`` files with a ``text`` field),
* :func:`builtin_corpus`, real text found on every Debian/Ubuntu machine with Python:
  the Python standard library's code, its docstrings, license texts and man pages.

Splits are deterministic: a document's split depends only on the seed, the domain name
and the document's position, never on the process or the machine's hash seed.
"""

from __future__ import annotations

import ast
import gzip
import hashlib
import json
import logging
import sysconfig
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from databazaar.core.errors import InvalidInput, NotFound

log = logging.getLogger(__name__)

BUILTIN_DOMAINS = ("python_code", "python_docstrings", "licenses", "man_pages")


@dataclass
class MultiDomainCorpus:
    """Documents per domain, split into ``train`` and held-out ``val``.

    Attributes:
        train: domain -> training documents.
        val: domain -> validation documents (never seen in training).
        sources: domain -> a short description of where the texts came from.
        missing: domain -> reason, for requested domains that had no usable text.
    """

    train: dict[str, list[str]]
    val: dict[str, list[str]]
    sources: dict[str, str] = field(default_factory=dict)
    missing: dict[str, str] = field(default_factory=dict)

    @property
    def domains(self) -> list[str]:
        """Domain names in a fixed order (the order weights are reported in)."""
        return list(self.train)

    def summary(self) -> dict[str, dict[str, int]]:
        """Document and character counts per domain and split."""
        return {
            d: {
                "train_docs": len(self.train[d]),
                "val_docs": len(self.val[d]),
                "train_chars": sum(len(t) for t in self.train[d]),
                "val_chars": sum(len(t) for t in self.val[d]),
            }
            for d in self.domains
        }

    def save(self, folder: str | Path) -> Path:
        """Write ``<domain>.jsonl`` files (``text`` and ``split`` fields) to ``folder``.

        :func:`load_corpus_dir` reads such a folder back with the same splits.
        """
        out = Path(folder)
        out.mkdir(parents=True, exist_ok=True)
        for d in self.domains:
            with (out / f"{d}.jsonl").open("w", encoding="utf-8") as fh:
                for split, docs in (("train", self.train[d]), ("val", self.val[d])):
                    for text in docs:
                        fh.write(json.dumps({"text": text, "split": split}) + "\n")
        return out


def _stable_seed(seed: int, name: str) -> int:
    digest = hashlib.blake2b(f"{seed}:{name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def split_documents(
    docs: Sequence[str], *, val_fraction: float, seed: int, name: str = ""
) -> tuple[list[str], list[str]]:
    """Split documents into (train, val) deterministically.

    The permutation is drawn from a generator seeded by ``(seed, name)``; the validation
    set holds ``max(1, round(val_fraction * n))`` documents and training keeps the rest.
    """
    if not 0.0 < val_fraction < 1.0:
        raise InvalidInput(f"val_fraction must be in (0, 1), got {val_fraction}")
    n = len(docs)
    if n < 2:
        raise InvalidInput(
            f"domain {name!r} has {n} document(s); at least 2 are needed for a split",
            hint="add more documents or drop the domain",
        )
    n_val = min(n - 1, max(1, round(val_fraction * n)))
    order = np.random.default_rng(_stable_seed(seed, name)).permutation(n)
    val_idx = set(order[:n_val].tolist())
    train = [docs[i] for i in range(n) if i not in val_idx]
    val = [docs[i] for i in range(n) if i in val_idx]
    return train, val


def chunk_text(text: str, max_chars: int) -> list[str]:
    """Cut a long text into pieces of at most ``max_chars`` at line boundaries.

    Lines longer than ``max_chars`` are cut hard. Empty pieces are dropped.
    """
    if max_chars <= 0:
        raise InvalidInput(f"max_chars must be positive, got {max_chars}")
    pieces: list[str] = []
    buf: list[str] = []
    size = 0
    for line in text.splitlines(keepends=True):
        while len(line) > max_chars:
            if buf:
                pieces.append("".join(buf))
                buf, size = [], 0
            pieces.append(line[:max_chars])
            line = line[max_chars:]
        if size + len(line) > max_chars and buf:
            pieces.append("".join(buf))
            buf, size = [], 0
        buf.append(line)
        size += len(line)
    if buf:
        pieces.append("".join(buf))
    return [p for p in pieces if p.strip()]


def build_corpus(
    domains: Mapping[str, Iterable[str]],
    *,
    val_fraction: float = 0.1,
    seed: int = 0,
    max_chars_per_doc: int | None = None,
    sources: Mapping[str, str] | None = None,
) -> MultiDomainCorpus:
    """Build a corpus from ``{domain: texts}`` with a deterministic split per domain.

    Blank texts are dropped; with ``max_chars_per_doc`` long texts are chunked first.
    Raises :class:`InvalidInput` when no domain is given or a domain is empty.
    """
    if not domains:
        raise InvalidInput("empty corpus: no domains given", hint="pass {domain: [texts]}")
    train: dict[str, list[str]] = {}
    val: dict[str, list[str]] = {}
    for name, texts in domains.items():
        if not isinstance(name, str) or not name:
            raise InvalidInput(f"domain names must be non-empty strings, got {name!r}")
        docs = [t for t in texts if isinstance(t, str) and t.strip()]
        if max_chars_per_doc is not None:
            docs = [p for t in docs for p in chunk_text(t, max_chars_per_doc)]
        if not docs:
            raise InvalidInput(f"domain {name!r} has no non-empty documents")
        train[name], val[name] = split_documents(
            docs, val_fraction=val_fraction, seed=seed, name=name
        )
    return MultiDomainCorpus(train=train, val=val, sources=dict(sources or {}))


def _read_text_file(path: Path) -> str | None:
    """Read a text file (gzip-aware); ``None`` for binary or unreadable files."""
    try:
        raw = path.read_bytes()
        if path.suffix == ".gz":
            raw = gzip.decompress(raw)
    except (OSError, EOFError, gzip.BadGzipFile):
        return None
    if b"\x00" in raw[:4096]:
        return None
    return raw.decode("utf-8", errors="replace")


def _read_jsonl(path: Path, text_field: str) -> Iterable[tuple[str | None, str, str | None]]:
    """Yield ``(domain or None, text, split or None)`` from a JSON-lines file."""
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InvalidInput(f"{path.name}:{lineno} is not valid JSON: {exc.msg}") from None
            if not isinstance(rec, dict) or not isinstance(rec.get(text_field), str):
                raise InvalidInput(
                    f"{path.name}:{lineno} has no string field {text_field!r}",
                    hint=f"write one object per line with a {text_field!r} field",
                )
            split = rec.get("split")
            yield rec.get("domain"), rec[text_field], split if split in ("train", "val") else None


def load_corpus_dir(
    path: str | Path,
    *,
    val_fraction: float = 0.1,
    seed: int = 0,
    max_docs_per_domain: int | None = None,
    max_chars_per_doc: int | None = None,
    text_field: str = "text",
) -> MultiDomainCorpus:
    """Load a multi-domain corpus from a folder.

    Layout: each sub-folder is a domain and every (optionally ``.gz``) text file below it
    is one document; each top-level ``NAME.jsonl`` adds documents to domain ``NAME``
    (or to the record's own ``domain`` field). A JSONL record may pin its ``split``
    (``train``/``val``), as :meth:`MultiDomainCorpus.save` writes; other documents are
    split by :func:`split_documents`. ``max_docs_per_domain`` keeps a deterministic
    subset of documents (after chunking).
    """
    root = Path(path)
    if not root.exists():
        raise NotFound(f"corpus folder not found: {root}")
    if not root.is_dir():
        raise InvalidInput(f"corpus path is not a folder: {root}")
    free: dict[str, list[str]] = {}
    pinned: dict[str, dict[str, list[str]]] = {}
    for entry in sorted(root.iterdir()):
        if entry.name.startswith("."):
            continue
        if entry.is_dir():
            for f in sorted(p for p in entry.rglob("*") if p.is_file()):
                if f.suffix == ".jsonl":
                    for _, text, split in _read_jsonl(f, text_field):
                        _add(free, pinned, entry.name, text, split)
                    continue
                text = _read_text_file(f)
                if text is not None:
                    free.setdefault(entry.name, []).append(text)
        elif entry.suffix == ".jsonl":
            for dom, text, split in _read_jsonl(entry, text_field):
                _add(free, pinned, str(dom) if dom else entry.stem, text, split)
    names = sorted(set(free) | set(pinned))
    if not names:
        raise InvalidInput(
            f"empty corpus: no documents under {root}",
            hint="make one sub-folder per domain with text files, or DOMAIN.jsonl files",
        )
    train: dict[str, list[str]] = {}
    val: dict[str, list[str]] = {}
    missing: dict[str, str] = {}
    for name in names:
        docs = [t for t in free.get(name, []) if t.strip()]
        if max_chars_per_doc is not None:
            docs = [p for t in docs for p in chunk_text(t, max_chars_per_doc)]
        if max_docs_per_domain is not None and len(docs) > max_docs_per_domain:
            keep = np.random.default_rng(_stable_seed(seed, "subset:" + name)).permutation(
                len(docs)
            )[:max_docs_per_domain]
            docs = [docs[i] for i in sorted(keep.tolist())]
        tr = list(pinned.get(name, {}).get("train", []))
        va = list(pinned.get(name, {}).get("val", []))
        if len(docs) >= 2:
            t2, v2 = split_documents(docs, val_fraction=val_fraction, seed=seed, name=name)
            tr += t2
            va += v2
        elif docs:
            tr += docs
        if not tr or not va:
            missing[name] = "needs at least one training and one validation document"
            continue
        train[name], val[name] = tr, va
    if not train:
        raise InvalidInput(
            f"empty corpus: no domain under {root} has enough documents",
            hint="each domain needs at least 2 non-empty documents",
        )
    return MultiDomainCorpus(
        train=train, val=val, sources={d: str(root) for d in train}, missing=missing
    )


def _add(
    free: dict[str, list[str]],
    pinned: dict[str, dict[str, list[str]]],
    domain: str,
    text: str,
    split: str | None,
) -> None:
    if not text.strip():
        return
    if split is None:
        free.setdefault(domain, []).append(text)
    else:
        pinned.setdefault(domain, {}).setdefault(split, []).append(text)


# --------------------------------------------------------------------------- built-in


def _stdlib_files(stdlib: Path) -> list[Path]:
    skip = {"test", "tests", "idlelib", "site-packages", "dist-packages", "lib2to3"}
    return sorted(
        p for p in stdlib.rglob("*.py") if not (set(p.relative_to(stdlib).parts[:-1]) & skip)
    )


def _docstring_spans(tree: ast.AST) -> Iterable[tuple[ast.AST, ast.Constant]]:
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
            and node.body
        ):
            first = node.body[0]
            if (
                isinstance(first, ast.Expr)
                and isinstance(first.value, ast.Constant)
                and isinstance(first.value.value, str)
            ):
                yield node, first.value


def _python_split(source: str) -> tuple[str, list[str]]:
    """Split Python source into (code without docstrings, list of docstrings)."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return source, []
    lines = source.splitlines(keepends=True)
    docs: list[str] = []
    drop: set[int] = set()
    for node, const in _docstring_spans(tree):
        doc = ast.get_docstring(node)  # type: ignore[arg-type]
        if doc:
            docs.append(doc)
        end = const.end_lineno or const.lineno
        drop.update(range(const.lineno - 1, end))
    code = "".join(line for i, line in enumerate(lines) if i not in drop)
    return code, docs


def _pick(files: list[Path], limit: int | None, seed: int, name: str) -> list[Path]:
    """A deterministic subset of at most ``limit`` files, in sorted order."""
    if limit is None or len(files) <= limit:
        return files
    keep = np.random.default_rng(_stable_seed(seed, "files:" + name)).permutation(len(files))
    return [files[i] for i in sorted(keep[:limit].tolist())]


def _collect_python(files: Sequence[Path], kind: str) -> list[str]:
    out: list[str] = []
    for f in files:
        text = _read_text_file(f)
        if text is None:
            continue
        code, docs = _python_split(text)
        out.append(code if kind == "code" else "\n\n".join(docs))
    return out


def _license_files(roots: Sequence[Path]) -> list[Path]:
    files: list[Path] = []
    for root in roots:
        if root.name == "common-licenses" and root.is_dir():
            files += sorted(p for p in root.iterdir() if p.is_file())
        elif root.is_dir():
            files += sorted(root.glob("*/copyright"))
    return files


def _man_files(root: Path) -> list[Path]:
    if not root.is_dir():
        return []
    return [f for s in sorted(root.glob("man[1-8]")) for f in sorted(s.iterdir()) if f.is_file()]


def _collect_plain(files: Sequence[Path]) -> list[str]:
    return [t for t in (_read_text_file(f) for f in files) if t]


def _collect_man(files: Sequence[Path]) -> list[str]:
    out: list[str] = []
    for f in files:
        text = _read_text_file(f)
        if not text or text.startswith(".so "):  # aliases point at another page
            continue
        out.append(
            "".join(line for line in text.splitlines(keepends=True) if not line.startswith('.\\"'))
        )
    return out


def builtin_corpus(
    *,
    domains: Sequence[str] | None = None,
    max_docs_per_domain: int = 400,
    max_chars_per_doc: int = 4000,
    val_fraction: float = 0.1,
    seed: int = 0,
    stdlib_dir: str | Path | None = None,
    license_dirs: Sequence[str | Path] | None = None,
    man_dir: str | Path | None = None,
) -> MultiDomainCorpus:
    """Real text found offline on this kind of machine, one domain per source.

    Domains (see :data:`BUILTIN_DOMAINS`):

    * ``python_code``: the standard library's ``.py`` files with docstrings removed,
    * ``python_docstrings``: the docstrings taken out of the same files,
    * ``licenses``: ``/usr/share/common-licenses/*`` and ``/usr/share/doc/*/copyright``,
    * ``man_pages``: troff sources of ``/usr/share/man/man[1-8]`` (comments dropped).

    Texts are cut into documents of at most ``max_chars_per_doc`` characters; each domain
    keeps a deterministic sample of ``max_docs_per_domain`` of them. A domain whose source
    is missing on this machine is left out and named in ``corpus.missing`` with the
    reason (a warning is logged); :class:`NotFound` is raised if none is available.
    """
    wanted = list(domains) if domains is not None else list(BUILTIN_DOMAINS)
    unknown = [d for d in wanted if d not in BUILTIN_DOMAINS]
    if unknown:
        raise InvalidInput(
            f"unknown built-in domain(s): {', '.join(unknown)}",
            hint=f"choose from {', '.join(BUILTIN_DOMAINS)}",
        )
    if max_docs_per_domain < 2:
        raise InvalidInput("max_docs_per_domain must be at least 2")
    stdlib = Path(stdlib_dir) if stdlib_dir else Path(sysconfig.get_paths()["stdlib"])
    lic_roots = [
        Path(p) for p in (license_dirs or ["/usr/share/common-licenses", "/usr/share/doc"])
    ]
    man_root = Path(man_dir) if man_dir else Path("/usr/share/man")
    # Read a deterministic subset of files (a few per wanted document) to stay fast.
    n_files = max(50, max_docs_per_domain * 2)
    py_files = _pick(_stdlib_files(stdlib) if stdlib.is_dir() else [], n_files, seed, "py")
    lic_files = _pick(_license_files(lic_roots), n_files, seed, "lic")
    man_files = _pick(_man_files(man_root), n_files, seed, "man")
    collectors: dict[str, tuple[Callable[[], list[str]], str]] = {
        "python_code": (
            lambda: _collect_python(py_files, "code"),
            f"{stdlib} (*.py, docstrings removed)",
        ),
        "python_docstrings": (
            lambda: _collect_python(py_files, "docs"),
            f"{stdlib} (*.py docstrings)",
        ),
        "licenses": (
            lambda: _collect_plain(lic_files),
            ", ".join(str(p) for p in lic_roots),
        ),
        "man_pages": (lambda: _collect_man(man_files), f"{man_root}/man[1-8]"),
    }
    texts: dict[str, list[str]] = {}
    sources: dict[str, str] = {}
    missing: dict[str, str] = {}
    for name in wanted:
        collect, source = collectors[name]
        docs = [p for t in collect() if t.strip() for p in chunk_text(t, max_chars_per_doc)]
        docs = [d for d in docs if len(d.strip()) >= 64]
        if len(docs) < 2:
            missing[name] = f"no usable text found in {source}"
            log.warning("built-in corpus: domain %s is missing (%s)", name, missing[name])
            continue
        if len(docs) > max_docs_per_domain:
            keep = np.random.default_rng(_stable_seed(seed, "builtin:" + name)).permutation(
                len(docs)
            )[:max_docs_per_domain]
            docs = [docs[i] for i in sorted(keep.tolist())]
        texts[name] = docs
        sources[name] = source
    if not texts:
        raise NotFound(
            "no built-in corpus domain is available on this machine",
            hint="pass your own corpus folder instead",
        )
    corpus = build_corpus(texts, val_fraction=val_fraction, seed=seed, sources=sources)
    corpus.missing = missing
    return corpus
