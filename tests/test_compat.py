"""Schema evolution: committed versions are BACKWARD_TRANSITIVE; the lint holds."""

from __future__ import annotations

import copy
import io
import json

from fastavro import parse_schema, schemaless_reader, schemaless_writer

from streams.cli import main
from streams.compat import check_candidate, check_catalog, lint, read_problems
from streams.registry import SchemaCatalog

CATALOG = SchemaCatalog.load()


def test_committed_schemas_are_clean():
    assert check_catalog(CATALOG) == {f: [] for f in CATALOG.families}


def test_adding_an_optional_field_is_compatible_and_fastavro_agrees():
    old = CATALOG.latest("orders").schema
    new = copy.deepcopy(dict(old))
    new["fields"].append(
        {"name": "loyalty_tier", "type": ["null", "string"], "default": None, "doc": "Tier."}
    )
    assert check_candidate(CATALOG, "orders", new) == []
    # fastavro resolution: new reader, old writer
    out = io.BytesIO()
    from tests.helpers import order

    schemaless_writer(out, parse_schema(copy.deepcopy(dict(old)), named_schemas={}), order())
    out.seek(0)
    rec = schemaless_reader(
        out,
        parse_schema(copy.deepcopy(dict(old)), named_schemas={}),
        parse_schema(new, named_schemas={}),
    )
    assert rec["loyalty_tier"] is None


def test_required_field_without_default_is_refused():
    new = copy.deepcopy(dict(CATALOG.latest("stores").schema))
    new["fields"].append({"name": "manager", "type": "string", "doc": "Manager."})
    problems = check_candidate(CATALOG, "stores", new)
    assert any("manager" in p and "no default" in p for p in problems)


def test_removing_an_enum_symbol_needs_the_reader_default():
    writer = {"type": "enum", "name": "E", "symbols": ["A", "B"]}
    assert read_problems({"type": "enum", "name": "E", "symbols": ["A"]}, writer)
    assert not read_problems(
        {"type": "enum", "name": "E", "symbols": ["A"], "default": "A"}, writer
    )


def test_type_changes_follow_promotion_rules():
    assert read_problems("long", "int") == []
    assert read_problems("int", "long")
    assert read_problems(["null", "string"], "string") == []
    assert read_problems("string", ["null", "string"])


def test_lint_catches_house_rule_breaks():
    bad = {
        "type": "record",
        "name": "R",
        "fields": [
            {"name": "a", "type": ["string", "null"], "doc": "x"},
            {"name": "b", "type": "int"},
            {"name": "c_time", "type": "long", "doc": "x"},
            {"name": "d", "type": {"type": "enum", "name": "E", "symbols": ["X"]}, "doc": "x"},
            {"name": "e", "type": {"type": "array", "items": "null"}, "doc": "x"},
        ],
    }
    text = "\n".join(lint(bad))
    for expected in ("a: optional", "b: field has no doc", "c_time: times", "enum E", "zero bytes"):
        assert expected in text


def test_cli_schemas_check_reports_a_candidate(tmp_path, capsys):
    new = copy.deepcopy(dict(CATALOG.latest("stores").schema))
    new["fields"].append({"name": "manager", "type": "string", "doc": "Manager."})
    path = tmp_path / "stores.v2.avsc"
    path.write_text(json.dumps(new))
    assert main(["schemas", "check", str(path), "--family", "stores"]) == 1
    assert "no default" in capsys.readouterr().out
    assert main(["schemas", "check"]) == 0
