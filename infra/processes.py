"""Process and port plumbing for the embedded servers: free ports, PIDs, signals, logs.

Kept apart from :mod:`infra.embedded` (what the servers are and how they start) so each
module holds one concept. Every PID read back from a state file is checked against
``/proc/<pid>/cmdline`` before it is signalled, because the OS reuses PIDs.
"""

from __future__ import annotations

import ctypes
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Self

__all__ = [
    "HOST",
    "Child",
    "free_port",
    "kafka_answers",
    "log_tail",
    "pid_alive",
    "port_is_free",
    "process_matches",
    "redis_answers",
    "stop_pid",
    "stop_popen",
]

HOST = "127.0.0.1"  # IPv4 loopback only: "localhost" may resolve to ::1 where nothing listens
_LOG_TAIL_LINES = 25
_ANSI = re.compile(r"\x1b\[[0-9;]*m")  # Tansu colours its log lines
_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
# Substrings of /proc/<pid>/cmdline that identify our servers, so a PID read back from a
# state file is never signalled after the OS has reused it for something else.
_PROCESS_MARKS = {"kafka": "tansu", "redis": "valkey-server"}


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (callers handle the race)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # The servers set SO_REUSEADDR, so a port in TIME_WAIT is free for them too.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
        return True


def _tcp_open(port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=timeout):
            return True
    except OSError:
        return False


def pid_alive(pid: int) -> bool:
    """True if ``pid`` runs. Zombies count as gone: they hold no port and no memory."""
    if pid <= 0:
        return False
    try:
        # Reap it if it is our own child (e.g. a detached supervisor that exited), else
        # signal 0 below would keep reporting the zombie as alive.
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no /proc (macOS): signal 0 is all we can know
    # The state letter follows the parenthesised command name, which may contain spaces.
    return stat.rpartition(")")[2].split()[:1] != ["Z"]


def process_matches(pid: int, name: str) -> bool:
    """Whether ``pid`` still looks like our ``name`` process (True when the OS can't tell)."""
    if not Path("/proc/self").exists():
        return True  # no /proc (macOS): trust the PID
    mark = _PROCESS_MARKS.get(name, name)
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False  # gone (or not ours to read)
    return mark.encode() in cmdline


def stop_pid(pid: int, timeout: float = 10.0, sig: signal.Signals = signal.SIGTERM) -> bool:
    """Send ``sig`` to ``pid``, wait up to ``timeout`` s, then SIGKILL. True if it is gone."""
    for signum, wait in ((sig, timeout), (signal.SIGKILL, 5.0)):
        if not pid_alive(pid):
            return True
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False  # someone else's process: not ours to stop
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if not pid_alive(pid):
                return True
            time.sleep(0.05)
    return not pid_alive(pid)


_prctl: Callable[..., int] | None = None


def _death_signal_preexec(sig: signal.Signals) -> Callable[[], None] | None:
    """A ``preexec_fn`` that makes the child get ``sig`` when its parent dies (Linux only).

    PR_SET_PDEATHSIG fires when the *thread* that forked the child exits, not the process:
    start servers from the main thread (or a thread that lives as long as they should).
    """
    global _prctl
    if not sys.platform.startswith("linux"):
        return None
    if _prctl is None:
        # Resolve libc here, in the parent: loading a library between fork() and exec()
        # can deadlock on locks another thread held at fork time.
        _prctl = ctypes.CDLL(None, use_errno=True).prctl
    prctl = _prctl
    parent = os.getpid()

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, int(sig))
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)

    return preexec


def _flags(flags: Mapping[str, str]) -> list[str]:
    return [arg for name, value in flags.items() for arg in (f"--{name}", value)]


def log_tail(path: Path, offset: int = 0) -> str:
    """The last lines ``path`` got after byte ``offset``, without colour codes."""
    try:
        with path.open("rb") as fh:
            fh.seek(offset)
            text = fh.read().decode(errors="replace")
    except OSError:
        return "(no log)"
    lines = _ANSI.sub("", text).rstrip().splitlines()[-_LOG_TAIL_LINES:]
    return "\n".join(lines) or "(log is empty)"


# -- servers -----------------------------------------------------------------------------


def kafka_answers(address: str, timeout: float = 1.0) -> bool:
    """True if a Kafka-protocol broker at ``address`` returns metadata."""
    from confluent_kafka.admin import AdminClient

    config: dict[str, Any] = {
        "bootstrap.servers": address,
        "log_level": 0,  # a probe's connection errors are expected; keep them off stderr
        "error_cb": lambda _err: None,
    }
    try:
        AdminClient(config).list_topics(timeout=timeout)
    except Exception:  # KafkaException on timeout; anything else also means "not answering"
        return False
    return True


def redis_answers(url: str, timeout: float = 1.0) -> bool:
    """True if the Redis at ``url`` replies to PING."""
    import redis

    client = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
    try:
        return bool(client.ping())
    except (redis.RedisError, OSError):
        return False
    finally:
        client.close()


class Child:
    """A child process of ours (the flows, the dashboard): logged to a file, stopped by PID.

    It gets ``stop_signal`` from the kernel when our thread dies (PR_SET_PDEATHSIG), so even a
    ``kill -9`` of the parent leaves nothing behind; :meth:`stop` sends the same signal, waits,
    then SIGKILLs. Start it from the main thread (see :func:`_death_signal_preexec`).
    """

    def __init__(
        self,
        name: str,
        argv: list[str],
        log_path: Path,
        *,
        stop_signal: signal.Signals = signal.SIGINT,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.name, self.argv, self.log_path = name, argv, log_path
        self.stop_signal = stop_signal
        self._env = dict(env) if env is not None else None
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def start(self) -> Self:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            # Same session as us, so a terminal's Ctrl-C reaches the child too; the child
            # sees SIGINT as KeyboardInterrupt and shuts down on its own.
            self._proc = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self._env,
                preexec_fn=_death_signal_preexec(self.stop_signal),
            )
        return self

    def exit_code(self) -> int | None:
        """None while it runs (or before it started), else its exit status."""
        return self._proc.poll() if self._proc is not None else None

    def stop(self, timeout: float = 10.0) -> None:
        """Signal, wait up to ``timeout`` s, then SIGKILL. Safe to call twice."""
        proc, self._proc = self._proc, None
        if proc is not None:
            stop_popen(proc, timeout, self.stop_signal)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def stop_popen(proc: subprocess.Popen[Any], timeout: float, sig: signal.Signals) -> None:
    """Send ``sig``, wait up to ``timeout`` s, then SIGKILL; a process already gone is fine."""
    if proc.poll() is not None:
        return
    try:
        proc.send_signal(sig)
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5.0)
    except ProcessLookupError:
        pass
