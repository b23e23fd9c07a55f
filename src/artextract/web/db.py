"""The review store: label decisions in SQLite (WAL), safe against crashes and concurrent writers.

The tables:

- ``decision_log``: every decision ever made, with its reviewer, append-only (the history);
- ``decisions``: each reviewer's current decision per ``(id, task)``, replaced in the same
  transaction; the decision of an item is the latest of its reviewers' current decisions;
- ``users``, ``api_tokens`` and ``sessions``: the reviewers who may sign in (argon2 password
  hashes), their API tokens and their signed-in sessions (both stored as SHA-256 hashes only).

Every call opens its own short-lived connection, so the store can be shared by the server's
threads, by several server processes and by the ``review export`` command at the same time. Writes
take the write lock up front (``BEGIN IMMEDIATE``) and wait for it rather than failing; with
``synchronous=FULL`` a decision that was answered is on disk, even if the server is killed right
after.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import re
import secrets
import sqlite3
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Iterator

from ..errors import ArtExtractError

SCHEMA_VERSION = 2
OPEN_WAIT_SECONDS = 30.0  # how long opening a store retries while another process sets it up
USER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")
SESSION_HOURS = 12
ACTIONS = ("accept", "relabel", "keep")  # "undo" removes the current decision (and is logged)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS decision_log (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL,
    task TEXT NOT NULL,
    action TEXT NOT NULL CHECK (action IN ('accept', 'relabel', 'keep', 'undo')),
    label TEXT,
    given_label TEXT,
    suggested_label TEXT,
    decided_at TEXT NOT NULL,
    source TEXT,
    reviewer TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS decision_log_item ON decision_log (id, task);
CREATE TABLE IF NOT EXISTS users (
    name TEXT PRIMARY KEY,
    password_hash TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS api_tokens (
    token_hash TEXT PRIMARY KEY,
    name TEXT NOT NULL REFERENCES users (name) ON DELETE CASCADE,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS sessions (
    session_hash TEXT PRIMARY KEY,
    name TEXT NOT NULL REFERENCES users (name) ON DELETE CASCADE,
    csrf TEXT NOT NULL,
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL
);
"""

_DECISIONS = """
CREATE TABLE IF NOT EXISTS decisions (
    id TEXT NOT NULL,
    task TEXT NOT NULL,
    reviewer TEXT NOT NULL DEFAULT '',
    action TEXT NOT NULL CHECK (action IN ('accept', 'relabel', 'keep')),
    label TEXT,
    given_label TEXT,
    suggested_label TEXT,
    decided_at TEXT NOT NULL,
    seq INTEGER NOT NULL,
    PRIMARY KEY (id, task, reviewer)
);
"""
_COLUMNS = "id, task, action, label, given_label, suggested_label, decided_at, seq, reviewer"


class ReviewStoreError(ArtExtractError, ValueError):
    """The review database cannot be opened or a decision is malformed."""


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


