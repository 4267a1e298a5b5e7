"""Schema evolution rules: Avro resolution compatibility and our house lint.

:func:`read_problems` applies the Avro specification's schema-resolution rules statically:
can a reader with schema R read every datum a writer with schema W can write? An empty list
means yes. BACKWARD_TRANSITIVE for a subject means every version can read every older one.

:func:`lint` checks the conventions every event schema follows: a ``doc`` on every field,
``timestamp-millis`` times, optional fields as ``["null", T]`` with a ``null`` default,
enums with a ``default`` symbol (so symbols can be added), and no array or map whose items
can be encoded in zero bytes (a few bytes could otherwise decode into millions of items).

>>> old = {"type": "record", "name": "R", "fields": [{"name": "a", "type": "int"}]}
>>> new = {"type": "record", "name": "R", "fields": [
...     {"name": "a", "type": "long"}, {"name": "b", "type": "string"}]}
>>> read_problems(new, old)
['R.b: field missing in the writer and has no default']
>>> new["fields"][1]["default"] = ""
>>> read_problems(new, old)
[]
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from streams.registry import SchemaCatalog, SchemaVersion

__all__ = ["check_candidate", "check_catalog", "lint", "read_problems"]

_PRIMITIVES = {"null", "boolean", "int", "long", "float", "double", "bytes", "string"}
_PROMOTIONS = {
    ("int", "long"),
    ("int", "float"),
    ("int", "double"),
    ("long", "float"),
    ("long", "double"),
    ("float", "double"),
    ("string", "bytes"),
    ("bytes", "string"),
}


class _Names:
    """Named types (records, enums, fixed) seen in one schema, by full and short name."""

    def __init__(self) -> None:
        self.types: dict[str, Mapping[str, Any]] = {}

    def collect(self, schema: Any, namespace: str = "") -> None:
        if isinstance(schema, list):
            for branch in schema:
                self.collect(branch, namespace)
        elif isinstance(schema, Mapping):
            kind = schema.get("type")
            if kind in ("record", "error", "enum", "fixed"):
                ns = schema.get("namespace", namespace)
                name = schema["name"]
                self.types[name] = schema
                self.types[name if "." in name else f"{ns}.{name}".lstrip(".")] = schema
                for f in schema.get("fields", ()):
                    self.collect(f["type"], ns)
            elif kind == "array":
                self.collect(schema["items"], namespace)
            elif kind == "map":
                self.collect(schema["values"], namespace)

    def resolve(self, schema: Any) -> Any:
        if isinstance(schema, str) and schema not in _PRIMITIVES:
            return self.types.get(schema, schema)
        if isinstance(schema, Mapping) and schema.get("type") in _PRIMITIVES:
            return schema["type"]  # {"type": "long", "logicalType": ...} reads as its base type
        return schema


def _kind(schema: Any) -> str:
    if isinstance(schema, list):
        return "union"
    if isinstance(schema, str):
        return schema
    return str(schema.get("type"))


def _short(name: str) -> str:
    return name.rsplit(".", 1)[-1]


def _same_name(reader: Mapping[str, Any], writer: Mapping[str, Any]) -> bool:
    names = {_short(reader["name"]), *(_short(a) for a in reader.get("aliases", ()))}
    return _short(writer["name"]) in names


def read_problems(reader: Any, writer: Any) -> list[str]:
    """Why ``reader`` cannot read data written with ``writer`` (empty: it can)."""
    rn, wn = _Names(), _Names()
    rn.collect(reader)
    wn.collect(writer)
    return list(_problems(reader, writer, rn, wn, path="", seen=set()))


def _problems(
    reader: Any, writer: Any, rn: _Names, wn: _Names, path: str, seen: set[tuple[str, str]]
) -> Iterator[str]:
    r, w = rn.resolve(reader), wn.resolve(writer)
    rk, wk = _kind(r), _kind(w)
    if wk == "union":
        for i, branch in enumerate(w):
            yield from _problems(r, branch, rn, wn, f"{path}<branch {i}>", seen)
        return
    if rk == "union":
        if not any(not list(_problems(b, w, rn, wn, path, set(seen))) for b in r):
            yield f"{path or 'root'}: no branch of the reader union reads writer type {wk}"
        return
    if rk != wk:
        if (wk, rk) not in _PROMOTIONS:
            yield f"{path or 'root'}: writer type {wk} cannot be read as {rk}"
        return
    if rk in ("record", "error"):
        here = path if path else _short(r["name"])
        if not _same_name(r, w):
            yield f"{here}: record name {w['name']} does not match {r['name']}"
            return
        key = (r["name"], w["name"])
        if key in seen:  # recursive types: checked once
            return
        seen = seen | {key}
        writer_fields = {f["name"]: f for f in w["fields"]}
        for field in r["fields"]:
            names = [field["name"], *field.get("aliases", ())]
            match = next((writer_fields[n] for n in names if n in writer_fields), None)
            fpath = f"{here}.{field['name']}"
            if match is None:
                if "default" not in field:
                    yield f"{fpath}: field missing in the writer and has no default"
            else:
                yield from _problems(field["type"], match["type"], rn, wn, fpath, seen)
    elif rk == "enum":
        if not _same_name(r, w):
            yield f"{path}: enum name {w['name']} does not match {r['name']}"
        missing = [s for s in w["symbols"] if s not in r["symbols"]]
        if missing and "default" not in r:
            yield f"{path}: writer symbols {missing} unknown to the reader, which has no default"
    elif rk == "array":
        yield from _problems(r["items"], w["items"], rn, wn, f"{path}[]", seen)
    elif rk == "map":
        yield from _problems(r["values"], w["values"], rn, wn, f"{path}{{}}", seen)
    elif rk == "fixed" and (not _same_name(r, w) or r["size"] != w["size"]):
        yield f"{path}: fixed {w['name']}[{w['size']}] cannot be read as {r['name']}[{r['size']}]"


def _min_bytes(schema: Any, names: _Names, depth: int = 0) -> int:
    s = names.resolve(schema)
    kind = _kind(s)
    if depth > 20 or kind in ("null",):
        return 0
    if kind == "union":
        return 1  # the branch index
    if kind in ("record", "error"):
        return sum(_min_bytes(f["type"], names, depth + 1) for f in s["fields"])
    if kind == "fixed":
        return int(s["size"])
    return 1  # every other type writes at least one byte (a varint, a length, a boolean)


def lint(schema: Mapping[str, Any]) -> list[str]:
    """House conventions for event schemas (see the module docstring)."""
    names = _Names()
    names.collect(schema)
    problems: list[str] = []

    def walk(node: Any, path: str) -> None:
        node = names.resolve(node) if isinstance(node, str) else node
        kind = _kind(node)
        if kind in ("record", "error"):
            if path.count(".") > 10:
                return
            for f in node["fields"]:
                fpath = f"{path}.{f['name']}" if path else f["name"]
                if not f.get("doc"):
                    problems.append(f"{fpath}: field has no doc")
                ftype = f["type"]
                optional = isinstance(ftype, list) and "null" in ftype
                if optional and (ftype[0] != "null" or f.get("default", "<none>") is not None):
                    problems.append(
                        f'{fpath}: optional field must be ["null", T] with default null'
                    )
                base = ftype[-1] if isinstance(ftype, list) else ftype
                if f["name"].endswith(("_time", "_date")) and not (
                    isinstance(base, Mapping) and base.get("logicalType") == "timestamp-millis"
                ):
                    problems.append(f"{fpath}: times must be long timestamp-millis")
                walk(ftype, fpath)
        elif kind == "union":
            for branch in node:
                walk(branch, path)
        elif kind == "enum":
            if "default" not in node or node["default"] not in node["symbols"]:
                problems.append(f"{path}: enum {node['name']} needs a default symbol")
        elif kind in ("array", "map"):
            items = node["items"] if kind == "array" else node["values"]
            if _min_bytes(items, names) == 0:
                problems.append(f"{path}: {kind} items can encode in zero bytes (unbounded decode)")
            walk(items, path)

    walk(schema, "")
    return problems


def check_catalog(catalog: SchemaCatalog) -> dict[str, list[str]]:
    """family -> problems: lint of every version, and BACKWARD_TRANSITIVE across versions."""
    report: dict[str, list[str]] = {}
    for family in catalog.families:
        versions = catalog.versions(family)
        problems = [f"v{v.version}: {p}" for v in versions for p in lint(v.schema)]
        problems += _transitive(versions)
        report[family] = problems
    return report


def _transitive(versions: Sequence[SchemaVersion]) -> list[str]:
    problems = []
    for i, reader in enumerate(versions):
        for writer in versions[:i]:
            problems += [
                f"v{reader.version} cannot read v{writer.version}: {p}"
                for p in read_problems(reader.schema, writer.schema)
            ]
    return problems


def check_candidate(catalog: SchemaCatalog, family: str, candidate: Mapping[str, Any]) -> list[str]:
    """Problems a proposed new version of ``family`` would bring (lint + backward transitive)."""
    problems = [f"candidate: {p}" for p in lint(candidate)]
    for writer in catalog.versions(family):
        problems += [
            f"candidate cannot read v{writer.version}: {p}"
            for p in read_problems(candidate, writer.schema)
        ]
    return problems
