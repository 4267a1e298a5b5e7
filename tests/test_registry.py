"""The schema-registry path, through confluent-kafka's real SchemaRegistryClient over HTTP.

No Confluent-compatible registry can run on our machines (no Docker, no JVM artifacts), so
this test serves the two REST calls our resolver makes (register a subject version, fetch a
schema by id) from a minimal in-process HTTP server. Against a real registry use
infra/compose.yaml (docs/infrastructure.md).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from streams.errors import DecodeError
from streams.registry import RegistryResolver, SchemaCatalog, build_resolver
from streams.serde import AvroDeserializer, AvroSerializer
from tests.helpers import order


class _Registry(BaseHTTPRequestHandler):
    schemas: dict[int, str] = {}
    registered: list[str] = []

    def _reply(self, code: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/vnd.schemaregistry.v1+json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:  # POST /subjects/<subject>/versions
        length = int(self.headers["Content-Length"])
        schema = json.loads(self.rfile.read(length))["schema"]
        subject = self.path.split("/")[2]
        self.registered.append(subject)
        for sid, text in self.schemas.items():
            if text == schema:
                return self._reply(200, {"id": sid})
        sid = 1000 + len(self.schemas)
        self.schemas[sid] = schema
        return self._reply(200, {"id": sid})

    def do_GET(self) -> None:  # GET /schemas/ids/<id>
        sid = int(self.path.split("?")[0].rstrip("/").split("/")[-1])
        if sid not in self.schemas:
            return self._reply(404, {"error_code": 40403, "message": "Schema not found"})
        return self._reply(200, {"schema": self.schemas[sid], "schemaType": "AVRO"})

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def registry_url() -> Iterator[str]:
    _Registry.schemas, _Registry.registered = {}, []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Registry)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_ids_come_from_the_registry_and_round_trip(registry_url):
    catalog = SchemaCatalog.load()
    topics = {"orders": "retailpulse.orders"}
    resolver = build_resolver(catalog, registry_url=registry_url, registry_config={}, topics=topics)
    assert isinstance(resolver, RegistryResolver)
    data = AvroSerializer(resolver, "orders")(order())
    assert data[1:5] == (1000).to_bytes(4, "big")
    assert _Registry.registered == ["retailpulse.orders-value"]
    # A fresh reader resolves the writer id through the registry, not the manifest.
    reader = build_resolver(catalog, registry_url=registry_url, registry_config={}, topics=topics)
    assert AvroDeserializer(reader, "orders")(data) == (order(), 1000)


def test_unknown_registry_id_is_a_decode_error(registry_url):
    resolver = build_resolver(
        SchemaCatalog.load(),
        registry_url=registry_url,
        registry_config={},
        topics={"orders": "retailpulse.orders"},
    )
    decode = AvroDeserializer(resolver, "orders")
    with pytest.raises(DecodeError, match="not in the registry"):
        decode(b"\x00" + (4242).to_bytes(4, "big") + b"\x02")
