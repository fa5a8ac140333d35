"""`modal.Dict` and `modal.Queue` on the server: named, per workspace, durable in the store's SQLite.

Keys and values arrive pickled by the client and stay opaque bytes here (a key is equal to another
when their pickles are equal, which holds for the str, int and tuple keys web apps use). Named
objects live until deleted; ephemeral ones (`Dict.ephemeral()`) are named objects with a random
name that the client deletes when its `with` block ends.

Queues: `put` appends to a partition ("" is the default one) with a time to live; `get` takes the
oldest live items, waiting (without polling) until some arrive or the timeout passes; every
change wakes the waiters of that queue.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import time
from typing import Any

from ..exception import InvalidError, NotFoundError
from .store import Store, Workspace

KINDS = ("dict", "queue")
# A name is a directory or a key of its workspace: at least one letter or digit, so `.` and `..`
# (which would name the workspace's directory or its parent) are never names.
NAME = re.compile(r"(?=[A-Za-z0-9._-]*[A-Za-z0-9])[A-Za-z0-9._-]{1,64}\Z")
MAX_PARTITION = 64
DEFAULT_PARTITION_TTL = 24 * 3600.0


def check_name(kind: str, name: str) -> None:
    if kind not in KINDS:
        raise NotFoundError(f"Unknown object kind {kind!r}.")
    if not NAME.match(name):
        raise InvalidError(f"Invalid {kind.capitalize()} name: {name!r}. Names may contain only alphanumeric "
                           "characters, dashes, periods, and underscores, must contain a letter or digit, "
                           "and must be shorter than 64 characters.")


class Objects:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.db = store.db
        self._changed: dict[str, asyncio.Event] = {}

    # -- objects ------------------------------------------------------------------------------
    def lookup(self, ws: Workspace, kind: str, name: str, create: bool = False) -> str:
        """The object's id; created when `create`, else NotFoundError with Modal's wording."""
        check_name(kind, name)
        row = self.db.execute("SELECT id FROM objects WHERE workspace_id = ? AND kind = ? AND name = ?",
                              (ws.id, kind, name)).fetchone()
        if row:
            return row[0]
        if not create:
            raise NotFoundError(f"{kind.capitalize()} '{name}' not found in workspace '{ws.name}'.")
        with self.store.tx() as db:
            db.execute("INSERT OR IGNORE INTO objects VALUES (?, ?, ?, ?, ?)",
                       (f"{'di' if kind == 'dict' else 'qu'}-{secrets.token_hex(8)}", ws.id, kind, name, time.time()))
        return self.lookup(ws, kind, name)

    def names(self, ws: Workspace, kind: str) -> list[dict[str, Any]]:
        rows = self.db.execute("SELECT name, created_at FROM objects WHERE workspace_id = ? AND kind = ? ORDER BY name",
                               (ws.id, kind)).fetchall()
        return [{"name": n, "created_at": c} for n, c in rows]

    def delete(self, ws: Workspace, kind: str, name: str) -> None:
        oid = self.lookup(ws, kind, name)
        with self.store.tx() as db:
            db.execute("DELETE FROM dict_items WHERE object_id = ?", (oid,))
            db.execute("DELETE FROM queue_items WHERE object_id = ?", (oid,))
            db.execute("DELETE FROM objects WHERE id = ?", (oid,))
        self._wake(oid)

    # -- dicts --------------------------------------------------------------------------------
    def dict_op(self, oid: str, op: str, body: dict[str, Any]) -> dict[str, Any]:
        db = self.db
        key = body.get("key")
        if op == "get" or op == "contains":
            row = db.execute("SELECT value FROM dict_items WHERE object_id = ? AND key = ?", (oid, key)).fetchone()
            return {"found": row is not None, "value": row[0] if row and op == "get" else None}
        if op == "put":
            with self.store.tx() as tx:
                verb = "INSERT OR IGNORE" if body.get("skip_if_exists") else "INSERT OR REPLACE"
                cur = tx.execute(f"{verb} INTO dict_items VALUES (?, ?, ?)", (oid, key, body["value"]))
            return {"created": cur.rowcount > 0}
        if op == "update":
            with self.store.tx() as tx:
                tx.executemany("INSERT OR REPLACE INTO dict_items VALUES (?, ?, ?)",
                               [(oid, k, v) for k, v in body["items"]])
            return {}
        if op == "pop":
            with self.store.tx() as tx:
                row = tx.execute("SELECT value FROM dict_items WHERE object_id = ? AND key = ?", (oid, key)).fetchone()
                tx.execute("DELETE FROM dict_items WHERE object_id = ? AND key = ?", (oid, key))
            return {"found": row is not None, "value": row[0] if row else None}
        if op == "len":
            return {"len": db.execute("SELECT COUNT(*) FROM dict_items WHERE object_id = ?", (oid,)).fetchone()[0]}
        if op == "items":
            rows = db.execute("SELECT key, value FROM dict_items WHERE object_id = ? ORDER BY rowid", (oid,))
            return {"items": [[k, v] for k, v in rows.fetchall()]}
        if op == "clear":
            with self.store.tx() as tx:
                tx.execute("DELETE FROM dict_items WHERE object_id = ?", (oid,))
            return {}
        raise InvalidError(f"Unknown Dict operation {op!r}.")

    # -- queues -------------------------------------------------------------------------------
    def _wake(self, oid: str) -> None:
        event = self._changed.pop(oid, None)
        if event is not None:
            event.set()

    @staticmethod
    def _partition(body: dict[str, Any]) -> str:
        partition = body.get("partition") or ""
        if len(partition) > MAX_PARTITION:
            raise InvalidError(f"Queue partition key must be at most {MAX_PARTITION} characters.")
        return partition

    def _take(self, oid: str, partition: str, n: int) -> list[bytes]:
        with self.store.tx() as tx:
            tx.execute("DELETE FROM queue_items WHERE object_id = ? AND expires_at < ?", (oid, time.time()))
            rows = tx.execute("SELECT seq, value FROM queue_items WHERE object_id = ? AND partition = ? "
                              "ORDER BY seq LIMIT ?", (oid, partition, n)).fetchall()
            if rows:
                tx.execute(f"DELETE FROM queue_items WHERE seq IN ({','.join('?' * len(rows))})",
                           [seq for seq, _ in rows])
        return [value for _, value in rows]

    async def queue_op(self, oid: str, op: str, body: dict[str, Any]) -> dict[str, Any]:
        partition = self._partition(body)
        if op == "put":
            ttl = float(body.get("partition_ttl") or DEFAULT_PARTITION_TTL)
            with self.store.tx() as tx:
                tx.executemany("INSERT INTO queue_items (object_id, partition, value, expires_at) VALUES (?, ?, ?, ?)",
                               [(oid, partition, v, time.time() + ttl) for v in body["values"]])
            self._wake(oid)
            return {}
        if op == "get":
            n = max(1, int(body.get("n") or 1))
            timeout = body.get("timeout")
            deadline = None if timeout is None else time.monotonic() + float(timeout)
            while True:
                values = self._take(oid, partition, n)
                if values or not body.get("block", True):
                    return {"values": values}
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return {"values": [], "timed_out": True}
                event = self._changed.setdefault(oid, asyncio.Event())
                try:
                    await asyncio.wait_for(event.wait(), remaining)
                except asyncio.TimeoutError:
                    pass
        if op == "peek":
            n = max(1, min(1000, int(body.get("n") or 1)))
            rows = self.db.execute("SELECT value FROM queue_items WHERE object_id = ? AND partition = ? AND "
                                   "expires_at >= ? ORDER BY seq LIMIT ?", (oid, partition, time.time(), n)).fetchall()
            return {"values": [value for (value,) in rows]}
        if op == "len":
            now = time.time()
            if body.get("total"):
                row = self.db.execute("SELECT COUNT(*) FROM queue_items WHERE object_id = ? AND expires_at >= ?",
                                      (oid, now)).fetchone()
            else:
                row = self.db.execute("SELECT COUNT(*) FROM queue_items WHERE object_id = ? AND partition = ? "
                                      "AND expires_at >= ?", (oid, partition, now)).fetchone()
            return {"len": row[0]}
        if op == "clear":
            with self.store.tx() as tx:
                if body.get("all"):
                    tx.execute("DELETE FROM queue_items WHERE object_id = ?", (oid,))
                else:
                    tx.execute("DELETE FROM queue_items WHERE object_id = ? AND partition = ?", (oid, partition))
            return {}
        raise InvalidError(f"Unknown Queue operation {op!r}.")
