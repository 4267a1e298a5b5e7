"""``retailpulse infra up|down|status``: one supervisor process owns the embedded stack.

The supervisor starts Tansu and Valkey as its children, records them in
``<state_dir>/infra.json`` and waits for SIGINT/SIGTERM, then stops both by PID and removes
the file. The children carry PR_SET_PDEATHSIG, so even ``kill -9`` of the supervisor takes
them down (Linux). ``up(detach=True)`` runs that same supervisor as a background process
(``python -m infra.supervisor``); ``down`` signals it; ``status`` probes what is recorded.

While it runs, the supervisor holds an exclusive ``flock`` on ``<state_dir>/infra.lock``.
The kernel drops it when the process dies however it dies, so "is the recorded stack
live?" never trusts a PID alone (PIDs get reused) and two ``up`` cannot share a state dir.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import logging
import os
import signal
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

from infra.embedded import STOP_SIGNALS, EmbeddedKafka, EmbeddedRedis, ServerInfo
from infra.processes import (
    kafka_answers,
    log_tail,
    pid_alive,
    process_matches,
    redis_answers,
    stop_pid,
)
from streams.errors import InfraError

__all__ = ["STATE_FILE", "StackState", "down", "read_state", "status", "up"]

log = logging.getLogger(__name__)

STATE_FILE = "infra.json"
LOCK_FILE = "infra.lock"
SUPERVISOR_LOG = "supervisor.log"
LOG_DIR = "logs"  # the servers' own logs: <state_dir>/logs/{kafka,redis}.log
_DETACHED_START_TIMEOUT = 60.0
_WATCH_INTERVAL = 0.5  # how often the supervisor checks that both servers still run


@dataclass(frozen=True)
class StackState:
    """What ``infra.json`` records about a running stack."""

    supervisor_pid: int
    kafka: ServerInfo
    redis: ServerInfo
    started_at: str  # ISO 8601, UTC

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)  # nested ServerInfo become dicts too

    @classmethod
    def from_json(cls, text: str) -> StackState:
        data = json.loads(text)
        return cls(
            supervisor_pid=int(data["supervisor_pid"]),
            kafka=ServerInfo.from_dict(data["kafka"]),
            redis=ServerInfo.from_dict(data["redis"]),
            started_at=str(data["started_at"]),
        )


# -- state file and lock -----------------------------------------------------------------


def _prepare_dir(state_dir: Path) -> None:
    state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    st = state_dir.stat()
    # Tighten a directory we own, but never a shared one such as /tmp (sticky bit).
    if st.st_uid == os.getuid() and not st.st_mode & stat.S_ISVTX:
        state_dir.chmod(0o700)


def _load(state_dir: Path) -> StackState | None:
    """The recorded state as is, without deciding whether it is live."""
    try:
        return StackState.from_json((state_dir / STATE_FILE).read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("ignoring unreadable %s: %s", state_dir / STATE_FILE, exc)
        return None


def _write_state(state_dir: Path, state: StackState) -> None:
    path = state_dir / STATE_FILE
    tmp = path.with_name(f".{STATE_FILE}.{os.getpid()}")
    # Created 0600 from the start (not chmod-ed afterwards), then renamed into place so
    # readers never see half a file.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(state.to_json())
    os.replace(tmp, path)


def _remove_state(state_dir: Path, supervisor_pid: int) -> None:
    """Remove the state file if it still describes ``supervisor_pid``'s stack."""
    current = _load(state_dir)
    if current is None or current.supervisor_pid == supervisor_pid:
        with suppress(FileNotFoundError):
            (state_dir / STATE_FILE).unlink()


