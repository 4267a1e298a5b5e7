"""Least privilege for the RetailPulse Redis: a writer user for the flows, a reader for services.

The writer may touch only ``<prefix>:*`` keys and channels, and run only the commands the
sink (:mod:`infra.redis_sink`) and ``retailpulse metrics`` / ``report`` send: its Lua
scripts run by SHA (and are loaded by redis-py on first use), and every command a script
calls is checked against the same user, so a script cannot escalate. The reader gets the
read-only commands (no KEYS, SCAN or RANDOMKEY, which would list other deployments' key
names) on the same keys, plus SUBSCRIBE/PSUBSCRIBE on our channels.

>>> for line in acl_rules("rp"):
...     print(*line.split()[:7])
user rp-writer on >CHANGE-ME-rp-writer ~rp:* resetchannels &rp:*
user rp-reader on >CHANGE-ME-rp-reader ~rp:* resetchannels &rp:*

Load them with ``ACL SETUSER`` (:func:`setuser_args`, or ``retailpulse acl --apply``) or
append :func:`render_acl_file` output to the server's ``aclfile`` and run ``ACL LOAD``.
An aclfile that does not name ``default`` leaves it ``on nopass +@all``: give it a
password or turn it off there (docs/redis.md, "Least privilege").
"""

from __future__ import annotations

import argparse
import hashlib
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from streams.errors import ConfigError, InfraError

__all__ = [
    "CONNECTION_COMMANDS",
    "READER_RULES",
    "WRITER_COMMANDS",
    "AclUser",
    "acl_rules",
    "acl_users",
    "add_acl_parser",
    "apply_acl",
    "notes",
    "render_acl_file",
    "setuser_args",
]

# What infra/redis_sink.py sends: EVALSHA of its two scripts (redis-py's pipeline checks
# SCRIPT EXISTS and SCRIPT LOADs a missing one), the commands those scripts call, and
# ZADD/ZREM for sorted sets, DEL for the restore after Redis lost writes (a stream is rebuilt
# whole, docs/operations.md). Then what `retailpulse metrics` and `report` read.
WRITER_COMMANDS = (
    "evalsha", "script|load", "script|exists",
    "hget", "hset", "pexpire", "xrevrange", "xadd", "publish",
    "zadd", "zrem", "del",
    "hgetall", "zrevrange", "xrange", "get",
)  # fmt: skip
# Sent by clients on their own: PING (health checks), SELECT (a /N database in the URL),
# CLIENT SETINFO (redis-py, on connect: refusing it fills ACL LOG with false alarms);
# CLUSTER SLOTS and COMMAND (redis-py's cluster client reads the slot map and the key
# positions of commands on connect; harmless on a single server).
CONNECTION_COMMANDS = (
    "ping", "select", "client|setinfo", "client|setname", "cluster|slots", "command",
)  # fmt: skip
READER_RULES = (
    "+@read", "-@write", "-@dangerous", "-scan", "-randomkey",
    "+subscribe", "+psubscribe", "+unsubscribe", "+punsubscribe",
)  # fmt: skip
_GLOB = re.compile(r"[*?\[\]\\\s]")
_PLACEHOLDER = "CHANGE-ME-"


@dataclass(frozen=True, slots=True)
class AclUser:
    """A user name and its rules (without a password)."""

    name: str
    rules: tuple[str, ...]


def _check_prefix(prefix: str) -> None:
    if not prefix or _GLOB.search(prefix):
        raise ConfigError(
            f"redis.key_prefix {prefix!r} cannot be used in ACL patterns: it must be non-empty "
            "without spaces or glob characters (* ? [ ] \\)"
        )


def acl_users(prefix: str, writer: str = "rp-writer", reader: str = "rp-reader") -> list[AclUser]:
    """The writer and reader users for keys and channels ``<prefix>:*``.

    >>> acl_users("rp")[1].rules[:4]
    ('~rp:*', 'resetchannels', '&rp:*', '-@all')
    """
    _check_prefix(prefix)
    scope = (f"~{prefix}:*", "resetchannels", f"&{prefix}:*", "-@all")
    commands = tuple(f"+{c}" for c in (*WRITER_COMMANDS, *CONNECTION_COMMANDS))
    reader_rules = (*READER_RULES, *(f"+{c}" for c in CONNECTION_COMMANDS))
    return [AclUser(writer, (*scope, *commands)), AclUser(reader, (*scope, *reader_rules))]


def _secret(user: AclUser, passwords: Mapping[str, str] | None, *, hashed: bool) -> str:
    password = (passwords or {}).get(user.name)
    if password is None:
        return f">{_PLACEHOLDER}{user.name}"
    if hashed:  # an aclfile should hold SHA-256 digests, never the passwords themselves
        return "#" + hashlib.sha256(password.encode()).hexdigest()
    return f">{password}"


