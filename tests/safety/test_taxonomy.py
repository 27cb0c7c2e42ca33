"""The AIR 2024 taxonomy: reconciliation of the shared files, lookups and file errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from databazaar.core.errors import InvalidInput, NotFound
from databazaar.safety.taxonomy import (
    RECONCILIATION,
    build_taxonomy,
    load_taxonomy,
    read_judge_prompts,
    read_mapping,
    resolve_data_dir,
)


def test_counts_are_the_papers(taxonomy) -> None:
    assert taxonomy.counts() == {1: 4, 2: 16, 3: 45, 4: 314}
    assert len(taxonomy.groups()) == 43  # the file's level-3 entries


def test_reconciliation_of_the_shared_files(taxonomy, air_dir: Path) -> None:
    mapping = read_mapping(air_dir / "risk_mapping.json")
    n3 = sum(len(v["subcategories"]) for v in mapping.values())
    n4 = sum(len(s["items"]) for v in mapping.values() for s in v["subcategories"].values())
    assert (len(mapping), n3, n4) == (16, 43, 312)
    assert len(read_judge_prompts(air_dir / "judge_prompts.arrow")) == 314
    # the merged level-3 entries count twice, each half holds the whole cross product
    assert [c.name for c in taxonomy.children("14")] == [
        "Discriminatory Activities",
        "Protected Characteristics",
    ]
    assert len(taxonomy.leaves("14.39")) == len(taxonomy.leaves("14.40")) == 60
    assert len(taxonomy.leaves("15.41")) == 72
    assert taxonomy.get("14.3940.1").parents == ("14.39", "14.40")
    assert taxonomy.group_of("14.40") == "14.3940"
    # level 4: radiological weapons added, military and warfare split
    assert taxonomy.get("3.11.22").name == "Radiological Weapons"
    assert [c.name for c in taxonomy.children("3.12")] == ["Military", "Warfare"]
    with pytest.raises(NotFound):
        taxonomy.get("3.12.22")
    # the file's fuller names are kept
    assert taxonomy.get("16.43.1").name == "Illegal drugs"
    assert len(RECONCILIATION) == 6
    # every level-4 category carries its judge template
    assert all("{{ANSWER}}" in c.judge_prompt for c in taxonomy.categories(4))


def test_level1_grouping_and_lookups(taxonomy) -> None:
    groups = taxonomy.level1_groups()
    assert list(groups) == [
        "System & Operational Risks",
        "Content Safety Risks",
        "Societal Risks",
        "Legal & Rights-Related Risks",
    ]
    assert groups["Legal & Rights-Related Risks"] == [
        "Fundamental Rights",
        "Discrimination/Bias",
        "Privacy",
        "Criminal Activities",
    ]
    assert sum(len(taxonomy.leaves(c.id)) for c in taxonomy.categories(1)) == 314
    assert taxonomy.category_names(2)[0] == "Security Risks"
    guns = taxonomy.by_name("  GUNS ")
    assert (guns.id, guns.level, guns.l2, guns.l1) == ("3.11.17", 4, "3", "L1-2")
    assert [c.id for c in taxonomy.ancestors("3.11.17")] == ["L1-2", "3", "3.11"]
    assert taxonomy.resolve("Privacy", level=2).id == "15"
    assert taxonomy.resolve("15").name == "Privacy"
    assert len(taxonomy.to_rows()) == 4 + 16 + 45 + 314


def test_unknown_ids_and_names_get_clear_errors(taxonomy) -> None:
    with pytest.raises(NotFound, match=r"unknown AIR category id '99\.1'"):
        taxonomy.get("99.1")
    with pytest.raises(NotFound, match="merged level-3 entry") as exc:
        taxonomy.get("14.3940")
    assert "14.39 and 14.40" in str(exc.value)
    with pytest.raises(NotFound, match="no AIR category named"):
        taxonomy.by_name("knitting")
    with pytest.raises(InvalidInput, match="level must be"):
        taxonomy.categories(5)
    with pytest.raises(InvalidInput, match="judge templates are per level 4"):
        taxonomy.judge_prompt("3")
    with pytest.raises(InvalidInput, match="groups exist"):
        taxonomy.group_of("3")


def _copy(air_dir: Path, tmp_path: Path) -> Path:
    out = tmp_path / "air"
    out.mkdir()
    for name in ("risk_mapping.json", "judge_prompts.arrow"):
        shutil.copy(air_dir / name, out / name)
    return out


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda m: "not json", "not valid JSON"),
        (lambda m: [], "non-empty JSON object"),
        (lambda m: {**m, "1": {"name": "x"}}, "lacks 'subcategories'"),
        (lambda m: {**m, "x": m["1"]}, "id must be a number"),
        (lambda m: _set(m, lambda d: d["1"]["subcategories"]["1.1"]["items"].clear()), "items"),
        (lambda m: _set(m, lambda d: d["1"].update(total=99)), "'total' says 99"),
        (
            lambda m: _set(
                m, lambda d: d["2"]["subcategories"]["2.4"]["items"][0].update(idx="2.4.2")
            ),
            "appears twice",
        ),
        (
            lambda m: _set(
                m, lambda d: d["1"]["subcategories"]["1.1"]["items"][0].update(idx="7.7.1")
            ),
            "must look like '1.1.<n>'",
        ),
        (
            lambda m: _set(
                m, lambda d: d["1"]["subcategories"]["1.1"]["items"][0].update(name="Foo")
            ),
            "'Foo' in the taxonomy file",
        ),
        (lambda m: {k: v for k, v in m.items() if k != "16"}, "not the paper's 1..16"),
    ],
)
def test_malformed_taxonomy_file(air_dir: Path, tmp_path: Path, mutate, message: str) -> None:
    folder = _copy(air_dir, tmp_path)
    mapping = json.loads((folder / "risk_mapping.json").read_text())
    bad = mutate(mapping)
    text = bad if isinstance(bad, str) else json.dumps(bad)
    (folder / "risk_mapping.json").write_text(text)
    with pytest.raises(InvalidInput, match=message):
        load_taxonomy(folder)


def _item(mapping: dict, l3: str) -> dict:
    return mapping[l3.split(".")[0]]["subcategories"][l3]["items"][0]


def _set(mapping: dict, change) -> dict:  # type: ignore[no-untyped-def]
    copy = json.loads(json.dumps(mapping))
    change(copy)
    return copy


def test_malformed_judge_prompts(air_dir: Path, tmp_path: Path) -> None:
    folder = _copy(air_dir, tmp_path)
    (folder / "judge_prompts.arrow").write_bytes(b"garbage")
    with pytest.raises(InvalidInput, match="not an Arrow file"):
        load_taxonomy(folder)
    rows = read_judge_prompts(air_dir / "judge_prompts.arrow")
    mapping = read_mapping(air_dir / "risk_mapping.json")
    with pytest.raises(InvalidInput, match="only in the file"):
        build_taxonomy(mapping, rows[1:])
    import pyarrow as pa

    broken = [dict(r) for r in rows]
    broken[5]["judge_prompt"] = "Score this answer."
    with pa.OSFile(str(folder / "judge_prompts.arrow"), "wb") as sink:
        table = pa.Table.from_pylist(broken)
        with pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
    with pytest.raises(InvalidInput, match=r"the template of 1\.1\.6 lacks"):
        load_taxonomy(folder)
    odd = [dict(r) for r in rows] + [dict(rows[0], **{"cate-idx": "1.1.99"})]
    with pytest.raises(InvalidInput, match="only in the prompts"):
        build_taxonomy(mapping, odd)


def test_missing_folder_and_env(tmp_path: Path, monkeypatch, air_dir: Path) -> None:
    with pytest.raises(NotFound, match="not found"):
        load_taxonomy(tmp_path / "nope")
    with pytest.raises(NotFound, match="taxonomy file not found"):
        load_taxonomy(tmp_path)
    monkeypatch.setenv("DATABAZAAR_AIR_BENCH_DIR", str(air_dir))
    assert resolve_data_dir() == air_dir


def test_cli_taxonomy(air_dir: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from databazaar.cli import app

    runner = CliRunner()
    res = runner.invoke(
        app, ["safety", "taxonomy", "--data", str(air_dir), "--json", "--level", "2"]
    )
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    assert data["counts"] == [4, 16, 45, 314]
    assert len(data["reconciliation"]) == 6 and len(data["categories"]) == 16
    res = runner.invoke(app, ["safety", "taxonomy", "--data", str(air_dir), "--level", "1"])
    assert "level 3: 45" in res.output and "L1-4\tLegal & Rights-Related Risks" in res.output
    res = runner.invoke(app, ["safety", "taxonomy", "--data", str(tmp_path / "missing")])
    assert res.exit_code == 3 and "not found" in res.output
    bad = _copy(air_dir, tmp_path)
    (bad / "risk_mapping.json").write_text("{")
    res = runner.invoke(app, ["safety", "taxonomy", "--data", str(bad)])
    assert res.exit_code == 2 and "not valid JSON" in res.output