def _lock_is_held(state_dir: Path) -> bool:
    """True if some process holds the supervisor lock on ``state_dir``."""
    try:
        fd = os.open(state_dir / LOCK_FILE, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing also releases the lock if we just took it
    return False


@contextmanager
def _hold_lock(state_dir: Path) -> Iterator[None]:
    # The lock file stays on disk: unlinking it would let a later `up` lock a new inode
    # while an older supervisor still holds the old one.
    fd = os.open(state_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise InfraError(
                f"another supervisor is running for {state_dir} "
                "(`retailpulse infra status` shows it, `retailpulse infra down` stops it)"
            ) from None
        yield
    finally:
        os.close(fd)


def _is_live(state: StackState, state_dir: Path) -> bool:
    return pid_alive(state.supervisor_pid) and _lock_is_held(state_dir)


def _stop_leftovers(state: StackState, timeout: float) -> bool:
    """Stop recorded servers that outlived their supervisor (no PDEATHSIG off Linux)."""
    found = False
    for server in (state.kafka, state.redis):
        if pid_alive(server.pid) and process_matches(server.pid, server.name):
            found = True
            log.warning("stopping leftover %s pid %d", server.name, server.pid)
            stop_pid(server.pid, timeout, STOP_SIGNALS[server.name])
    return found


def read_state(state_dir: Path) -> StackState | None:
    """The live stack recorded in ``state_dir``, or None.

    A stale record (its supervisor is gone) is reported as a warning and removed, after
    stopping any recorded server that still runs: the file is the only record of its PID.
    """
    state = _load(Path(state_dir))
    if state is None or _is_live(state, Path(state_dir)):
        return state
    log.warning(
        "removing stale %s: supervisor pid %d is gone",
        Path(state_dir) / STATE_FILE,
        state.supervisor_pid,
    )
    _stop_leftovers(state, timeout=5.0)
    _remove_state(Path(state_dir), state.supervisor_pid)
    return None


# -- up ----------------------------------------------------------------------------------


def up(
    state_dir: Path,
    *,
    detach: bool,
    kafka_port: int | None = None,
    redis_port: int | None = None,
    on_ready: Callable[[StackState], None] | None = None,
) -> StackState:
    """Start the embedded stack; see the module docstring.

    Foreground (``detach=False``) blocks until SIGINT/SIGTERM and returns the state it ran
    with once both servers are stopped. Call it from the main thread: the signal handlers
    and the servers' parent-death signal both depend on it.
    """
    state_dir = Path(state_dir).resolve()
    _prepare_dir(state_dir)
    running = read_state(state_dir)
    if running is not None:
        raise InfraError(
            f"an embedded stack is already running (supervisor pid {running.supervisor_pid}, "
            f"Kafka {running.kafka.address}, Redis {running.redis.address}); use it, stop it "
            "with `retailpulse infra down`, or pick another --state-dir"
        )
    if detach:
        return _up_detached(state_dir, kafka_port, redis_port)
    return _up_foreground(state_dir, kafka_port, redis_port, on_ready)


def _up_foreground(
    state_dir: Path,
    kafka_port: int | None,
    redis_port: int | None,
    on_ready: Callable[[StackState], None] | None,
) -> StackState:
    stop = threading.Event()
    previous: dict[signal.Signals, Any] = {}

    def request_stop(signum: int, _frame: FrameType | None) -> None:
        # Only set a flag: raising here could interrupt a half-done start or stop.
        log.info("signal %d: stopping the embedded stack", signum)
        stop.set()

    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            previous[sig] = signal.signal(sig, request_stop)
    log_dir = state_dir / LOG_DIR
    kafka = EmbeddedKafka(port=kafka_port, log_dir=log_dir)
    redis = EmbeddedRedis(port=redis_port, log_dir=log_dir)
    try:
        with _hold_lock(state_dir):
            try:
                state = StackState(
                    supervisor_pid=os.getpid(),
                    kafka=kafka.start(),
                    redis=redis.start(),
                    started_at=datetime.now(UTC).isoformat(timespec="seconds"),
                )
                _write_state(state_dir, state)
                log.info(
                    "embedded stack up: Kafka %s (pid %d), Redis %s (pid %d)",
                    *(state.kafka.address, state.kafka.pid, state.redis.address, state.redis.pid),
                )
                if on_ready is not None:
                    on_ready(state)
                while not stop.wait(_WATCH_INTERVAL):
                    for server in (kafka, redis):
                        # A Ctrl-C reaches the servers too (same process group), so a dead
                        # server is only unexpected when no stop was requested.
                        if not server.running and not stop.is_set():
                            raise InfraError(
                                f"{server.label} exited unexpectedly; see {server.log_path}"
                            )
                return state
            finally:
                redis.stop()
                kafka.stop()
                _remove_state(state_dir, os.getpid())
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _up_detached(state_dir: Path, kafka_port: int | None, redis_port: int | None) -> StackState:
    command = [sys.executable, "-m", "infra.supervisor", "--state-dir", str(state_dir)]
    if kafka_port is not None:
        command += ["--kafka-port", str(kafka_port)]
    if redis_port is not None:
        command += ["--redis-port", str(redis_port)]
    log_path = state_dir / SUPERVISOR_LOG
    with log_path.open("ab") as log_file:
        offset = log_file.tell()
        proc = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            # Run from the directory that holds this `infra` package, so `-m` imports the
            # same code even when it is not installed; own session so the terminal's
            # Ctrl-C and hang-up do not reach it.
            cwd=Path(__file__).resolve().parent.parent,
            start_new_session=True,
        )
    # Reap it when it exits (if we are still running then), so it never lingers as a zombie.
    threading.Thread(target=proc.wait, name="infra-supervisor-reaper", daemon=True).start()
    deadline = time.monotonic() + _DETACHED_START_TIMEOUT
    while time.monotonic() < deadline:
        state = _load(state_dir)
        if (
            state is not None
            and state.supervisor_pid == proc.pid
            and kafka_answers(state.kafka.address)
            and redis_answers(state.redis.address)
        ):
            return state
        if proc.poll() is not None:
            raise InfraError(
                f"the infra supervisor exited (code {proc.returncode}) before the stack was "
                f"ready. Its log ({log_path}):\n{log_tail(log_path, offset)}"
            )
        time.sleep(0.1)
    stop_pid(proc.pid, timeout=10.0)
    raise InfraError(
        f"the embedded stack was not ready within {_DETACHED_START_TIMEOUT:g} s; stopped it. "
        f"Its log ({log_path}):\n{log_tail(log_path, offset)}"
    )


# -- down and status ---------------------------------------------------------------------


def down(state_dir: Path, timeout: float = 15) -> bool:
    """Stop the recorded stack. False if nothing was running."""
    state_dir = Path(state_dir).resolve()
    state = _load(state_dir)
    if state is None:
        return False
    was_running = False
    if _is_live(state, state_dir):
        was_running = True
        if not stop_pid(state.supervisor_pid, timeout):
            raise InfraError(f"supervisor pid {state.supervisor_pid} did not stop")
    # The supervisor stops its servers before it exits; anything left (it was SIGKILLed
    # after the timeout, or ran where PDEATHSIG does not exist) is stopped here by PID.
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline and any(
        pid_alive(s.pid) and process_matches(s.pid, s.name) for s in (state.kafka, state.redis)
    ):
        time.sleep(0.05)
    was_running = _stop_leftovers(state, timeout=5.0) or was_running
    _remove_state(state_dir, state.supervisor_pid)
    return was_running


def status(state_dir: Path) -> dict[str, Any]:
    """What runs, per server: pid, address, alive (pid alive AND it answers)."""
    state_dir = Path(state_dir).resolve()
    had_record = (state_dir / STATE_FILE).exists()
    state = read_state(state_dir)
    result: dict[str, Any] = {
        "running": state is not None,
        "state_file": str(state_dir / STATE_FILE),
        "stale_record_removed": had_record and not (state_dir / STATE_FILE).exists(),
    }
    if state is None:
        return result
    probes = {"kafka": kafka_answers, "redis": redis_answers}
    result["supervisor_pid"] = state.supervisor_pid
    result["started_at"] = state.started_at
    result["logs"] = str(state_dir / LOG_DIR)
    for server in (state.kafka, state.redis):
        result[server.name] = {
            "pid": server.pid,
            "address": server.address,
            "alive": pid_alive(server.pid) and probes[server.name](server.address),
        }
    result["running"] = all(result[name]["alive"] for name in probes)
    return result


# -- detached entry point ----------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m infra.supervisor", description="run the embedded stack (foreground)"
    )
    parser.add_argument("--state-dir", type=Path, required=True)
    parser.add_argument("--kafka-port", type=int)
    parser.add_argument("--redis-port", type=int)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        up(args.state_dir, detach=False, kafka_port=args.kafka_port, redis_port=args.redis_port)
    except InfraError as exc:
        log.error("%s", exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
