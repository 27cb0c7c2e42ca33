"""Multi-domain corpora: builder, folder/JSONL loader, built-in offline corpus, mixtures."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest

from databazaar.core.errors import InvalidInput, NotFound
from databazaar.lm import (
    BUILTIN_DOMAINS,
    build_corpus,
    builtin_corpus,
    chunk_text,
    load_corpus_dir,
    mixture_blocks,
    split_documents,
    tokenize_corpus,
)

DOCS = [f"document number {i} " * 5 for i in range(20)]


def test_split_is_deterministic_disjoint_and_sized() -> None:
    tr, va = split_documents(DOCS, val_fraction=0.2, seed=1, name="x")
    assert len(va) == 4 and len(tr) == 16
    assert set(tr).isdisjoint(va) and set(tr) | set(va) == set(DOCS)
    assert (tr, va) == split_documents(DOCS, val_fraction=0.2, seed=1, name="x")
    assert va != split_documents(DOCS, val_fraction=0.2, seed=2, name="x")[1]
    # the split never depends on another domain's name or on Python's hash seed
    assert va != split_documents(DOCS, val_fraction=0.2, seed=1, name="y")[1]
    with pytest.raises(InvalidInput, match="val_fraction"):
        split_documents(DOCS, val_fraction=1.0, seed=0)
    with pytest.raises(InvalidInput, match="at least 2"):
        split_documents(DOCS[:1], val_fraction=0.5, seed=0, name="tiny")


def test_chunk_text_cuts_at_lines() -> None:
    text = "aaaa\nbbbb\ncccc\n" + "x" * 25
    pieces = chunk_text(text, 10)
    assert pieces == ["aaaa\nbbbb\n", "cccc\n", "x" * 10, "x" * 10, "x" * 5]
    assert "".join(pieces) == text
    with pytest.raises(InvalidInput, match="max_chars"):
        chunk_text(text, 0)


def test_build_corpus_and_summary() -> None:
    c = build_corpus({"a": DOCS, "b": [*DOCS[:10], "", "  "]}, val_fraction=0.1, seed=0)
    assert c.domains == ["a", "b"]
    s = c.summary()
    assert s["a"]["train_docs"] + s["a"]["val_docs"] == 20
    assert s["b"]["train_docs"] + s["b"]["val_docs"] == 10  # blanks dropped
    with pytest.raises(InvalidInput, match="no domains"):
        build_corpus({})
    with pytest.raises(InvalidInput, match="no non-empty"):
        build_corpus({"a": ["", " "]})
    with pytest.raises(InvalidInput, match="non-empty strings"):
        build_corpus({"": DOCS})


def test_load_corpus_dir_reads_folders_gzip_and_jsonl(tmp_path: Path) -> None:
    code = tmp_path / "code"
    code.mkdir()
    for i in range(5):
        (code / f"f{i}.py").write_text(f"def f{i}():\n    return {i}\n")
    (code / "g.py.gz").write_bytes(gzip.compress(b"print('zipped')\n"))
    (code / "binary.bin").write_bytes(b"\x00\x01\x02")
    with (tmp_path / "prose.jsonl").open("w") as fh:
        for i in range(6):
            fh.write(json.dumps({"text": f"sentence {i}."}) + "\n")
        fh.write(json.dumps({"text": "pinned to val", "split": "val"}) + "\n")
        fh.write(json.dumps({"text": "other domain", "domain": "extra", "split": "train"}) + "\n")
        fh.write(json.dumps({"text": "other val", "domain": "extra", "split": "val"}) + "\n")
    c = load_corpus_dir(tmp_path, val_fraction=0.2, seed=0)
    assert c.domains == ["code", "extra", "prose"]
    all_code = c.train["code"] + c.val["code"]
    assert len(all_code) == 6 and "print('zipped')\n" in all_code  # binary skipped
    assert "pinned to val" in c.val["prose"]
    assert c.train["extra"] == ["other domain"] and c.val["extra"] == ["other val"]
    again = load_corpus_dir(tmp_path, val_fraction=0.2, seed=0)
    assert again.train == c.train and again.val == c.val


def test_corpus_save_and_reload_keeps_splits(tmp_path: Path) -> None:
    c = build_corpus({"a": DOCS, "b": DOCS[:8]}, seed=3)
    c.save(tmp_path)
    back = load_corpus_dir(tmp_path)
    assert back.train == c.train and back.val == c.val


def test_load_corpus_dir_limits_docs_and_reports_missing(tmp_path: Path) -> None:
    (tmp_path / "big").mkdir()
    for i in range(30):
        (tmp_path / "big" / f"{i:02d}.txt").write_text(f"text {i}")
    (tmp_path / "lonely").mkdir()
    (tmp_path / "lonely" / "one.txt").write_text("only one document")
    c = load_corpus_dir(tmp_path, max_docs_per_domain=10)
    assert len(c.train["big"]) + len(c.val["big"]) == 10
    assert "lonely" in c.missing and "lonely" not in c.train


@pytest.mark.parametrize(
    ("content", "err", "msg"),
    [
        ("{not json\n", InvalidInput, "not valid JSON"),
        ('{"body": "x"}\n', InvalidInput, "no string field 'text'"),
    ],
)
def test_load_corpus_dir_bad_jsonl(tmp_path: Path, content: str, err: type, msg: str) -> None:
    (tmp_path / "d.jsonl").write_text(content)
    with pytest.raises(err, match=msg):
        load_corpus_dir(tmp_path)


def test_load_corpus_dir_errors(tmp_path: Path) -> None:
    with pytest.raises(NotFound, match="corpus folder not found"):
        load_corpus_dir(tmp_path / "missing")
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(InvalidInput, match="not a folder"):
        load_corpus_dir(tmp_path / "file.txt")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InvalidInput, match="empty corpus"):
        load_corpus_dir(tmp_path / "empty")


def test_builtin_corpus_has_four_real_domains() -> None:
    c = builtin_corpus(max_docs_per_domain=12, seed=0)
    assert c.domains == list(BUILTIN_DOMAINS) and not c.missing
    for d in c.domains:
        assert len(c.train[d]) + len(c.val[d]) == 12
        assert len(c.val[d]) >= 1 and set(c.train[d]).isdisjoint(c.val[d])
        assert all(len(t) <= 4000 for t in c.train[d])
    code = "".join(c.train["python_code"])
    assert "def " in code or "import " in code
    assert "licen" in "".join(c.train["licenses"]).lower()
    assert any(".TH" in t or ".SH" in t or ".B" in t for t in c.train["man_pages"])
    again = builtin_corpus(max_docs_per_domain=12, seed=0)
    assert again.val == c.val


def test_builtin_corpus_from_given_folders_and_missing_sources(tmp_path: Path) -> None:
    std = tmp_path / "stdlib"
    std.mkdir()
    for i in range(4):
        (std / f"m{i}.py").write_text(
            f'"""Module {i} documentation, long enough to keep as a document here."""\n'
            f"def f{i}(x):\n"
            f'    """Return x plus {i}; a docstring that is also long enough to keep."""\n'
            f"    return x + {i}  # some code that is long enough to be kept as well\n"
        )
    c = builtin_corpus(
        domains=["python_code", "python_docstrings", "man_pages"],
        stdlib_dir=std,
        man_dir=tmp_path / "no_man",
        max_docs_per_domain=10,
    )
    assert c.domains == ["python_code", "python_docstrings"]
    assert "man_pages" in c.missing
    code = c.train["python_code"] + c.val["python_code"]
    docs = c.train["python_docstrings"] + c.val["python_docstrings"]
    assert all('"""' not in t for t in code) and any("return x + 1" in t for t in code)
    assert any("Module 2 documentation" in t for t in docs)
    with pytest.raises(InvalidInput, match="unknown built-in domain"):
        builtin_corpus(domains=["poetry"])
    with pytest.raises(NotFound, match="no built-in corpus domain"):
        builtin_corpus(domains=["man_pages"], man_dir=tmp_path / "nothing")