class ReviewStore:
    """Label decisions of the review queue, stored in one SQLite file."""

    def __init__(self, path: str | os.PathLike, *, create: bool = True):
        self.path = Path(path)
        if not self.path.exists():
            if not create:
                raise ReviewStoreError(f"review database {self.path} does not exist")
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise ReviewStoreError(f"cannot create the folder for the review database {self.path}: {exc}") from exc
        deadline = time.monotonic() + OPEN_WAIT_SECONDS
        while True:
            try:
                self._open_schema()
                return
            except sqlite3.OperationalError as exc:
                # two servers opening one new store at once: switching it to WAL answers "locked" without
                # waiting on SQLite's busy handler; every step here is idempotent, so try again
                if "locked" in str(exc) and time.monotonic() < deadline:
                    time.sleep(0.05)
                    continue
                raise ReviewStoreError(f"{self.path} is not a usable review database: {exc}") from exc
            except sqlite3.DatabaseError as exc:
                raise ReviewStoreError(f"{self.path} is not a usable review database: {exc}") from exc

    def _open_schema(self) -> None:
        """WAL mode, the tables (created or migrated) and the schema version."""
        with self._connect() as con:
            mode = con.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":  # e.g. a file system without shared memory
                raise ReviewStoreError(f"{self.path}: SQLite could not switch to WAL mode (got {mode})")
            con.executescript(_SCHEMA)
            _migrate(con)
            con.executescript(_DECISIONS)
            con.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('schema_version', ?)",
                        (str(SCHEMA_VERSION),))

    # ------------------------------------------------------------------ connections
    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        con = sqlite3.connect(self.path, timeout=30.0, isolation_level=None, check_same_thread=False)
        try:
            con.row_factory = sqlite3.Row
            con.execute("PRAGMA busy_timeout=30000")
            con.execute("PRAGMA synchronous=FULL")
            con.execute("PRAGMA foreign_keys=ON")
            yield con
        finally:
            con.close()

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._connect() as con:
            con.execute("BEGIN IMMEDIATE")
            try:
                yield con
            except BaseException:
                con.execute("ROLLBACK")
                raise
            con.execute("COMMIT")

    # ------------------------------------------------------------------ writing
    def record(self, item_id: str, task: str, action: str, label: str | None = None, *,
               given_label: str | None = None, suggested_label: str | None = None,
               source: str | None = None, reviewer: str | None = None) -> dict | None:
        """Record a decision and return the reviewer's new current decision (``None`` after ``undo``).

        ``accept`` takes ``suggested_label`` as the label, ``keep`` takes ``given_label``,
        ``relabel`` needs ``label``; the caller checks that labels are valid for the task.
        ``reviewer`` is who decided (``None`` when sign-in is off); ``undo`` forgets that
        reviewer's decision only.
        """
        who = reviewer or ""
        if action not in ACTIONS + ("undo",):
            raise ReviewStoreError(f"unknown action {action!r}; use one of {', '.join(ACTIONS + ('undo',))}")
        if action == "accept":
            if not suggested_label:
                raise ReviewStoreError("accept needs the suggested label")
            label = suggested_label
        elif action == "keep":
            label = given_label
        elif action == "relabel" and not label:
            raise ReviewStoreError("relabel needs a label")
        elif action == "undo":
            label = None
        ts = _now()
        with self._write() as con:
            cur = con.execute(
                "INSERT INTO decision_log (id, task, action, label, given_label, suggested_label, decided_at, source,"
                " reviewer) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (item_id, task, action, label, given_label, suggested_label, ts, source, who),
            )
            seq = cur.lastrowid
            if action == "undo":
                con.execute("DELETE FROM decisions WHERE id = ? AND task = ? AND reviewer = ?", (item_id, task, who))
                return None
            con.execute(
                "INSERT INTO decisions (id, task, reviewer, action, label, given_label, suggested_label, decided_at,"
                " seq) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (id, task, reviewer) DO UPDATE SET action = excluded.action, label = excluded.label,"
                " given_label = excluded.given_label, suggested_label = excluded.suggested_label,"
                " decided_at = excluded.decided_at, seq = excluded.seq",
                (item_id, task, who, action, label, given_label, suggested_label, ts, seq),
            )
        return {"id": item_id, "task": task, "action": action, "label": label, "given_label": given_label,
                "suggested_label": suggested_label, "decided_at": ts, "seq": seq, "reviewer": who}

    # ------------------------------------------------------------------ reading
    def current(self, item_id: str | None = None, task: str | None = None) -> list[dict]:
        """The current decision of each item (the latest of its reviewers'), optionally for one
        painting and/or task, oldest first."""
        where, args = _filter(item_id, task)
        sql = (f"SELECT {_COLUMNS} FROM decisions d{where} {'AND' if where else 'WHERE'} seq = "
               "(SELECT MAX(seq) FROM decisions e WHERE e.id = d.id AND e.task = d.task) ORDER BY seq")
        with self._connect() as con:
            return [dict(r) for r in con.execute(sql, args)]

    def current_by_reviewer(self, item_id: str | None = None, task: str | None = None,
                            reviewer: str | None = None) -> list[dict]:
        """Every reviewer's current decision (optionally for one painting, task and/or reviewer),
        oldest first."""
        where, args = _filter(item_id, task, reviewer)
        with self._connect() as con:
            return [dict(r) for r in con.execute(f"SELECT {_COLUMNS} FROM decisions{where} ORDER BY seq", args)]

    def reviewers_map(self) -> dict[tuple[str, str], dict[str, dict]]:
        """``(id, task) -> {reviewer: decision}`` for every decided item."""
        out: dict[tuple[str, str], dict[str, dict]] = {}
        for d in self.current_by_reviewer():
            out.setdefault((d["id"], d["task"]), {})[d["reviewer"]] = d
        return out

    def current_map(self) -> dict[tuple[str, str], dict]:
        return {(d["id"], d["task"]): d for d in self.current()}

    def get(self, item_id: str, task: str) -> dict | None:
        rows = self.current(item_id, task)
        return rows[0] if rows else None

    def history(self, item_id: str | None = None, task: str | None = None, limit: int = 1000) -> list[dict]:
        """Logged decisions, newest first."""
        where, args = _filter(item_id, task)
        sql = ("SELECT seq, id, task, action, label, given_label, suggested_label, decided_at, source, reviewer"
               " FROM decision_log" + where)
        sql += " ORDER BY seq DESC LIMIT ?"
        args.append(int(limit))
        with self._connect() as con:
            return [dict(r) for r in con.execute(sql, args)]

    def counts(self) -> dict:
        with self._connect() as con:
            rows = con.execute("SELECT action, COUNT(*) FROM decisions d WHERE seq = (SELECT MAX(seq) FROM "
                               "decisions e WHERE e.id = d.id AND e.task = d.task) GROUP BY action").fetchall()
            logged = con.execute("SELECT COUNT(*) FROM decision_log").fetchone()[0]
        by_action = {a: 0 for a in ACTIONS}
        by_action.update({r[0]: int(r[1]) for r in rows})
        return {"decided": sum(by_action.values()), "by_action": by_action, "logged": int(logged)}

    # ------------------------------------------------------------------ users
    def has_users(self) -> bool:
        """Whether any reviewer account exists (then the explorer asks everyone to sign in)."""
        with self._connect() as con:
            return con.execute("SELECT 1 FROM users LIMIT 1").fetchone() is not None

    def add_user(self, name: str, password: str) -> None:
        """Add a reviewer with an argon2 hash of ``password``.

        Parameters
        ----------
        name : str
            Letters, digits and ``_.@-``, at most 64 characters.
        password : str
            At least 8 characters.
        """
        if not USER_NAME.match(name or ""):
            raise ReviewStoreError(f"invalid user name {name!r}: use letters, digits and _.@- (at most 64)")
        if len(password or "") < 8:
            raise ReviewStoreError("the password must have at least 8 characters")
        from .security import hash_password

        try:
            with self._write() as con:
                con.execute("INSERT INTO users (name, password_hash, created_at) VALUES (?, ?, ?)",
                            (name, hash_password(password), _now()))
        except sqlite3.IntegrityError:
            raise ReviewStoreError(f"user {name!r} already exists") from None

    def remove_user(self, name: str) -> bool:
        """Remove a reviewer, their tokens and sessions (their decisions stay); False if absent."""
        with self._write() as con:
            return con.execute("DELETE FROM users WHERE name = ?", (name,)).rowcount > 0

    def users(self) -> list[dict]:
        """The reviewers: name, created_at, number of API tokens and of decisions."""
        with self._connect() as con:
            rows = con.execute(
                "SELECT u.name, u.created_at, (SELECT COUNT(*) FROM api_tokens t WHERE t.name = u.name) AS tokens,"
                " (SELECT COUNT(*) FROM decision_log l WHERE l.reviewer = u.name) AS decisions"
                " FROM users u ORDER BY u.name").fetchall()
        return [dict(r) for r in rows]

    def check_password(self, name: str, password: str) -> bool:
        """Whether ``password`` is ``name``'s (the same work is done for an unknown name)."""
        from .security import verify_password

        with self._connect() as con:
            row = con.execute("SELECT password_hash FROM users WHERE name = ?", (name,)).fetchone()
        return verify_password(row[0] if row else None, password)

    def new_token(self, name: str) -> str:
        """A new API token for ``name`` (shown once; only its hash is stored)."""
        token = "ae_" + secrets.token_urlsafe(32)
        with self._write() as con:
            if con.execute("SELECT 1 FROM users WHERE name = ?", (name,)).fetchone() is None:
                raise ReviewStoreError(f"no user {name!r}; add one with `artextract users add {name}`")
            con.execute("INSERT INTO api_tokens (token_hash, name, created_at) VALUES (?, ?, ?)",
                        (_digest(token), name, _now()))
        return token

    def user_for_token(self, token: str) -> str | None:
        with self._connect() as con:
            row = con.execute("SELECT name FROM api_tokens WHERE token_hash = ?", (_digest(token),)).fetchone()
        return row[0] if row else None

    def new_session(self, name: str, hours: float = SESSION_HOURS) -> tuple[str, str]:
        """Start a signed-in session: ``(session id for the cookie, CSRF token)``."""
        sid, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(24)
        now = datetime.now(timezone.utc)
        with self._write() as con:
            con.execute("DELETE FROM sessions WHERE expires_at < ?", (now.isoformat(),))
            con.execute("INSERT INTO sessions (session_hash, name, csrf, created_at, expires_at) VALUES (?, ?, ?, ?, ?)",
                        (_digest(sid), name, csrf, now.isoformat(), (now + timedelta(hours=hours)).isoformat()))
        return sid, csrf

    def session(self, sid: str) -> dict | None:
        """``{"name", "csrf"}`` of a live session, else None."""
        with self._connect() as con:
            row = con.execute("SELECT name, csrf, expires_at FROM sessions WHERE session_hash = ?",
                              (_digest(sid),)).fetchone()
        if row is None or row["expires_at"] < datetime.now(timezone.utc).isoformat():
            return None
        return {"name": row["name"], "csrf": row["csrf"]}

    def end_session(self, sid: str) -> None:
        with self._write() as con:
            con.execute("DELETE FROM sessions WHERE session_hash = ?", (_digest(sid),))

    def integrity_ok(self) -> bool:
        with self._connect() as con:
            return con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def _filter(item_id: str | None, task: str | None, reviewer: str | None = None) -> tuple[str, list]:
    """A WHERE clause (with a leading space, or empty) and its parameters for an optional id, task
    and reviewer."""
    conds, args = [], []
    for col, val in (("id", item_id), ("task", task), ("reviewer", reviewer)):
        if val is not None:
            conds.append(f"{col} = ?")
            args.append(val)
    return (" WHERE " + " AND ".join(conds) if conds else ""), args


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _migrate(con: sqlite3.Connection) -> None:
    """Bring a schema-1 database (decisions without reviewers) to the current schema."""
    log_cols = {r[1] for r in con.execute("PRAGMA table_info(decision_log)")}
    if "reviewer" not in log_cols:
        con.execute("ALTER TABLE decision_log ADD COLUMN reviewer TEXT NOT NULL DEFAULT ''")
    dec_cols = {r[1] for r in con.execute("PRAGMA table_info(decisions)")}
    if dec_cols and "reviewer" not in dec_cols:
        con.execute("BEGIN IMMEDIATE")
        con.execute("ALTER TABLE decisions RENAME TO decisions_v1")
        con.execute(_DECISIONS.replace("CREATE TABLE IF NOT EXISTS", "CREATE TABLE"))
        con.execute("INSERT INTO decisions (id, task, reviewer, action, label, given_label, suggested_label,"
                    " decided_at, seq) SELECT id, task, '', action, label, given_label, suggested_label,"
                    " decided_at, seq FROM decisions_v1")
        con.execute("DROP TABLE decisions_v1")
        con.execute("COMMIT")
