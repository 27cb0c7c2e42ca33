"""MkDocs hooks of the documentation site (``mkdocs.yml``).

* ``benchmarks/results/*.md`` (and their figures) become the pages under
  ``benchmarks/``, with an index, so the site shows the committed results as they are;
* math that pymdownx.arithmatex marked (``$...$``, ``$$...$$``) is converted to MathML
  with latex2mathml while the site is built: browsers render MathML natively, so the
  pages load no script and no font from anywhere.  A formula that does not convert
  is a build error (``mkdocs build --strict`` fails on it).
"""

from __future__ import annotations

import html
import logging
import re
from pathlib import Path
from typing import Any

log = logging.getLogger("mkdocs.hooks.databazaar")

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "benchmarks" / "results"
_FIGURES = (".svg", ".png")


def _result_pages() -> list[Path]:
    return sorted(p for p in RESULTS.glob("*.md") if not p.name.endswith("_quick.md"))


def _title(path: Path) -> str:
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("# "):
            return line[2:].strip()
    return path.stem


def on_config(config: Any) -> Any:
    """Expand the nav's "Benchmarks" entry into the index and one page per result."""
    pages = [{"Overview": "benchmarks/index.md"}] + [
        {_title(p): f"benchmarks/{p.name}"} for p in _result_pages()
    ]
    for i, entry in enumerate(config["nav"]):
        if isinstance(entry, dict) and "Benchmarks" in entry:
            config["nav"][i] = {"Benchmarks": pages}
    return config


def on_files(files: Any, config: Any) -> Any:
    from mkdocs.structure.files import File

    rows = []
    for page in _result_pages():
        files.append(
            File.generated(config, f"benchmarks/{page.name}", content=page.read_text("utf-8"))
        )
        rows.append(f"| [{_title(page)}]({page.name}) | `benchmarks/results/{page.name}` |")
    for fig in sorted(RESULTS.rglob("*")):
        if fig.suffix in _FIGURES and fig.is_file():
            rel = fig.relative_to(RESULTS).as_posix()
            files.append(File.generated(config, f"benchmarks/{rel}", content=fig.read_bytes()))
    index = (
        "# Benchmarks\n\nEvery page below is a file of `benchmarks/results/` as the benchmark "
        "scripts in `benchmarks/` wrote it (peers and ours side by side in one run, with the "
        "machine's load average). The map on the [home page](../index.md) says which "
        "result each one measures.\n\n| result | file |\n|---|---|\n" + "\n".join(rows) + "\n"
    )
    files.append(File.generated(config, "benchmarks/index.md", content=index))
    return files


_RESULT_LINK = re.compile(r"\]\(\.\./benchmarks/results/([\w.-]+\.(?:md|svg|png))")


def on_page_markdown(markdown: str, page: Any, **kwargs: Any) -> str:
    """Links from a guide to ``../benchmarks/results/X`` (right on GitHub) go to the
    generated benchmark page on the site."""
    if "/" in page.file.src_uri:
        return markdown
    return _RESULT_LINK.sub(lambda m: f"](benchmarks/{m.group(1)})", markdown)


_INLINE = re.compile(r'<span class="arithmatex">\\\((.+?)\\\)</span>', re.S)
_BLOCK = re.compile(r'<div class="arithmatex">\\\[(.+?)\\\]</div>', re.S)


def _mathml(tex: str, display: str, where: str) -> str:
    from latex2mathml.converter import convert

    source = html.unescape(tex).strip()
    try:
        return convert(source, display=display)
    except Exception as exc:  # latex2mathml raises plain exceptions on bad input
        log.warning("%s: formula %r does not convert to MathML: %s", where, source, exc)
        return f"<code>{html.escape(source)}</code>"


def on_page_content(content: str, page: Any, **kwargs: Any) -> str:
    where = page.file.src_uri
    content = _BLOCK.sub(lambda m: _mathml(m.group(1), "block", where), content)
    return _INLINE.sub(lambda m: _mathml(m.group(1), "inline", where), content)
