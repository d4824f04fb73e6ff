"""PostgreSQL connections (psycopg 3) and the classification of their errors.

Every connection carries ``application_name`` (``edge-agent-collect/<role>``) so an
operator sees in ``pg_stat_activity`` which collector holds what. The password comes from
the config's ``password_env`` / ``password_file`` (or libpq's own ``PGPASSWORD`` /
``~/.pgpass``) and is never logged.

Errors are sorted by SQLSTATE class (:func:`is_transient`, :func:`is_content_error`):
connection loss, server shutdown, deadlocks and serialization failures are retried; a
data or constraint error is blamed on the message content (the batch is then replayed one
message at a time and the culprit quarantined); anything else is a deployment problem
(missing migration, permissions) and is retried with backoff without touching the data.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from edge_agent.collect.config import DatabaseConfig, read_secret

# SQLSTATE classes: 08 connection, 40 transaction rollback (deadlock, serialization),
# 53 insufficient resources, 57 operator intervention (admin shutdown, terminated), 58 I/O.
TRANSIENT_CLASSES = frozenset({"08", "40", "53", "57", "58"})
# 22 data exception, 23 integrity constraint violation, 54 program limit exceeded.
CONTENT_CLASSES = frozenset({"22", "23", "54"})


def conninfo(cfg: DatabaseConfig, role: str) -> str:
    """The libpq connection string for ``cfg`` with the application name of ``role``."""
    extra: dict[str, Any] = {
        "application_name": f"edge-agent-collect/{role}"[:63],
        "connect_timeout": max(1, round(cfg.connect_timeout_s)),
    }
    password = read_secret(cfg.password_env, cfg.password_file, "database.password")
    if password is not None:
        extra["password"] = password
    return make_conninfo(cfg.dsn, **extra)


def connect(cfg: DatabaseConfig, role: str, *, autocommit: bool = False) -> psycopg.Connection:
    """A new connection (raises psycopg.OperationalError when the server is unreachable)."""
    return psycopg.connect(conninfo(cfg, role), autocommit=autocommit)


def describe_target(cfg: DatabaseConfig) -> str:
    """``host:port/dbname`` of the DSN, for messages (never the password)."""
    try:
        params = conninfo_to_dict(cfg.dsn)
    except psycopg.ProgrammingError:
        return "(invalid dsn)"
    host = params.get("host") or params.get("hostaddr") or "local socket"
    port = params.get("port") or "5432"
    return f"{host}:{port}/{params.get('dbname') or params.get('user') or ''}"


def sqlstate(exc: BaseException) -> str:
    """The SQLSTATE of a psycopg error ('' when none, e.g. a lost connection)."""
    state = getattr(exc, "sqlstate", None)
    return state if isinstance(state, str) else ""


def is_transient(exc: BaseException) -> bool:
    """Whether retrying the same transaction later may succeed (connection, deadlock, ...)."""
    if isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError):
        state = sqlstate(exc)
        return not state or state[:2] in TRANSIENT_CLASSES or state[:2] not in CONTENT_CLASSES
    return isinstance(exc, psycopg.Error) and sqlstate(exc)[:2] in TRANSIENT_CLASSES


def is_content_error(exc: BaseException) -> bool:
    """Whether the error is about the data written (so one message is to blame)."""
    return isinstance(exc, psycopg.Error) and sqlstate(exc)[:2] in CONTENT_CLASSES


def short_error(exc: BaseException) -> str:
    """One line for logs and the quarantine reason (first line, bounded, no NUL)."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    state = sqlstate(exc)
    prefix = f"{type(exc).__name__}" + (f" [{state}]" if state else "")
    return f"{prefix}: {text}"[:300].replace("\x00", "")
