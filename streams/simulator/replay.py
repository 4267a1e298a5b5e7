"""Replay your own history: a CSV or Parquet table -> schema-shaped events of one family.

One row per event, columns named after the family's schema fields (rename yours with
``column_map={"their_column": "our_field"}``). Orders come flat, one row per order line:
the line fields (``sku``, ``quantity``, ``unit_price``, ``discount``, ``promotion_id``,
``impression_id``) sit next to the order's, and rows sharing ``(order_id, event_type)``
become one OrderEvent (its time: the earliest of its rows).

Conversions: times (``timestamp-millis`` fields) may be epoch milliseconds or date/time
text (ISO 8601; without an offset it is taken as UTC); enums are matched case-insensitively;
empty cells of optional fields become ``None``. Columns the schema does not know are ignored.
Fields you may leave out: anything with a schema default, ``event_id`` (derived from the
order id, or from the file name and row), and ``event_type`` / ``channel`` where a natural
default exists (orders: ORDER_PLACED, STORE; catalog: SKU_CREATED; stores: STORE_OPENED;
clickstream channel: WEB). Events come out sorted by event time (stable).

>>> import tempfile
>>> with tempfile.TemporaryDirectory() as tmp:
...     path = Path(tmp) / "sales.csv"
...     _ = path.write_text("id,when,shop,sku,qty,price\\nA1,2024-11-29T10:00:00Z,S1,K1,2,9.99\\n")
...     events = list(replay_events(path, "orders", column_map={
...         "id": "order_id", "when": "event_time", "shop": "store_id", "qty": "quantity",
...         "price": "unit_price"}))
>>> events[0].key, events[0].value["lines"][0]["quantity"], events[0].event_time
('S1', 2, 1732874400000)
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import fastavro
import fastavro.validation
import numpy as np
import pandas as pd

from streams.registry import SchemaCatalog
from streams.simulator.events import FAMILIES, SimEvent

__all__ = ["replay_events"]

_KEY_FIELD = {
    "clickstream": "anonymous_id",
    "orders": "store_id",
    "supplier": "supplier_id",
    "catalog": "sku",
    "inventory": "store_id",
    "stores": "store_id",
}
_DEFAULTS: dict[str, dict[str, Any]] = {
    "orders": {"event_type": "ORDER_PLACED", "channel": "STORE"},
    "catalog": {"event_type": "SKU_CREATED"},
    "stores": {"event_type": "STORE_OPENED"},
    "clickstream": {"channel": "WEB"},
}
_MIN_MS = 946_684_800_000  # 2000-01-01: smaller numbers are most likely seconds
_NO_DEFAULT = object()


def _read(path: Path) -> pd.DataFrame:
    name = path.name.lower()
    if name.endswith((".parquet", ".pq")):
        try:
            return pd.read_parquet(path)
        except ImportError as exc:
            raise ValueError(
                f"{path}: reading Parquet needs pyarrow (pip install pyarrow): {exc}"
            ) from exc
    if name.endswith((".csv", ".csv.gz", ".txt", ".tsv")):
        sep = "\t" if name.endswith(".tsv") else ","
        # Everything as text first: ids like "007" must not become numbers.
        return pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""], sep=sep)
    raise ValueError(f"{path}: expected a .csv, .csv.gz, .tsv or .parquet file")


def _field_types(schema: Mapping[str, Any]) -> dict[str, tuple[Any, bool, Any]]:
    """field -> (non-null type, nullable, default or _NO_DEFAULT)."""
    out = {}
    for f in schema["fields"]:
        t = f["type"]
        nullable = isinstance(t, list) and "null" in t
        if nullable:
            t = next(x for x in t if x != "null")
        out[f["name"]] = (t, nullable, f.get("default", _NO_DEFAULT))
    return out


def _missing(values: pd.Series) -> np.ndarray:
    return values.isna().to_numpy()


def _convert(column: str, values: pd.Series, avro_type: Any, nullable: bool) -> list[Any]:
    """Column values as the Python objects fastavro expects (None where empty)."""
    empty = _missing(values)
    if empty.any() and not nullable:
        row = int(np.flatnonzero(empty)[0])
        raise ValueError(
            f"column {column!r}: empty value in row {row + 1} but the field is required"
        )
    kind = avro_type if isinstance(avro_type, str) else avro_type.get("type")
    logical = avro_type.get("logicalType") if isinstance(avro_type, dict) else None
    converted: list[Any]
    if logical == "timestamp-millis":
        converted = list(_to_millis(column, values, empty))
    elif kind in ("int", "long"):
        numbers = pd.to_numeric(values, errors="coerce")
        bad = numbers.isna().to_numpy() & ~empty | ~empty & (numbers.fillna(0) % 1 != 0).to_numpy()
        _fail_on(column, bad, values, "a whole number")
        converted = [int(x) for x in numbers.fillna(0)]
    elif kind in ("float", "double"):
        numbers = pd.to_numeric(values, errors="coerce")
        _fail_on(column, numbers.isna().to_numpy() & ~empty, values, "a number")
        converted = [float(x) for x in numbers.fillna(0.0)]
    elif kind == "enum":
        symbols = avro_type["symbols"]
        text = values.astype(str).str.strip().str.upper()
        _fail_on(column, ~text.isin(symbols).to_numpy() & ~empty, values, f"one of {symbols}")
        converted = text.tolist()
    else:  # strings: integral numbers from Parquet become "12", not "12.0"
        converted = [_text(x) for x in values.tolist()]
    return [None if e else v for v, e in zip(converted, empty.tolist(), strict=True)]


def _text(x: Any) -> str:
    if isinstance(x, float) and math.isfinite(x) and x.is_integer():
        return str(int(x))
    return str(x)


def _fail_on(column: str, bad: np.ndarray, values: pd.Series, expected: str) -> None:
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"column {column!r}: {values.iloc[row]!r} in row {row + 1} is not {expected}"
        )


def _to_millis(column: str, values: pd.Series, empty: np.ndarray) -> list[int]:
    epoch = pd.Timestamp(0, tz="UTC")
    if pd.api.types.is_datetime64_any_dtype(values):  # Parquet timestamps
        stamps = values.dt.tz_localize("UTC") if values.dt.tz is None else values
        return [int(x) for x in ((stamps - epoch) // pd.Timedelta(milliseconds=1)).fillna(0)]
    numbers = pd.to_numeric(values, errors="coerce")
    if not numbers[~empty].isna().any():
        small = (numbers < _MIN_MS).to_numpy() & ~empty
        _fail_on(column, small, values, "epoch milliseconds after 2000 (seconds? multiply by 1000)")
        return [int(x) for x in numbers.fillna(0)]
    try:
        stamps = pd.to_datetime(values, utc=True, format="ISO8601")
    except (ValueError, TypeError) as exc:
        raise ValueError(
            f"column {column!r}: not epoch milliseconds or ISO 8601 date/time ({exc})"
        ) from exc
    millis = ((stamps - epoch) // pd.Timedelta(milliseconds=1)).fillna(0)
    return [int(x) for x in millis]


def replay_events(
    path: Path, family: str, *, column_map: Mapping[str, str] | None = None
) -> Iterator[SimEvent]:
    """Events of ``family`` from a CSV/Parquet file, validated against the family's schema.

    Raises ``ValueError`` naming missing columns (and how to map them), unknown families,
    and values that cannot be converted (with their row).
    """
    if family not in FAMILIES:
        raise ValueError(f"unknown family {family!r}; expected one of {list(FAMILIES)}")
    path = Path(path)
    schema = SchemaCatalog.load().latest(family).schema
    parsed = fastavro.parse_schema(dict(schema))
    frame = _read(path)
    column_map = dict(column_map or {})
    unknown = sorted(set(column_map) - set(frame.columns))
    if unknown:
        raise ValueError(
            f"{path.name}: column_map names columns not in the file: {unknown}; "
            f"columns: {list(frame.columns)}"
        )
    frame = frame.rename(columns=column_map)
    top = _field_types(schema)
    line_types: dict[str, tuple[Any, bool, Any]] = {}
    if family == "orders":
        line_types = _field_types(top.pop("lines")[0]["items"])
    wanted = {**top, **line_types}
    defaults = _DEFAULTS.get(family, {})
    derivable = {"event_id", *defaults}
    missing = [
        name
        for name, (_, nullable, default) in wanted.items()
        if name not in frame.columns
        and default is _NO_DEFAULT
        and not nullable
        and name not in derivable
    ]
    if missing:
        raise ValueError(
            f"{path.name}: missing required column(s) for {family}: {missing}. Rename your "
            f"columns to these names, or map them: column_map={{'your_column': '{missing[0]}'}} "
            f"(CLI: --column-map your_column={missing[0]}). Columns found: {list(frame.columns)}"
        )
    columns: dict[str, list[Any]] = {}
    n = len(frame)
    for name, (avro_type, nullable, default) in wanted.items():
        if name in frame.columns:
            values = frame[name]
            fill = defaults.get(name, None if default is _NO_DEFAULT else default)
            if fill is not None and values.isna().any():  # empty cells take the default
                values = values.astype(object).where(values.notna(), fill)
            columns[name] = _convert(name, values, avro_type, nullable)
        elif name in defaults:
            columns[name] = [defaults[name]] * n
        elif name != "event_id":
            columns[name] = [None if default is _NO_DEFAULT else default] * n
    records = _group_orders(columns, n) if family == "orders" else _rows(columns, n, top)
    for i, record in enumerate(records):
        if record.get("event_id") is None:
            record["event_id"] = (
                f"rp-{record['order_id']}-{record['event_type']}"
                if family == "orders"
                else f"rp-{path.stem}-{i:09d}"
            )
        record = {name: record[name] for name in (f["name"] for f in schema["fields"])}
        try:
            fastavro.validation.validate(record, parsed, raise_errors=True)
        except fastavro.validation.ValidationError as exc:
            raise ValueError(
                f"{path.name}: record {i + 1} does not fit the {family} schema: {exc}"
            ) from exc
        records[i] = record
    records.sort(key=lambda r: r["event_time"])
    key_field = _KEY_FIELD[family]
    for record in records:
        yield SimEvent(family, str(record[key_field]), record, record["event_time"])


def _rows(columns: dict[str, list[Any]], n: int, fields: Mapping[str, Any]) -> list[dict[str, Any]]:
    names = [name for name in fields if name in columns]
    return (
        [
            dict(zip(names, values, strict=True))
            for values in zip(*(columns[c] for c in names), strict=True)
        ]
        if names
        else [{} for _ in range(n)]
    )


def _group_orders(columns: dict[str, list[Any]], n: int) -> list[dict[str, Any]]:
    line_fields = ("sku", "quantity", "unit_price", "discount", "promotion_id", "impression_id")
    header_fields = [c for c in columns if c not in line_fields]
    orders: dict[tuple[str, str], dict[str, Any]] = {}
    for i in range(n):
        key = (columns["order_id"][i], columns["event_type"][i])
        line = {f: columns[f][i] for f in line_fields}
        order = orders.get(key)
        if order is None:
            order = orders[key] = {f: columns[f][i] for f in header_fields}
            order["lines"] = []
        else:
            order["event_time"] = min(order["event_time"], columns["event_time"][i])
        order["lines"].append(line)
    return list(orders.values())