def test_tokenize_and_mixture_blocks(tiny_lm: dict) -> None:
    tok = tiny_lm["tokenizer"]
    c = build_corpus(
        {"code": ["def f(x):\n    return x * 2\n" * 8] * 10, "prose": ["the cat sat. " * 20] * 10},
        seed=0,
    )
    data = tokenize_corpus(c, tok, block_size=8)
    assert data.domains == ["code", "prose"] and data.block_size == 8
    assert data.vocab_size == 300 and data.eos_token_id == tok.eos_token_id
    n_code = len(data.train["code"])
    blocks, labels = mixture_blocks(data, {"code": 8 * 3, "prose": 8 * 5}, seed=0)
    assert blocks.shape == (8, 8) and np.bincount(labels).tolist() == [3, 5]
    # asking for more than a domain holds repeats it, a full pass before any repeat
    many, lab = mixture_blocks(data, [8 * (n_code + 2), 0], seed=1)
    assert len(many) == n_code + 2 and set(lab.tolist()) == {0}
    uniq = {tuple(b) for b in data.train["code"]}
    assert {tuple(b) for b in many} == uniq
    again, _ = mixture_blocks(data, {"code": 24, "prose": 40}, seed=0)
    assert np.array_equal(again, blocks)
    # nested data: more of one domain extends its blocks, the other domain is unchanged
    more, more_lab = mixture_blocks(data, {"code": 48, "prose": 40}, seed=0)
    code3 = {tuple(b) for b in blocks[labels == 0]}
    code6 = {tuple(b) for b in more[more_lab == 0]}
    assert code3 <= code6 and int((more_lab == 0).sum()) == 6
    assert sorted(map(tuple, more[more_lab == 1])) == sorted(map(tuple, blocks[labels == 1]))
    with pytest.raises(InvalidInput, match="unknown domain"):
        mixture_blocks(data, {"poetry": 8})
    with pytest.raises(InvalidInput, match="non-negative"):
        mixture_blocks(data, [-8, 8])
    with pytest.raises(InvalidInput, match="mixture is empty"):
        mixture_blocks(data, [1, 1])
    with pytest.raises(InvalidInput, match="too little text"):
        tokenize_corpus(c, tok, block_size=100_000)
    small = data.limit_val(1)
    assert all(len(v) == 1 for v in small.val.values())
