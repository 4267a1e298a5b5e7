"""Per-event cost of our Avro serde (encode, strict decode) for every family, and of
sending decoded events between worker processes in packets (pickle against marshal).

python -m benchmarks.bench_serde
"""

from __future__ import annotations

import gc
import pickle
import time
from datetime import date
from typing import Any

from benchmarks.common import write_result
from processors.records import Event
from streams.flows.packets import EventPacket
from streams.registry import ManifestResolver, SchemaCatalog
from streams.serde import AvroDeserializer, AvroSerializer
from streams.simulator import SimulationConfig, Simulator


def main() -> None:
    resolver = ManifestResolver(SchemaCatalog.load())
    sim = Simulator(SimulationConfig(seed=1, start_date=date(2024, 11, 1), days=21))
    by_family: dict[str, list[dict]] = {}
    for ev in sim.events():
        bucket = by_family.setdefault(ev.family, [])
        if len(bucket) < 20_000:
            bucket.append(ev.value)
    figures: dict[str, dict[str, float]] = {}
    events: list[Event] = []
    for family, records in sorted(by_family.items()):
        encode, decode = AvroSerializer(resolver, family), AvroDeserializer(resolver, family)
        t0 = time.process_time()
        blobs = [encode(r) for r in records]
        t1 = time.process_time()
        for i, b in enumerate(blobs):
            value, schema_id = decode(b)
            events.append(Event(family, None, value, value["event_time"], schema_id,
                                f"retailpulse.{family}", 0, i))  # fmt: skip
        t2 = time.process_time()
        n = len(records)
        figures[family] = {
            "records": n,
            "mean_bytes": round(sum(map(len, blobs)) / n, 1),
            "encode_us": round((t1 - t0) / n * 1e6, 2),
            "decode_us": round((t2 - t1) / n * 1e6, 2),
        }
    write_result("serde", {"per_family": figures, "packets": packets(events)})


def packets(events: list[Event], size: int = 500, repeat: int = 5) -> dict[str, Any]:
    """Per-event cost of a packet of decoded events crossing processes (best of
    ``repeat``): one encoding (Bytewax's second pickle reuses it) and one decoding."""
    events.sort(key=lambda e: e.event_time)  # a batch mixes the families
    batches = [events[i : i + size] for i in range(0, len(events), size)]
    codecs = {
        "pickle": (lambda b: pickle.dumps(b, pickle.HIGHEST_PROTOCOL), pickle.loads),
        "packet": (lambda b: pickle.dumps(EventPacket(b)), pickle.loads),
    }
    out: dict[str, Any] = {"events": len(events), "packet_size": size}
    for name, (dumps, loads) in codecs.items():
        best_dumps = best_loads = float("inf")
        for _ in range(repeat):
            gc.collect()
            t0 = time.process_time()
            blobs = [dumps(b) for b in batches]
            t1 = time.process_time()
            for blob in blobs:
                loads(blob)
            t2 = time.process_time()
            best_dumps, best_loads = min(best_dumps, t1 - t0), min(best_loads, t2 - t1)
        n = len(events)
        out[name] = {
            "dumps_us": round(best_dumps / n * 1e6, 2),
            "loads_us": round(best_loads / n * 1e6, 2),
            "bytes": round(sum(map(len, blobs)) / n, 1),
        }
    return out


if __name__ == "__main__":
    main()
