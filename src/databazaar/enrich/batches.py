"""Cached, resumable batches of generation work (the one runner of every enrichment).

Enriching a data set asks a generation backend for one text per record. Backends fail
(a server goes away mid-run), so work runs in batches and every finished batch is
appended to a cache file in one write: JSON lines ``{"key": ..., "value": ...}`` keyed by
the sha256 of the record and of everything that shapes its generation (backend, method,
style, sampling options). Running the same command again skips every cached key, so a
resumed run neither repeats nor duplicates work, and a changed generator or prompt
misses the cache instead of reusing stale text. A torn last line (a crash during the
append) is ignored on reading. The output file itself is written once, at the end,
through a temporary file (:func:`databazaar.lm.pairs.write_jsonl`): it is either
complete or absent.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from databazaar.core.errors import InvalidInput
from databazaar.core.progress import ProgressFn
from databazaar.lm.generate import BackendError


def item_key(generator: Mapping[str, Any], record: Mapping[str, Any]) -> str:
    """sha256 of the canonical JSON of ``generator`` settings and ``record``."""
    blob = json.dumps({"g": generator, "r": record}, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()


class BatchCache:
    """An append-only JSON-lines cache of finished items (``key -> value``).

    ``path=None`` keeps the cache in memory only (nothing to resume from).
    """

    def __init__(self, path: str | Path | None) -> None:
        self.path = Path(path) if path is not None else None
        self._items: dict[str, Any] = {}
        if self.path is not None and self.path.is_file():
            for line in self.path.read_text(encoding="utf-8").splitlines():
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a torn line from an interrupted append
                if isinstance(rec, dict) and "key" in rec and "value" in rec:
                    self._items[str(rec["key"])] = rec["value"]

    def __contains__(self, key: str) -> bool:
        return key in self._items

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: str) -> Any:
        return self._items[key]

    def add_many(self, entries: Sequence[tuple[str, Any]]) -> None:
        """Record finished items; on disk, all of them in one append (flushed, synced)."""
        if self.path is not None and entries:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            text = "".join(
                json.dumps({"key": k, "value": v}, ensure_ascii=False) + "\n" for k, v in entries
            )
            with self.path.open("a+b") as fh:
                fh.seek(0, os.SEEK_END)
                if fh.tell():  # after a torn last line, start on a fresh one
                    fh.seek(-1, os.SEEK_END)
                    if fh.read(1) != b"\n":
                        text = "\n" + text
                fh.write(text.encode("utf-8"))
                fh.flush()
                os.fsync(fh.fileno())
        self._items.update(entries)


def run_batches(
    items: Sequence[Any],
    keys: Sequence[str],
    work: Callable[[list[Any]], list[Any]],
    cache: BatchCache,
    *,
    batch_size: int = 16,
    progress: ProgressFn | None = None,
) -> list[Any]:
    """``work`` on every item whose key is not cached, ``batch_size`` at a time.

    ``work(batch)`` returns one JSON-ready value per item of the batch. A batch is
    cached only when all of it succeeded. When ``work`` raises
    :class:`~databazaar.lm.generate.BackendError` the error is re-raised saying how many
    items are done and that running again resumes. Returns the values in item order
    (items with equal keys share one value and are generated once).
    """
    if len(items) != len(keys):
        raise InvalidInput(f"{len(items)} items but {len(keys)} keys")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InvalidInput(f"batch_size must be a positive integer, got {batch_size!r}")
    todo: list[int] = []
    seen: set[str] = set()
    for i, k in enumerate(keys):
        if k not in cache and k not in seen:
            todo.append(i)
            seen.add(k)
    if progress is not None and len(items) - len(todo):
        progress(len(items) - len(todo))
    for start in range(0, len(todo), batch_size):
        batch = todo[start : start + batch_size]
        try:
            values = work([items[i] for i in batch])
        except BackendError as exc:
            where = f" in {cache.path}" if cache.path is not None else ""
            done = sum(k in cache for k in set(keys))
            raise BackendError(
                f"{exc} (after {done} of {len(set(keys))} distinct records were finished and "
                f"cached{where}; nothing was written to the output)",
                hint="run the same command again to resume from the cache",
            ) from exc
        if len(values) != len(batch):
            raise BackendError(
                f"the generator returned {len(values)} results for {len(batch)} records"
            )
        cache.add_many([(keys[i], v) for i, v in zip(batch, values, strict=True)])
        if progress is not None:
            progress(len(batch))
    return [cache.get(k) for k in keys]


def default_cache_path(out: str | Path) -> Path:
    """The cache file next to an output file: ``OUT.cache.jsonl`` (``.OUT`` hidden)."""
    p = Path(out)
    return p.parent / f".{p.name}.cache.jsonl"


def generate_texts(
    items: Sequence[Any],
    request: Callable[[Any], list[dict[str, str]]],
    backend: Any,
    *,
    task: Mapping[str, Any],
    key_of: Callable[[Any], Any],
    max_new_tokens: int,
    temperature: float,
    random_state: int,
    batch_size: int,
    cache: str | Path | None,
    progress: ProgressFn | None,
) -> list[str]:
    """One generated text per item: ``backend.chat([request(item)])`` in cached batches.

    ``task`` (what is asked, e.g. ``{"task": "rationale", "style": "general"}``), the
    backend's name and the sampling options make up the cache key together with
    ``key_of(item)``. An empty text is a backend failure
    (:class:`~databazaar.lm.generate.BackendError`), so that batch is not cached.
    """
    from databazaar.lm.generate import SamplingParams

    params = SamplingParams(
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        random_state=random_state,
        logprobs=False,
    )
    name = getattr(backend, "name", type(backend).__name__)
    generator = {
        **task,
        "backend": name,
        "max_new_tokens": max_new_tokens,
        "temperature": temperature,
        "random_state": random_state,
    }
    keys = [item_key(generator, key_of(x)) for x in items]

    def work(batch: list[Any]) -> list[str]:
        texts = [g.text.strip() for g in backend.chat([request(x) for x in batch], params)]
        if any(not t for t in texts):
            raise BackendError(f"{name} wrote an empty text for a {task.get('task', 'request')}")
        return texts

    return run_batches(
        items, keys, work, BatchCache(cache), batch_size=batch_size, progress=progress
    )
