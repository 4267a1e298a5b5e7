"""Per-event cost of our Avro serde (encode, strict decode) for every family.

python -m benchmarks.bench_serde
"""

from __future__ import annotations

import time
from datetime import date

from benchmarks.common import write_result
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
    for family, records in sorted(by_family.items()):
        encode, decode = AvroSerializer(resolver, family), AvroDeserializer(resolver, family)
        t0 = time.process_time()
        blobs = [encode(r) for r in records]
        t1 = time.process_time()
        for b in blobs:
            decode(b)
        t2 = time.process_time()
        n = len(records)
        figures[family] = {
            "records": n,
            "mean_bytes": round(sum(map(len, blobs)) / n, 1),
            "encode_us": round((t1 - t0) / n * 1e6, 2),
            "decode_us": round((t2 - t1) / n * 1e6, 2),
        }
    write_result("serde", {"per_family": figures})


if __name__ == "__main__":
    main()
