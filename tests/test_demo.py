"""The README's demo command, small: it starts everything, shows results, and Ctrl-C stops all.

Runs ``python -m streams.cli demo`` as a user would (its own embedded Tansu and Valkey, the
flows and the dashboard as child processes), waits for the live phase to end, then sends
SIGINT and checks that every process it printed is gone.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from infra.processes import pid_alive

pytestmark = pytest.mark.integration

_PID = re.compile(r"\bpid (\d+)\b")


def _read_until(proc: subprocess.Popen[str], markers: tuple[str, ...], timeout: float) -> str:
    """The demo's output until every marker has shown (it keeps running afterwards)."""
    lines: list[str] = []
    missing = set(markers)
    deadline = time.monotonic() + timeout
    assert proc.stdout is not None
    while missing and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            if proc.poll() is not None:
                break
            continue
        lines.append(line.rstrip("\n"))
        missing = {m for m in missing if m not in line}
    text = "\n".join(lines)
    if missing:
        raise AssertionError(f"no {sorted(missing)} within {timeout} s; output:\n{text}")
    return text


def test_demo_shows_results_and_ctrl_c_stops_every_process(tmp_path: Path) -> None:
    argv = [
        sys.executable, "-m", "streams.cli", "--state-dir", str(tmp_path / "state"),
        "demo", "--days", "45", "--live-days", "20", "--day-seconds", "0.25",
        "--skus", "30", "--stores", "4", "--customers", "300",
        "--suppliers", "3",  # more orders per supplier: its detector warms up within 45 days
        "--no-open", "--port", "0",
    ]  # fmt: skip
    proc = subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,  # the progress bar
        text=True,
        bufsize=1,
    )
    try:
        milestones = ("first forecasts", "first churn risks", "first supply alert")
        text = _read_until(proc, ("live days done", *milestones), timeout=150)
        pids = [int(p) for p in _PID.findall(text)]
        assert len(pids) == 4, text  # Kafka, Redis, flows, dashboard
        assert all(pid_alive(pid) for pid in pids)
        assert "dashboard: http://127.0.0.1:" in text
        assert "Black Friday" in text  # the default dates put it in the live window
        assert "supplier disruption starts" in text
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, out
    assert "stopped every process the demo started" in out
    deadline = time.monotonic() + 10
    while any(pid_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [pid for pid in pids if pid_alive(pid)]
