"""Crash recovery: Bytewax's recovery store plus a manifest that refuses incompatible state.

Bytewax snapshots every stateful step (Kafka offsets, the model engines) at the end of each
epoch into ``part-<i>.sqlite3`` files and resumes from the newest complete snapshot. It keys
that state by step id and does not check anything else: a renamed step, a new dataflow id
or a different topic set silently starts from empty state (and the old state is ignored).
So next to the partitions we keep ``retailpulse-recovery.json``, written on first use and
compared on every start-up; any difference is refused with a message naming what changed
and the way out (docs/recovery.md).

>>> m = RecoveryManifest("rp", ("kafka_in", "redis_out"), ("t.orders",), 1, {"a.B": 1})
>>> m2 = RecoveryManifest("rp", ("kafka_in", "sink"), ("t.orders",), 1, {"a.B": 2})
>>> for problem in compare_manifests(m, m2):
...     print(problem)
step 'redis_out' is in the recovery store but not in this flow
step 'sink' is in this flow but not in the recovery store
state class a.B is version 2 in this code but version 1 in the recovery store
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib
import inspect
import json
import logging
import os
import pkgutil
import sqlite3
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from importlib import metadata
from pathlib import Path
from typing import Any

from bytewax.dataflow import Dataflow
from bytewax.recovery import RecoveryConfig, init_db_dir

from streams.errors import ConfigError
from streams.settings import RunSettings

__all__ = [
    "MANIFEST_NAME",
    "RecoveryManifest",
    "build_manifest",
    "compare_manifests",
    "flow_step_ids",
    "prepare_recovery",
    "recovery_config",
    "state_versions",
]

log = logging.getLogger(__name__)

MANIFEST_NAME = "retailpulse-recovery.json"
MANIFEST_FORMAT = 1
STATE_PACKAGES = ("processors", "models")  # where classes whose instances live in state are
_LIBRARIES = ("bytewax", "river")  # their pickles are in the snapshots: recorded, warned on

WAY_OUT = (
    "Way out: restore the code and settings that wrote this store, or rebuild by replay: "
    "move the directory aside (e.g. `mv {dir} {dir}.old`) and run again; a fresh store is "
    "created and every input topic is read again from the earliest offset (Redis writes are "
    "version-guarded, so the replay converges on the same keys). See docs/recovery.md."
)


@dataclass(frozen=True)
class RecoveryManifest:
    """What a recovery store was written by: compared on every start-up."""

    flow_id: str
    step_ids: tuple[str, ...]  # the built flow's top-level steps, in order
    topics: tuple[str, ...]  # input topics, sorted
    partitions: int
    state_versions: Mapping[str, int]  # "module.Qualname" -> STATE_VERSION
    shards: int = 1  # run.shards: which key holds which store, customer... (0: unrecorded)
    libraries: Mapping[str, str] = field(default_factory=dict, compare=False)  # informational

    def to_json(self) -> str:
        return json.dumps(
            {
                "format": MANIFEST_FORMAT,
                "flow_id": self.flow_id,
                "step_ids": list(self.step_ids),
                "topics": list(self.topics),
                "partitions": self.partitions,
                "shards": self.shards,
                "state_versions": dict(sorted(self.state_versions.items())),
                "libraries": dict(sorted(self.libraries.items())),
            },
            indent=2,
        )

    @classmethod
    def from_json(cls, text: str, *, source: str = "manifest") -> RecoveryManifest:
        try:
            raw = json.loads(text)
            if raw.get("format") != MANIFEST_FORMAT:
                raise ValueError(f"unknown manifest format {raw.get('format')!r}")
            return cls(
                flow_id=str(raw["flow_id"]),
                step_ids=tuple(str(s) for s in raw["step_ids"]),
                topics=tuple(str(t) for t in raw["topics"]),
                partitions=int(raw["partitions"]),
                state_versions={str(k): int(v) for k, v in raw["state_versions"].items()},
                shards=int(raw.get("shards", 0)),
                libraries={str(k): str(v) for k, v in raw.get("libraries", {}).items()},
            )
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ConfigError(f"recovery manifest {source} is unreadable: {exc}") from exc


def flow_step_ids(flow: Dataflow) -> tuple[str, ...]:
    """The top-level step ids of a BUILT flow, in order (derived, so they cannot drift)."""
    return tuple(step.step_name for step in flow.substeps)


def _all_step_ids(steps: Iterable[Any]) -> set[str]:
    """Every full step id, nested ones included (Bytewax keys snapshots by these)."""
    out: set[str] = set()
    for step in steps:
        out.add(step.step_id)
        out |= _all_step_ids(getattr(step, "substeps", ()))
    return out


def state_versions(packages: Sequence[str] = STATE_PACKAGES) -> dict[str, int]:
    """``{"module.Qualname": STATE_VERSION}`` of every class in ``packages`` that has one.

    Classes whose instances live in keyed state declare ``STATE_VERSION``; bump it on any
    change that makes an older pickle of the class unusable.
    """
    versions: dict[str, int] = {}
    for package in packages:
        pkg = importlib.import_module(package)
        names = [package] + [
            f"{package}.{info.name}" for info in pkgutil.iter_modules(pkg.__path__)
        ]
        for name in names:
            module = importlib.import_module(name)
            for _, cls in inspect.getmembers(module, inspect.isclass):
                version = cls.__dict__.get("STATE_VERSION")
                if cls.__module__ == name and isinstance(version, int):
                    versions[f"{cls.__module__}.{cls.__qualname__}"] = version
    return versions


def _library_versions() -> dict[str, str]:
    out = {}
    for lib in _LIBRARIES:
        try:
            out[lib] = metadata.version(lib)
        except metadata.PackageNotFoundError:
            out[lib] = "absent"
    return out


def build_manifest(
    flow: Dataflow,
    topics: Iterable[str],
    partitions: int,
    versions: Mapping[str, int] | None = None,
    shards: int = 1,
) -> RecoveryManifest:
    """The manifest this flow would write (``versions`` defaults to :func:`state_versions`)."""
    return RecoveryManifest(
        flow_id=flow.flow_id,
        step_ids=flow_step_ids(flow),
        topics=tuple(sorted(topics)),
        partitions=partitions,
        state_versions=dict(state_versions() if versions is None else versions),
        shards=shards,
        libraries=_library_versions(),
    )


def compare_manifests(stored: RecoveryManifest, current: RecoveryManifest) -> list[str]:
    """Every difference that makes the stored state unusable, in words; empty: compatible."""
    problems: list[str] = []
    if stored.flow_id != current.flow_id:
        problems.append(
            f"the dataflow id is {current.flow_id!r} but the recovery store was written by "
            f"{stored.flow_id!r}"
        )
    old, new = set(stored.step_ids), set(current.step_ids)
    problems += [
        f"step {s!r} is in the recovery store but not in this flow"
        for s in stored.step_ids
        if s not in new
    ]
    problems += [
        f"step {s!r} is in this flow but not in the recovery store"
        for s in current.step_ids
        if s not in old
    ]
    if old == new and stored.step_ids != current.step_ids:
        problems.append(
            f"the steps are the same but in another order: {list(current.step_ids)} "
            f"(store: {list(stored.step_ids)})"
        )
    for t in sorted(set(stored.topics) - set(current.topics)):
        problems.append(f"input topic {t!r} is in the recovery store but not in this flow")
    for t in sorted(set(current.topics) - set(stored.topics)):
        problems.append(f"input topic {t!r} is in this flow but not in the recovery store")
    if stored.partitions != current.partitions:
        problems.append(
            f"the recovery store has {stored.partitions} partition(s) but "
            f"run.recovery_partitions is {current.partitions} (fixed for the store's life)"
        )
    if stored.shards != current.shards:
        problems.append(
            f"the recovery store was written with {stored.shards or 'unrecorded'} shard(s) but "
            f"run.shards is {current.shards} (fixed for the store's life: processors/shards.py)"
        )
    for cls in sorted(set(stored.state_versions) | set(current.state_versions)):
        was, now = stored.state_versions.get(cls), current.state_versions.get(cls)
        if was == now:
            continue
        if now is None:
            problems.append(f"state class {cls} (version {was}) is in the recovery store "
                            "but not in this code")  # fmt: skip
        elif was is None:
            problems.append(f"state class {cls} (version {now}) is in this code but not in "
                            "the recovery store")  # fmt: skip
        else:
            problems.append(
                f"state class {cls} is version {now} in this code but version {was} in the "
                "recovery store"
            )
    return problems


def _refuse(db_dir: Path, problems: Sequence[str], why: str) -> ConfigError:
    listing = "\n".join(f"  - {p}" for p in problems)
    return ConfigError(
        f"refusing to resume from recovery directory {db_dir}:\n{listing}\n{why}\n"
        + WAY_OUT.format(dir=db_dir)
    )


_WHY = (
    "Bytewax keys saved state by dataflow id, step id and input partition and does not check "
    "them: state of a step or topic it no longer finds would be silently discarded (and new "
    "ones start empty), and state classes of another version may not unpickle or may "
    "misbehave."
)


def _part_files(db_dir: Path) -> list[Path]:
    return sorted(db_dir.glob("part-*.sqlite3"))


def _stored_snapshot_steps(parts: Iterable[Path]) -> set[str]:
    """Step ids holding snapshots in Bytewax's partitions (its ``snaps`` table)."""
    steps: set[str] = set()
    for part in parts:
        try:
            con = sqlite3.connect(f"file:{part}?mode=ro", uri=True)
            try:
                steps |= {row[0] for row in con.execute("SELECT DISTINCT step_id FROM snaps")}
            finally:
                con.close()
        except sqlite3.Error as exc:  # another Bytewax layout: the manifest alone guards
            log.warning("cannot read snapshot step ids from %s: %s", part, exc)
    return steps


