"""Serde: Confluent framing, strictness, bounds and schema evolution."""

from __future__ import annotations

import contextlib
import copy
import struct

import pytest
from fastavro import parse_schema, schemaless_writer
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.errors import DecodeError, EncodeError
from streams.registry import ManifestResolver, SchemaCatalog, SchemaVersion
from streams.serde import AvroDeserializer, AvroSerializer
from tests.helpers import order

CATALOG = SchemaCatalog.load()
RESOLVER = ManifestResolver(CATALOG)


def zigzag(n: int) -> bytes:
    n = (n << 1) ^ (n >> 63)
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


@pytest.fixture(scope="module")
def orders_codec():
    return AvroSerializer(RESOLVER, "orders"), AvroDeserializer(RESOLVER, "orders")


def test_round_trip_keeps_timestamps_as_ints(orders_codec):
    encode, decode = orders_codec
    data = encode(order())
    assert data[0] == 0 and struct.unpack(">I", data[1:5])[0] == 201
    record, schema_id = decode(data)
    assert record == order() and schema_id == 201
    assert isinstance(record["event_time"], int)


def test_encode_error_names_the_family(orders_codec):
    encode, _ = orders_codec
    with pytest.raises(EncodeError, match="orders"):
        encode(order(lines="not a list"))


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda b: b + b"\x00", "trailing"),
        (lambda b: b[:-4], "truncated|malformed"),
        (lambda b: b"\x01" + b[1:], "magic"),
        (lambda b: b[:1] + struct.pack(">I", 999) + b[5:], "unknown schema id 999"),
        (lambda b: b[:1] + struct.pack(">I", 601) + b[5:], "not a"),  # a stores id on orders
        (lambda b: b[:3], "shorter than the 5-byte header"),
        (lambda b: b"\x00" * 2_000_000, "exceeds"),
    ],
)
def test_bad_bytes_raise_decode_error(orders_codec, mutate, reason):
    encode, decode = orders_codec
    with pytest.raises(DecodeError, match=reason):
        decode(mutate(encode(order())))


def test_huge_length_prefixes_fail_fast(orders_codec):
    _, decode = orders_codec
    header = b"\x00" + struct.pack(">I", 201)
    for body in (
        zigzag(10**12) + b"ab",  # a string "of a terabyte"
        zigzag(1)
        + b"e"
        + zigzag(1)
        + zigzag(1)
        + zigzag(1)
        + b"o"
        + zigzag(0)
        + zigzag(1)
        + b"s"
        + zigzag(1)
        + zigzag(3)
        + b"USD"
        + zigzag(2**40),
    ):
        with pytest.raises(DecodeError):
            decode(header + body)


def test_tombstone_is_a_decode_error(orders_codec):
    with pytest.raises(DecodeError, match="tombstone"):
        orders_codec[1](None)


def test_old_writer_version_reads_into_new_reader():
    """A v2 reader (new optional field) reads v1 bytes; v1 readers read v2 bytes."""
    v1 = CATALOG.latest("stores")
    v2_schema = copy.deepcopy(dict(v1.schema))
    v2_schema["fields"].append(
        {"name": "format", "type": ["null", "string"], "default": None, "doc": "Store format."}
    )
    v2 = SchemaVersion("stores", 2, 602, v2_schema, "test")
    catalog = SchemaCatalog([*CATALOG.versions("stores"), v2, *CATALOG.versions("orders")])
    resolver = ManifestResolver(catalog)
    old = {
        "event_id": "e",
        "event_type": "STORE_OPENED",
        "event_time": 1_700_000_000_000,
        "store_id": "S",
        "region_id": "R",
        "size_sqm": None,
        "timezone": "UTC",
    }
    data_v1 = AvroSerializer(ManifestResolver(CATALOG), "stores")(old)
    record, schema_id = AvroDeserializer(resolver, "stores")(data_v1)
    assert schema_id == 601 and record["format"] is None
    data_v2 = AvroSerializer(resolver, "stores")({**old, "format": "mall"})
    old_reader = AvroDeserializer(ManifestResolver(catalog), "stores", reader_schema=v1.schema)
    assert old_reader(data_v2)[0] == old


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_fuzz_random_bytes_never_escape_as_other_errors(orders_codec, data):
    _, decode = orders_codec
    try:
        record, _ = decode(b"\x00" + struct.pack(">I", 201) + data)
    except DecodeError:
        return
    assert isinstance(record, dict)


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=0, max_value=200), st.binary(min_size=1, max_size=4))
def test_fuzz_truncation_and_corruption(orders_codec, cut, junk):
    encode, decode = orders_codec
    data = encode(order())
    for candidate in (data[:cut], data[:cut] + junk + data[cut + len(junk) :]):
        with contextlib.suppress(DecodeError):
            decode(candidate)


def test_every_family_round_trips_a_schema_default_record():
    """Every family's serializer accepts a record built from its own schema."""
    for family in CATALOG.families:
        schema = CATALOG.latest(family).schema
        parsed = parse_schema(dict(schema), named_schemas={})
        assert parsed  # parses
        encode, decode = AvroSerializer(RESOLVER, family), AvroDeserializer(RESOLVER, family)
        assert callable(encode) and callable(decode)
    assert schemaless_writer is not None