def acl_rules(
    prefix: str,
    writer: str = "rp-writer",
    reader: str = "rp-reader",
    passwords: Mapping[str, str] | None = None,
) -> list[str]:
    """aclfile lines (``user <name> on <secret> <rules>``); placeholders unless ``passwords``."""
    return [
        " ".join(("user", u.name, "on", _secret(u, passwords, hashed=True), *u.rules))
        for u in acl_users(prefix, writer, reader)
    ]


def setuser_args(user: AclUser, password: str) -> list[str]:
    """``ACL SETUSER`` arguments; ``reset`` first, so re-applying gives the same user.

    >>> setuser_args(AclUser("u", ("~rp:*", "+ping")), "pw")
    ['ACL', 'SETUSER', 'u', 'reset', 'on', '>pw', '~rp:*', '+ping']
    """
    return ["ACL", "SETUSER", user.name, "reset", "on", f">{password}", *user.rules]


def render_acl_file(
    prefix: str,
    writer: str = "rp-writer",
    reader: str = "rp-reader",
    passwords: Mapping[str, str] | None = None,
) -> str:
    """An aclfile fragment for ``prefix`` (user lines only: aclfiles cannot hold comments)."""
    return "\n".join(acl_rules(prefix, writer, reader, passwords)) + "\n"


def notes(prefix: str, placeholders: bool) -> str:
    """What an operator must know about :func:`render_acl_file` (printed on stderr)."""
    lines = [
        f"# RetailPulse ACL users for key prefix {prefix!r} (contract v1: docs/redis.md)",
        "# append to your aclfile, then ACL LOAD; a file that does not name `default` leaves it "
        "`on nopass +@all`",
    ]
    if placeholders:
        lines.append(
            f"# MUST CHANGE: '>{_PLACEHOLDER}<user>' are placeholder passwords; pass "
            "--writer-password-file/--reader-password-file (stored as #<sha256>)"
        )
    return "\n".join(lines) + "\n"


def apply_acl(client: Any, users: Sequence[AclUser], passwords: Mapping[str, str]) -> None:
    """``ACL SETUSER`` each user through ``client`` (a redis-py client with admin rights)."""
    import redis

    for user in users:
        password = passwords.get(user.name)
        if not password or password.startswith(_PLACEHOLDER):
            raise ConfigError(f"no real password for ACL user {user.name!r}")
        try:
            client.execute_command(*setuser_args(user, password))
        except redis.RedisError as exc:
            raise InfraError(f"ACL SETUSER {user.name} failed: {exc}") from exc


# -- command line: `retailpulse acl` (wired in streams/cli.py) ---------------------------------


def add_acl_parser(sub: Any) -> None:
    acl = sub.add_parser("acl", help="print (or apply) the writer/reader ACL users")
    acl.add_argument("--prefix", help="key prefix (default: redis.key_prefix)")
    acl.add_argument("--writer", default="rp-writer", help="the flows' user name")
    acl.add_argument("--reader", default="rp-reader", help="dashboards' user name")
    acl.add_argument("--writer-password-file", type=Path)
    acl.add_argument("--reader-password-file", type=Path)
    acl.add_argument(
        "--commands", action="store_true", help="print ACL SETUSER commands, not an aclfile"
    )
    acl.add_argument(
        "--apply", action="store_true", help="run ACL SETUSER on --redis-url (admin needed)"
    )
    acl.set_defaults(func=_acl)


def _read_password(path: Path | None) -> str | None:
    if path is None:
        return None
    try:
        return path.read_text().strip()
    except OSError as exc:
        raise ConfigError(f"cannot read password file {path}: {exc}") from exc


def _acl(args: argparse.Namespace, settings: Any) -> int:
    prefix = args.prefix or settings.redis.key_prefix
    passwords = {
        name: pw
        for name, pw in (
            (args.writer, _read_password(args.writer_password_file)),
            (args.reader, _read_password(args.reader_password_file)),
        )
        if pw
    }
    users = acl_users(prefix, args.writer, args.reader)
    if args.apply:
        import redis

        client = redis.Redis.from_url(settings.redis.require_url())
        try:
            apply_acl(client, users, passwords)
        finally:
            client.close()
        print(f"applied ACL users {args.writer}, {args.reader} for prefix {prefix!r}")
        return 0
    sys.stderr.write(notes(prefix, placeholders=len(passwords) < 2))
    if args.commands:
        for user in users:
            secret = passwords.get(user.name, f"{_PLACEHOLDER}{user.name}")
            print(" ".join(setuser_args(user, secret)))
        return 0
    print(render_acl_file(prefix, args.writer, args.reader, passwords), end="")
    return 0
