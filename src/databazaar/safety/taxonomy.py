"""The AIR 2024 risk taxonomy: 4 level-1, 16 level-2, 45 level-3 and 314 level-4 categories.

Zeng, Klyman, Zhou, Yang, Pan, Jia, Song, Liang, Li: *AI Risk Categorization Decoded (AIR
2024)*, arXiv 2406.17864, builds the taxonomy from 8 government regulations and 16
company policies; *AIR-Bench 2024* (arXiv 2407.17436) prompts a model in every level-4
category and scores each answer with a per-category judge template.

The taxonomy is read from two files the user gives (never bundled; they are CC-BY-4.0
data of the benchmark's authors):

* ``risk_mapping.json`` -- levels 2 to 4: ``{l2_id: {"name", "total", "subcategories":
  {l3_id: {"name", "items": [{"idx", "name"}, ...]}}}}``;
* ``judge_prompts.arrow`` -- one row per level-4 category (``cate-idx``, ``l2-name``,
  ``l3-name``, ``l4-name``, ``judge_prompt``), an Arrow file from a ``datasets`` cache.

The two disagree with each other and with the paper in ways the benchmark's history
explains; :data:`RECONCILIATION` states every difference, and :func:`load_taxonomy`
applies only those (any other difference is an error):

* level 3 -- the file merges two pairs of the paper's level-3 categories into one entry
  each, because their level-4 items are the cross product of both: ``14.3940``
  (discriminatory activities x protected characteristics, 3 x 20 = 60 items) and
  ``15.4142`` (privacy violations x sensitive data types, 8 x 9 = 72 items).  They count
  as two level-3 categories each (:data:`SPLIT_LEVEL3`), 43 + 2 = 45; both halves of a
  pair contain all of its items.  The merged id stays a valid *group* id
  (:meth:`Taxonomy.groups`), which is what a classifier can tell apart.
* level 4 -- the judge-prompt set has 314 rows; the file lacks ``3.11.22``
  "Radiological Weapons" and has one ``3.12.22`` "Military and Warfare" where the
  prompt set has ``3.12.23`` "Military" and ``3.12.24`` "Warfare" (312 - 1 + 3 = 314).
* level 1 -- not in either file; the paper groups the level-2 ids as in :data:`LEVEL1`.

This module imports nothing from databazaar but :mod:`databazaar.core`, so every layer
can use it for category names (:meth:`Taxonomy.category_names`).  It runs slightly over
500 lines because the reconciliation tables, the file validation and the lookups are
one concept that other layers import as a unit.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from databazaar.core.errors import InvalidInput, NotFound

DATA_ENV = "DATABAZAAR_AIR_BENCH_DIR"
MAPPING_FILE = "risk_mapping.json"
JUDGE_FILE = "judge_prompts.arrow"
JUDGE_COLUMNS = ("cate-idx", "l2-name", "l3-name", "l4-name", "judge_prompt")

#: Level 1 of the paper (not in the files): id, name and the level-2 ids it groups.
LEVEL1: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("L1-1", "System & Operational Risks", ("1", "2")),
    ("L1-2", "Content Safety Risks", ("3", "4", "5", "6", "7")),
    ("L1-3", "Societal Risks", ("8", "9", "10", "11", "12")),
    ("L1-4", "Legal & Rights-Related Risks", ("13", "14", "15", "16")),
)

#: Merged level-3 entries of the file and the paper's two categories each stands for.
SPLIT_LEVEL3: dict[str, tuple[tuple[str, str], tuple[str, str]]] = {
    "14.3940": (("14.39", "Discriminatory Activities"), ("14.40", "Protected Characteristics")),
    "15.4142": (
        ("15.41", "Unauthorized Privacy Violations"),
        ("15.42", "Types of Sensitive Data"),
    ),
}

#: Level-4 entries of the file replaced by the judge-prompt set's entries.
REPLACED_LEVEL4: dict[str, tuple[str, ...]] = {"3.12.22": ("3.12.23", "3.12.24")}

#: Level-4 entries only the judge-prompt set has (id -> name).
ADDED_LEVEL4: dict[str, str] = {
    "3.11.22": "Radiological Weapons",
    "3.12.23": "Military",
    "3.12.24": "Warfare",
}

#: Names that differ between the file and the judge-prompt set: id -> (file, prompt set).
#: The file's names are used (the prompt set lost words such as "Illegal").
RENAMED: dict[str, tuple[str, str]] = {
    "3.8.5": (
        "Belittling victimhood or violent events/Denying the deeds of martyrdom",
        "Belittling victimhood or violent events",
    ),
    "3.8.6": (
        "Denying or minimizing well-documented, major violent events or the victimhood of "
        "such events",
        "Denying or minimizing well-documented, major violent events or the victimhood of "
        "such events/Denying the deeds of martyrdom",
    ),
    "9.31": ("Fraudulent Schemes", "Schemes"),
    "16.43.1": ("Illegal drugs", "drugs"),
    "16.44": ("Illegal services/exploitation", "services/exploitation"),
}

#: Every reconciliation step, as shown by ``databazaar safety taxonomy``.
RECONCILIATION: tuple[str, ...] = (
    "level 1: added from the paper (4 groups of level-2 ids)",
    "level 3: file entry 14.3940 counts as 14.39 Discriminatory Activities + "
    "14.40 Protected Characteristics (its 60 items are their cross product)",
    "level 3: file entry 15.4142 counts as 15.41 Unauthorized Privacy Violations + "
    "15.42 Types of Sensitive Data (its 72 items are their cross product)",
    "level 4: 3.11.22 Radiological Weapons taken from the judge-prompt set (missing in the file)",
    "level 4: file entry 3.12.22 Military and Warfare replaced by the judge-prompt set's "
    "3.12.23 Military and 3.12.24 Warfare",
    "names: the file's names are kept where the judge-prompt set differs "
    "(3.8.5, 3.8.6, 9.31, 16.43.1, 16.44)",
)

PAPER_COUNTS = {1: 4, 2: 16, 3: 45, 4: 314}
_ID = re.compile(r"^\d+(\.\d+){0,2}$")


@dataclass(frozen=True)
class Category:
    """One category of the taxonomy.

    ``parents`` are the ids one level up (two for level-4 items of a merged level-3
    entry); ``group`` is the level-3 *group* id (the file's entry: equal to the level-3 id
    except for the merged pairs); ``judge_prompt`` is the level-4 judge template.
    """

    id: str
    name: str
    level: int
    parents: tuple[str, ...] = ()
    l1: str = ""
    l2: str | None = None
    group: str | None = None
    judge_prompt: str | None = None

    @property
    def parent(self) -> str | None:
        """The first parent id (``None`` at level 1)."""
        return self.parents[0] if self.parents else None


@dataclass
class Taxonomy:
    """The reconciled AIR 2024 taxonomy with lookups by id and name.

    Build it with :func:`load_taxonomy` (from a folder) or :meth:`from_records`.
    """

    categories_by_id: dict[str, Category]
    group_names: dict[str, str]
    group_members: dict[str, tuple[str, ...]]
    source: str = ""
    notes: tuple[str, ...] = field(default_factory=tuple)

    # ------------------------------------------------------------------ lookups
    def categories(self, level: int) -> list[Category]:
        """All categories of ``level`` (1-4) in taxonomy order."""
        _check_level(level)
        return [c for c in self.categories_by_id.values() if c.level == level]

    def category_names(self, level: int) -> list[str]:
        """The names of all categories of ``level`` in taxonomy order."""
        return [c.name for c in self.categories(level)]

    def counts(self) -> dict[int, int]:
        """Number of categories per level: ``{1: 4, 2: 16, 3: 45, 4: 314}``."""
        return {lvl: len(self.categories(lvl)) for lvl in (1, 2, 3, 4)}

    def get(self, category_id: str) -> Category:
        """The category with this id; :class:`NotFound` (naming the fix) otherwise."""
        key = str(category_id).strip()
        try:
            return self.categories_by_id[key]
        except KeyError:
            pass
        if key in SPLIT_LEVEL3:
            halves = " and ".join(h[0] for h in SPLIT_LEVEL3[key])
            raise NotFound(
                f"{key!r} is a merged level-3 entry of the taxonomy file",
                hint=f"use {halves}, or groups() for the merged group",
            )
        hint = "ids look like L1-2, 3, 3.11 or 3.11.22; see `databazaar safety taxonomy`"
        raise NotFound(f"unknown AIR category id {key!r}", hint=hint)

    def find(self, name: str, level: int | None = None) -> list[Category]:
        """Categories whose name equals ``name`` (case-insensitive), optionally at one level."""
        want = _norm(name)
        if level is not None:
            _check_level(level)
        return [
            c
            for c in self.categories_by_id.values()
            if _norm(c.name) == want and (level is None or c.level == level)
        ]

    def by_name(self, name: str, level: int | None = None) -> Category:
        """The one category named ``name``; :class:`NotFound` or :class:`InvalidInput`."""
        hits = self.find(name, level)
        if not hits:
            where = "" if level is None else f" at level {level}"
            raise NotFound(f"no AIR category named {name!r}{where}")
        if len(hits) > 1:
            ids = ", ".join(c.id for c in hits)
            raise InvalidInput(f"{name!r} names several categories ({ids})", hint="pass a level")
        return hits[0]

    def resolve(self, key: str, level: int | None = None) -> Category:
        """A category from an id or a name (anything shaped like an id is looked up as one)."""
        text = str(key).strip()
        if text in self.categories_by_id or _ID.match(text) or text.startswith("L1-"):
            return self.get(text)
        return self.by_name(key, level)

    def children(self, category_id: str) -> list[Category]:
        """The categories one level below ``category_id``."""
        cat = self.get(category_id)
        return [c for c in self.categories_by_id.values() if cat.id in c.parents]

    def leaves(self, category_id: str) -> list[Category]:
        """All level-4 categories under ``category_id`` (itself if it is level 4)."""
        cat = self.get(category_id)
        if cat.level == 4:
            return [cat]
        out: dict[str, Category] = {}
        for child in self.children(cat.id):
            for leaf in self.leaves(child.id):
                out[leaf.id] = leaf
        return list(out.values())

    def ancestors(self, category_id: str) -> list[Category]:
        """Level-1, level-2 and group-level-3 ancestors of a category, top down."""
        cat = self.get(category_id)
        out = [self.get(cat.l1)]
        if cat.level >= 3 and cat.l2 is not None:
            out.append(self.get(cat.l2))
        if cat.level == 4:
            out.extend(self.get(p) for p in cat.parents)
        return out

    def level1_groups(self) -> dict[str, list[str]]:
        """Level-1 name -> the names of its level-2 categories."""
        return {
            l1.name: [self.get(c).name for c in self.children_ids(l1.id)]
            for l1 in self.categories(1)
        }

    def children_ids(self, category_id: str) -> list[str]:
        return [c.id for c in self.children(category_id)]

    # ------------------------------------------------------------------- groups
    def groups(self) -> list[str]:
        """Level-3 group ids (the file's 43 entries; merged pairs are one group)."""
        return list(self.group_names)

    def group_of(self, category_id: str) -> str:
        """The level-3 group id of a level-3 or level-4 category."""
        cat = self.get(category_id)
        if cat.group is None:
            raise InvalidInput(f"{cat.id} is level {cat.level}; groups exist at levels 3 and 4")
        return cat.group

    def judge_prompt(self, category_id: str) -> str:
        """The judge template of a level-4 category."""
        cat = self.get(category_id)
        if cat.judge_prompt is None:
            raise InvalidInput(f"{cat.id} is level {cat.level}; judge templates are per level 4")
        return cat.judge_prompt

    def to_rows(self) -> list[dict[str, Any]]:
        """One dict per category (id, name, level, parents, l1, l2, group)."""
        return [
            {
                "id": c.id,
                "name": c.name,
                "level": c.level,
                "parents": list(c.parents),
                "l1": c.l1,
                "l2": c.l2,
                "group": c.group,
            }
            for c in self.categories_by_id.values()
        ]


def _check_level(level: int) -> None:
    if level not in (1, 2, 3, 4):
        raise InvalidInput(f"level must be 1, 2, 3 or 4, got {level!r}")


def _norm(text: str) -> str:
    return " ".join(str(text).lower().split())


# ---------------------------------------------------------------------- reading files
def default_data_dir() -> Path | None:
    """Where the AIR-Bench files are looked for when no folder is given.

    ``$DATABAZAAR_AIR_BENCH_DIR`` if set, else ``../shared/data/air-bench-2024`` next to
    the repository holding this package (a development checkout), else ``None``.
    """
    env = os.environ.get(DATA_ENV, "").strip()
    if env:
        return Path(env).expanduser()
    repo_root = Path(__file__).resolve().parents[3]
    candidate = repo_root.parent / "shared" / "data" / "air-bench-2024"
    return candidate if candidate.is_dir() else None


def resolve_data_dir(data_dir: str | Path | None = None) -> Path:
    """The folder holding ``risk_mapping.json`` and ``judge_prompts.arrow``."""
    path = Path(data_dir).expanduser() if data_dir is not None else default_data_dir()
    if path is None:
        raise NotFound(
            "no AIR-Bench 2024 data folder given",
            hint=f"pass --data DIR or set {DATA_ENV} to a folder with {MAPPING_FILE} "
            f"and {JUDGE_FILE} (from stanford-crfm/air-bench-2024, CC-BY-4.0)",
        )
    if not path.is_dir():
        raise NotFound(f"AIR-Bench data folder not found: {path}")
    return path


def read_mapping(path: str | Path) -> dict[str, Any]:
    """Read and validate ``risk_mapping.json``; :class:`InvalidInput` names the defect."""
    p = Path(path)
    if not p.is_file():
        raise NotFound(f"taxonomy file not found: {p}")
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidInput(f"{p.name} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict) or not data:
        raise InvalidInput(f"{p.name} must be a non-empty JSON object of level-2 entries")
    seen: set[str] = set()
    for l2_id, l2 in data.items():
        where = f"{p.name}: level-2 entry {l2_id!r}"
        if not _ID.match(str(l2_id)) or "." in l2_id:
            raise InvalidInput(f"{where}: id must be a number like '3'")
        if not isinstance(l2, dict):
            raise InvalidInput(f"{where} must be an object")
        for key in ("name", "subcategories"):
            if key not in l2:
                raise InvalidInput(f"{where} lacks {key!r}")
        subs = l2["subcategories"]
        if not isinstance(subs, dict) or not subs:
            raise InvalidInput(f"{where}: 'subcategories' must be a non-empty object")
        n_items = 0
        for l3_id, l3 in subs.items():
            w3 = f"{p.name}: level-3 entry {l3_id!r}"
            if not str(l3_id).startswith(f"{l2_id}.") or not _ID.match(str(l3_id)):
                raise InvalidInput(f"{w3} must look like '{l2_id}.<n>' under level 2 {l2_id!r}")
            if not isinstance(l3, dict) or not isinstance(l3.get("name"), str):
                raise InvalidInput(f"{w3} must be an object with a 'name'")
            items = l3.get("items")
            if not isinstance(items, list) or not items:
                raise InvalidInput(f"{w3}: 'items' must be a non-empty list")
            for item in items:
                if not isinstance(item, dict) or not {"idx", "name"} <= set(item):
                    raise InvalidInput(f"{w3}: every item needs 'idx' and 'name'")
                idx = str(item["idx"])
                if not idx.startswith(f"{l3_id}.") or not _ID.match(idx):
                    raise InvalidInput(f"{w3}: item id {idx!r} must look like '{l3_id}.<n>'")
                if idx in seen:
                    raise InvalidInput(f"{p.name}: level-4 id {idx!r} appears twice")
                seen.add(idx)
                n_items += 1
        total = l2.get("total")
        if total is not None and total != n_items:
            raise InvalidInput(f"{where}: 'total' says {total} but it lists {n_items} items")
    return data


def read_judge_prompts(path: str | Path) -> list[dict[str, str]]:
    """Read ``judge_prompts.arrow`` (Arrow stream or file) into one dict per row."""
    import pyarrow as pa

    p = Path(path)
    if not p.is_file():
        raise NotFound(f"judge-prompt file not found: {p}")
    table = None
    errors = []
    for opener in (pa.ipc.open_stream, pa.ipc.open_file):
        try:
            with pa.memory_map(str(p)) as source:
                table = opener(source).read_all()
            break
        except (pa.ArrowInvalid, OSError) as exc:
            errors.append(str(exc))
    if table is None:
        raise InvalidInput(f"{p.name} is not an Arrow file: {errors[-1]}")
    missing = [c for c in JUDGE_COLUMNS if c not in table.column_names]
    if missing:
        raise InvalidInput(f"{p.name} lacks columns {missing}", hint=f"expected {JUDGE_COLUMNS}")
    rows = table.select(list(JUDGE_COLUMNS)).to_pylist()
    seen: set[str] = set()
    for row in rows:
        idx = row["cate-idx"]
        if not isinstance(idx, str) or not _ID.match(idx) or idx.count(".") != 2:
            raise InvalidInput(f"{p.name}: bad level-4 id {idx!r}")
        if idx in seen:
            raise InvalidInput(f"{p.name}: level-4 id {idx!r} appears twice")
        seen.add(idx)
        tpl = row["judge_prompt"]
        if not isinstance(tpl, str) or "{{QUESTION}}" not in tpl or "{{ANSWER}}" not in tpl:
            raise InvalidInput(
                f"{p.name}: the template of {idx} lacks the {{{{QUESTION}}}}/{{{{ANSWER}}}} slots"
            )
    return rows


# ----------------------------------------------------------------------- reconciling
def load_taxonomy(data_dir: str | Path | None = None) -> Taxonomy:
    """Load, validate and reconcile the taxonomy from a folder (see the module notes)."""
    folder = resolve_data_dir(data_dir)
    mapping = read_mapping(folder / MAPPING_FILE)
    prompts = read_judge_prompts(folder / JUDGE_FILE)
    return build_taxonomy(mapping, prompts, source=str(folder))


def build_taxonomy(
    mapping: dict[str, Any], prompts: Iterable[dict[str, str]], *, source: str = ""
) -> Taxonomy:
    """Reconcile a validated mapping with the judge-prompt rows into a :class:`Taxonomy`.

    Raises :class:`InvalidInput` for any difference not listed in :data:`RECONCILIATION`.
    """
    by_idx = {row["cate-idx"]: row for row in prompts}
    cats: dict[str, Category] = {}
    l1_of: dict[str, str] = {}
    for l1_id, l1_name, l2_ids in LEVEL1:
        cats[l1_id] = Category(l1_id, l1_name, 1, l1=l1_id)
        for l2_id in l2_ids:
            l1_of[l2_id] = l1_id
    if set(mapping) != set(l1_of):
        raise InvalidInput(
            f"the taxonomy file's level-2 ids {sorted(mapping, key=_idkey)} are not the "
            f"paper's 1..16",
            hint="use risk_mapping.json of stanford-crfm/air-bench-2024",
        )
    group_names: dict[str, str] = {}
    group_members: dict[str, tuple[str, ...]] = {}
    leaves: list[tuple[str, str, str]] = []  # (l4 id, name, group)
    file_ids: set[str] = set()
    for l2_id in sorted(mapping, key=_idkey):
        l2 = mapping[l2_id]
        l1 = l1_of[l2_id]
        cats[l2_id] = Category(l2_id, l2["name"], 2, (l1,), l1=l1, l2=l2_id)
        for l3_id, l3 in l2["subcategories"].items():
            group_names[l3_id] = l3["name"]
            halves = SPLIT_LEVEL3.get(l3_id, ((l3_id, l3["name"]),))
            group_members[l3_id] = tuple(h[0] for h in halves)
            for hid, hname in halves:
                cats[hid] = Category(hid, hname, 3, (l2_id,), l1=l1, l2=l2_id, group=l3_id)
            for item in l3["items"]:
                idx = str(item["idx"])
                file_ids.add(idx)
                if idx in REPLACED_LEVEL4 and idx not in by_idx:
                    continue
                leaves.append((idx, item["name"], l3_id))
    for idx, name in ADDED_LEVEL4.items():
        if idx not in file_ids and idx in by_idx:
            group = idx.rsplit(".", 1)[0]
            if group not in group_names:
                raise InvalidInput(f"level-4 {idx} has no level-3 entry {group} in the file")
            leaves.append((idx, name, group))
    leaf_ids = {idx for idx, _, _ in leaves}
    extra = sorted(set(by_idx) - leaf_ids, key=_idkey)
    missing = sorted(leaf_ids - set(by_idx), key=_idkey)
    if extra or missing:
        raise InvalidInput(
            "the taxonomy file and the judge prompts disagree beyond the known reconciliation: "
            f"only in the prompts {extra[:5]}, only in the file {missing[:5]}",
            hint="use the matching files of stanford-crfm/air-bench-2024",
        )
    for idx, name, group in sorted(leaves, key=lambda t: _idkey(t[0])):
        row = by_idx[idx]
        _same_name(idx, name, row["l4-name"])
        _same_name(group, group_names[group], row["l3-name"])
        l2_id = idx.split(".", 1)[0]
        if _norm(row["l2-name"]) != _norm(cats[l2_id].name):
            raise InvalidInput(
                f"level-4 {idx}: level-2 name {row['l2-name']!r} differs from the file's "
                f"{cats[l2_id].name!r}"
            )
        cats[idx] = Category(
            idx,
            name,
            4,
            group_members[group],
            l1=l1_of[l2_id],
            l2=l2_id,
            group=group,
            judge_prompt=row["judge_prompt"],
        )
    ordered = dict(sorted(cats.items(), key=lambda kv: (kv[1].level, _idkey(kv[0]))))
    return Taxonomy(ordered, group_names, group_members, source=source, notes=RECONCILIATION)


def _same_name(idx: str, in_file: str, in_prompts: str) -> None:
    if _norm(in_file) == _norm(in_prompts):
        return
    known = RENAMED.get(idx)
    if known is None or (_norm(known[0]), _norm(known[1])) != (_norm(in_file), _norm(in_prompts)):
        raise InvalidInput(
            f"{idx} is {in_file!r} in the taxonomy file but {in_prompts!r} in the judge prompts",
            hint="use the matching files of stanford-crfm/air-bench-2024",
        )


def _idkey(idx: str) -> tuple[int, ...]:
    if idx.startswith("L1-"):
        return (int(idx[3:]),)
    return tuple(int(x) for x in idx.split("."))
