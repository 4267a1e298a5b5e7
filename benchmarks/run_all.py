"""Run every benchmark (`make bench`); each writes benchmarks/results/<name>.json."""

from __future__ import annotations

from benchmarks import bench_ingest, bench_serde

if __name__ == "__main__":
    bench_serde.main()
    bench_ingest.main()
