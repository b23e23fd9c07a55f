"""The review store: label decisions in SQLite (WAL), safe against crashes and concurrent writers.

Two tables:

- ``decision_log``: every decision ever made, append-only (the history);
- ``decisions``: the current decision per ``(id, task)``, replaced in the same transaction.

Every call opens its own short-lived connection, so the store can be shared by the server's
threads, by several server processes and by the ``review export`` command at the same time. Writes
take the write lock up front (``BEGIN IMMEDIATE``) and wait for it rather than failing; with
``synchronous=FULL`` a decision that was answered is on disk, even if the server is killed right
after.
"""
from __future__ import annotations

import contextlib
import os
import sqlite3
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

SCHEMA_VERSION = 1
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
    source TEXT
);
CREATE INDEX IF NOT EXISTS decision_log_item ON decision_log (id, task);
CREATE TABLE IF NOT EXISTS decisions (
    id TEXT NOT NULL,
    task TEXT NOT NULL,
    action TEXT NOT NULL CHECK (action IN ('accept', 'relabel', 'keep')),
    label TEXT,
    given_label TEXT,
    suggested_label TEXT,
    decided_at TEXT NOT NULL,
    seq INTEGER NOT NULL,
    PRIMARY KEY (id, task)
);
"""


class ReviewStoreError(ValueError):
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
        try:
            with self._connect() as con:
                mode = con.execute("PRAGMA journal_mode=WAL").fetchone()[0]
                if str(mode).lower() != "wal":  # e.g. a file system without shared memory
                    raise ReviewStoreError(f"{self.path}: SQLite could not switch to WAL mode (got {mode})")
                con.executescript(_SCHEMA)
                con.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', ?)",
                            (str(SCHEMA_VERSION),))
        except sqlite3.DatabaseError as exc:
            raise ReviewStoreError(f"{self.path} is not a usable review database: {exc}") from exc

    # ------------------------------------------------------------------ connections
    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        con = sqlite3.connect(self.path, timeout=30.0, isolation_level=None, check_same_thread=False)
        try:
            con.row_factory = sqlite3.Row
            con.execute("PRAGMA busy_timeout=30000")
            con.execute("PRAGMA synchronous=FULL")
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
               source: str | None = None) -> dict | None:
        """Record a decision and return the new current decision (``None`` after ``undo``).

        ``accept`` takes ``suggested_label`` as the label, ``keep`` takes ``given_label``,
        ``relabel`` needs ``label``; the caller checks that labels are valid for the task.
        """
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
                "INSERT INTO decision_log (id, task, action, label, given_label, suggested_label, decided_at, source)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (item_id, task, action, label, given_label, suggested_label, ts, source),
            )
            seq = cur.lastrowid
            if action == "undo":
                con.execute("DELETE FROM decisions WHERE id = ? AND task = ?", (item_id, task))
                return None
            con.execute(
                "INSERT INTO decisions (id, task, action, label, given_label, suggested_label, decided_at, seq)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (id, task) DO UPDATE SET action = excluded.action, label = excluded.label,"
                " given_label = excluded.given_label, suggested_label = excluded.suggested_label,"
                " decided_at = excluded.decided_at, seq = excluded.seq",
                (item_id, task, action, label, given_label, suggested_label, ts, seq),
            )
        return {"id": item_id, "task": task, "action": action, "label": label, "given_label": given_label,
                "suggested_label": suggested_label, "decided_at": ts, "seq": seq}

    # ------------------------------------------------------------------ reading
    def current(self, item_id: str | None = None, task: str | None = None) -> list[dict]:
        """Current decisions (optionally for one painting and/or task), oldest first."""
        where, args = _filter(item_id, task)
        sql = "SELECT id, task, action, label, given_label, suggested_label, decided_at, seq FROM decisions" + where
        sql += " ORDER BY seq"
        with self._connect() as con:
            return [dict(r) for r in con.execute(sql, args)]

    def current_map(self) -> dict[tuple[str, str], dict]:
        return {(d["id"], d["task"]): d for d in self.current()}

    def get(self, item_id: str, task: str) -> dict | None:
        rows = self.current(item_id, task)
        return rows[0] if rows else None

    def history(self, item_id: str | None = None, task: str | None = None, limit: int = 1000) -> list[dict]:
        """Logged decisions, newest first."""
        where, args = _filter(item_id, task)
        sql = ("SELECT seq, id, task, action, label, given_label, suggested_label, decided_at, source"
               " FROM decision_log" + where)
        sql += " ORDER BY seq DESC LIMIT ?"
        args.append(int(limit))
        with self._connect() as con:
            return [dict(r) for r in con.execute(sql, args)]

    def counts(self) -> dict:
        with self._connect() as con:
            rows = con.execute("SELECT action, COUNT(*) FROM decisions GROUP BY action").fetchall()
            logged = con.execute("SELECT COUNT(*) FROM decision_log").fetchone()[0]
        by_action = {a: 0 for a in ACTIONS}
        by_action.update({r[0]: int(r[1]) for r in rows})
        return {"decided": sum(by_action.values()), "by_action": by_action, "logged": int(logged)}

    def integrity_ok(self) -> bool:
        with self._connect() as con:
            return con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def _filter(item_id: str | None, task: str | None) -> tuple[str, list]:
    """A WHERE clause (with a leading space, or empty) and its parameters for an optional id and task."""
    conds, args = [], []
    for col, val in (("id", item_id), ("task", task)):
        if val is not None:
            conds.append(f"{col} = ?")
            args.append(val)
    return (" WHERE " + " AND ".join(conds) if conds else ""), args