def _write_manifest(db_dir: Path, manifest: RecoveryManifest) -> None:
    tmp = db_dir / f".{MANIFEST_NAME}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(manifest.to_json() + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, db_dir / MANIFEST_NAME)  # atomic: a crash never leaves half a manifest


@contextlib.contextmanager
def _creation_lock(db_dir: Path) -> Iterator[None]:
    """Serialise :func:`prepare_recovery` between the processes of one machine.

    The processes of a cluster on one machine may share one directory and start at the
    same moment; on a new store, one would otherwise delete the partition files the
    other is creating (an interrupted init is started again). The lock file sits beside
    the directory: inside it, it would make the directory look like something else's.
    """
    db_dir.parent.mkdir(parents=True, exist_ok=True)
    lock = db_dir.parent / f".{db_dir.name}.lock"
    with lock.open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def prepare_recovery(db_dir: Path, flow: Dataflow, manifest: RecoveryManifest) -> Path:
    """Create and initialise the store on first use, else verify it matches ``manifest``.

    Raises :class:`ConfigError` naming every difference. Returns the directory.
    """
    db_dir = Path(db_dir).expanduser()
    if manifest.partitions < 1:
        raise ConfigError(f"run.recovery_partitions must be >= 1, not {manifest.partitions}")
    manifest_path = db_dir / MANIFEST_NAME
    parts = _part_files(db_dir) if db_dir.is_dir() else []
    if db_dir.exists() and not db_dir.is_dir():
        raise ConfigError(f"run.recovery_dir {db_dir} exists and is not a directory")
    if not manifest_path.exists():
        if parts and _stored_snapshot_steps(parts):
            raise _refuse(
                db_dir,
                [f"the directory holds Bytewax snapshots but no {MANIFEST_NAME}"],
                "Its state cannot be checked against this flow.",
            )
        leftovers = {*parts, db_dir / f".{MANIFEST_NAME}.tmp"}
        if db_dir.is_dir() and any(p for p in db_dir.iterdir() if p not in leftovers):
            raise ConfigError(
                f"run.recovery_dir {db_dir} is not empty and is not a recovery store: "
                "give an empty or new directory"
            )
        db_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(db_dir, 0o700)  # snapshots hold customer data; mkdir's mode obeys the umask
        for part in parts:  # an init interrupted before its manifest: start it again
            part.unlink()
        init_db_dir(db_dir, manifest.partitions)
        _write_manifest(db_dir, manifest)
        log.info("recovery store created at %s with %d partition(s)", db_dir,
                 manifest.partitions)  # fmt: skip
        return db_dir

    stored = RecoveryManifest.from_json(manifest_path.read_text(), source=str(manifest_path))
    problems = compare_manifests(stored, manifest)
    if len(parts) != stored.partitions:
        problems.append(
            f"the manifest names {stored.partitions} partition(s) but the directory holds "
            f"{len(parts)} (restore the missing part-*.sqlite3 files from the same backup)"
        )
    known = _all_step_ids(flow.substeps)
    problems += [
        f"the recovery store holds state of step {step!r}, which this flow does not have"
        for step in sorted(_stored_snapshot_steps(parts) - known)
    ]
    if problems:
        raise _refuse(db_dir, problems, _WHY)
    if dict(stored.libraries) != dict(manifest.libraries):
        log.warning(
            "recovery store %s was written with %s, this is %s: if restoring fails, rebuild "
            "by replay (docs/recovery.md)", db_dir, dict(stored.libraries),
            dict(manifest.libraries),
        )  # fmt: skip
    log.info("resuming from recovery store %s", db_dir)
    return db_dir


def recovery_config(
    run: RunSettings, flow: Dataflow, topics: Iterable[str]
) -> RecoveryConfig | None:
    """The Bytewax recovery config for ``run`` (None: recovery off), store prepared."""
    if run.recovery_dir is None:
        return None
    if run.effective_epoch_interval_s <= 0:
        raise ConfigError("run.snapshot_interval_s (the epoch interval) must be > 0")
    if run.backup_interval_s < 0:
        raise ConfigError("run.backup_interval_s must be >= 0")
    manifest = build_manifest(flow, topics, run.recovery_partitions, shards=run.shards)
    with _creation_lock(Path(run.recovery_dir).expanduser()):
        db_dir = prepare_recovery(run.recovery_dir, flow, manifest)
    return RecoveryConfig(db_dir, backup_interval=timedelta(seconds=run.backup_interval_s))
