"""Run every benchmark (`make bench`); each writes benchmarks/results/<name>.json.

Each runs in its own interpreter so one's memory and threads don't colour the next's.
"""

from __future__ import annotations

import subprocess
import sys

# bench_e2e last: it takes minutes (every flow, the plain floor, 2 processes, live runs).
BENCHMARKS = (
    "bench_serde",
    "bench_ingest",
    "bench_supply",
    "bench_churn",
    "bench_demand",
    "bench_e2e",
)

if __name__ == "__main__":
    failed = [
        name
        for name in BENCHMARKS
        if subprocess.run([sys.executable, "-m", f"benchmarks.{name}"], check=False).returncode
    ]
    if failed:
        sys.exit(f"benchmarks failed: {', '.join(failed)}")
