"""The store: every durable fact of a Sampan server, in one SQLite file, and all of its SQL.

    $SAMPAN_HOME/state.db       SQLite in WAL mode: workspaces, tokens, apps, versions, events,
                                secrets (encrypted), proxy tokens
    $SAMPAN_HOME/secret.key     the key that encrypts secret values (mode 0600), kept outside the
                                database so a copy of the database alone reveals no secret

Callers get frozen value objects, never rows. Writes that belong together happen in one
transaction (a deploy's version row and the app's current version), so a process killed at any
moment leaves the previous state or the next, never half of one. Schema changes are numbered
migrations applied in order at open.

Tokens and proxy-token secrets are stored as SHA-256 hashes (they are random 128-bit strings, so a
slow hash adds nothing) and compared in constant time.

Longer than 400 lines because the SQLite schema, its migrations and every query on it stay together.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets as pysecrets
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import private_home
from ..exception import InvalidError, NotFoundError

MIGRATIONS: list[str] = [
    # 1: the first schema
    """
    CREATE TABLE workspaces (id TEXT PRIMARY KEY, name TEXT UNIQUE NOT NULL, created_at REAL NOT NULL);
    CREATE TABLE tokens (
        id TEXT PRIMARY KEY, workspace_id TEXT NOT NULL REFERENCES workspaces(id),
        secret_hash TEXT NOT NULL, created_at REAL NOT NULL, last_used_at REAL
    );
    CREATE TABLE apps (
        id TEXT PRIMARY KEY, workspace_id TEXT NOT NULL REFERENCES workspaces(id), name TEXT NOT NULL,
        state TEXT NOT NULL, current_version INTEGER, created_at REAL NOT NULL, stopped_at REAL,
        UNIQUE (workspace_id, name)
    );
    CREATE TABLE versions (
        app_id TEXT NOT NULL REFERENCES apps(id), version INTEGER NOT NULL, manifest TEXT NOT NULL,
        bundle_id TEXT NOT NULL, tag TEXT NOT NULL DEFAULT '', created_at REAL NOT NULL,
        PRIMARY KEY (app_id, version)
    );
    CREATE TABLE events (
        app_id TEXT NOT NULL REFERENCES apps(id), version INTEGER, action TEXT NOT NULL, at REAL NOT NULL
    );
    CREATE TABLE secrets (
        workspace_id TEXT NOT NULL REFERENCES workspaces(id), name TEXT NOT NULL, ciphertext BLOB NOT NULL,
        created_at REAL NOT NULL, updated_at REAL NOT NULL, PRIMARY KEY (workspace_id, name)
    );
    CREATE TABLE proxy_tokens (
        id TEXT PRIMARY KEY, workspace_id TEXT NOT NULL REFERENCES workspaces(id), name TEXT NOT NULL,
        secret_hash TEXT NOT NULL, created_at REAL NOT NULL
    );
    CREATE TABLE labels (
        subdomain TEXT PRIMARY KEY, app_id TEXT NOT NULL REFERENCES apps(id)
    );
    """,
    # 2: modal.Dict and modal.Queue (server/objects.py); keys and values are pickles, opaque here
    """
    CREATE TABLE objects (
        id TEXT PRIMARY KEY, workspace_id TEXT NOT NULL REFERENCES workspaces(id), kind TEXT NOT NULL,
        name TEXT NOT NULL, created_at REAL NOT NULL, UNIQUE (workspace_id, kind, name)
    );
    CREATE TABLE dict_items (
        object_id TEXT NOT NULL REFERENCES objects(id) ON DELETE CASCADE, key BLOB NOT NULL, value BLOB NOT NULL,
        PRIMARY KEY (object_id, key)
    );
    CREATE TABLE queue_items (
        seq INTEGER PRIMARY KEY AUTOINCREMENT, object_id TEXT NOT NULL REFERENCES objects(id) ON DELETE CASCADE,
        partition TEXT NOT NULL, value BLOB NOT NULL, expires_at REAL NOT NULL
    );
    CREATE INDEX queue_items_by_partition ON queue_items (object_id, partition, seq);
    """,
]

APP_NAME_RULE = "Names may contain only alphanumeric characters, dashes, periods, and underscores"


@dataclass(frozen=True)
class Workspace:
    id: str
    name: str


@dataclass(frozen=True)
class AppRecord:
    id: str
    workspace_id: str
    name: str
    state: str  # deployed | stopped
    current_version: int | None
    created_at: float
    stopped_at: float | None


@dataclass(frozen=True)
class VersionRecord:
    app_id: str
    version: int
    manifest: dict[str, Any]
    bundle_id: str
    tag: str
    created_at: float


@dataclass(frozen=True)
class EventRecord:
    version: int | None
    action: str
    at: float


@dataclass(frozen=True)
class SecretInfo:
    name: str
    created_at: float
    updated_at: float
    keys: tuple[str, ...]

    def __repr__(self) -> str:  # values are never part of an info object
        return f"SecretInfo({self.name!r}, keys={list(self.keys)})"


@dataclass(frozen=True)
class ProxyToken:
    id: str
    name: str
    created_at: float


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _new_id(prefix: str, nbytes: int = 11) -> str:
    return f"{prefix}-{pysecrets.token_hex(nbytes)}"


def check_app_name(name: str) -> None:
    import re

    if not re.fullmatch(r"[a-zA-Z0-9\-_.]{1,63}", name or "") or re.fullmatch(r"ap-[a-zA-Z0-9]{22}", name):
        raise InvalidError(
            f"Invalid App name: {name!r}. {APP_NAME_RULE}, must be shorter than 64 characters, and cannot "
            "conflict with App ID strings."
        )


class SecretBox:
    """Encrypts secret values (Fernet: AES-128-CBC with HMAC-SHA256) with a key outside the database."""

    def __init__(self, key_path: Path) -> None:
        from cryptography.fernet import Fernet

        if not key_path.exists():
            key_path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(Fernet.generate_key())
        self._fernet = Fernet(key_path.read_bytes().strip())

    def seal(self, values: dict[str, str]) -> bytes:
        return self._fernet.encrypt(json.dumps(values).encode())

    def open(self, ciphertext: bytes) -> dict[str, str]:
        return json.loads(self._fernet.decrypt(ciphertext))

    def seal_text(self, text: str) -> str:
        return self._fernet.encrypt(text.encode()).decode()

    def open_text(self, token: str) -> str:
        return self._fernet.decrypt(token.encode()).decode()


class Store:
    def __init__(self, home: Path) -> None:
        private_home(home)
        self.path = home / "state.db"
        self.db = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute("PRAGMA foreign_keys=ON")
        os.chmod(self.path, 0o600)
        self.box = SecretBox(home / "secret.key")
        self._workspaces: dict[str, Workspace] = {}  # by name: see workspace()
        self._migrate()
        self._seal_manifests()

    def close(self) -> None:
        self.db.close()

    # A manifest carries inline secrets (`Secret.from_dict`, `from_dotenv`, `from_local_environ`, `env=`):
    # stored sealed like named secrets, never as plain text.
    _SEALED = "fernet:"

    def _seal_manifest(self, manifest: dict[str, Any]) -> str:
        return self._SEALED + self.box.seal_text(json.dumps(manifest))

    def _open_manifest(self, stored: str) -> dict[str, Any]:
        if stored.startswith(self._SEALED):
            return json.loads(self.box.open_text(stored[len(self._SEALED):]))
        return json.loads(stored)

    def _seal_manifests(self) -> None:
        """Seal what an older Sampan stored in plain text (idempotent)."""
        rows = self.db.execute("SELECT app_id, version, manifest FROM versions WHERE manifest NOT LIKE ?",
                               (self._SEALED + "%",)).fetchall()
        if rows:
            with self.tx() as db:
                db.executemany("UPDATE versions SET manifest = ? WHERE app_id = ? AND version = ?",
                               [(self._seal_manifest(json.loads(m)), a, v) for a, v, m in rows])

    @contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        else:
            self.db.execute("COMMIT")

    def _migrate(self) -> None:
        with self.tx() as db:
            db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            row = db.execute("SELECT version FROM schema_version").fetchone()
            current = row[0] if row else 0
            for number, sql in enumerate(MIGRATIONS[current:], start=current + 1):
                for statement in filter(str.strip, sql.split(";")):
                    db.execute(statement)
                if row is None and number == 1:
                    db.execute("INSERT INTO schema_version VALUES (1)")
                else:
                    db.execute("UPDATE schema_version SET version = ?", (number,))

    @property
    def schema_version(self) -> int:
        return self.db.execute("SELECT version FROM schema_version").fetchone()[0]

    # -- workspaces and tokens ----------------------------------------------------------------
    def workspace(self, name: str) -> Workspace:
        """The workspace called `name`, created on first use. Workspaces are never renamed or deleted, so
        one found is remembered: every control request from a container asks for its workspace."""
        known = self._workspaces.get(name)
        if known is not None:
            return known
        row = self.db.execute("SELECT id, name FROM workspaces WHERE name = ?", (name,)).fetchone()
        if row:
            return self._remember(Workspace(*row))
        with self.tx() as db:
            wid = _new_id("ws", 8)
            db.execute("INSERT OR IGNORE INTO workspaces VALUES (?, ?, ?)", (wid, name, time.time()))
        row = self.db.execute("SELECT id, name FROM workspaces WHERE name = ?", (name,)).fetchone()
        return self._remember(Workspace(*row))

    def _remember(self, workspace: Workspace) -> Workspace:
        if len(self._workspaces) >= 10_000:  # bounded: names come from clients
            self._workspaces.clear()
        self._workspaces[workspace.name] = workspace
        return workspace

    def workspace_by_id(self, wid: str) -> Workspace:
        row = self.db.execute("SELECT id, name FROM workspaces WHERE id = ?", (wid,)).fetchone()
        if row is None:
            raise NotFoundError(f"No workspace {wid}")
        return Workspace(*row)

    def create_token(self, workspace: Workspace) -> tuple[str, str]:
        """A new API token: (`ak-…` id, `as-…` secret). Only the hash of the secret is kept."""
        token_id, secret = _new_id("ak"), "as-" + pysecrets.token_urlsafe(24)
        with self.tx() as db:
            db.execute("INSERT INTO tokens VALUES (?, ?, ?, ?, NULL)",
                       (token_id, workspace.id, _hash(secret), time.time()))
        return token_id, secret

    def authenticate(self, token_id: str, secret: str) -> Workspace | None:
        row = self.db.execute("SELECT workspace_id, secret_hash FROM tokens WHERE id = ?", (token_id,)).fetchone()
        if row is None or not hmac.compare_digest(row[1], _hash(secret)):
            return None
        return self.workspace_by_id(row[0])

    # -- apps and versions --------------------------------------------------------------------
    def _app(self, row: tuple[Any, ...] | None) -> AppRecord | None:
        return AppRecord(*row) if row else None

    _APP_COLS = "id, workspace_id, name, state, current_version, created_at, stopped_at"

    def app(self, workspace: Workspace, name_or_id: str) -> AppRecord | None:
        row = self.db.execute(
            f"SELECT {self._APP_COLS} FROM apps WHERE workspace_id = ? AND (name = ? OR id = ?)",
            (workspace.id, name_or_id, name_or_id),
        ).fetchone()
        return self._app(row)

    def apps(self, workspace: Workspace | None = None) -> list[AppRecord]:
        if workspace is None:
            rows = self.db.execute(f"SELECT {self._APP_COLS} FROM apps ORDER BY created_at").fetchall()
        else:
            rows = self.db.execute(
                f"SELECT {self._APP_COLS} FROM apps WHERE workspace_id = ? ORDER BY created_at", (workspace.id,)
            ).fetchall()
        return [AppRecord(*r) for r in rows]

    def add_version(self, workspace: Workspace, name: str, manifest: dict[str, Any], bundle_id: str,
                    tag: str = "", subdomains: list[str] | None = None) -> tuple[AppRecord, VersionRecord]:
        """Record a deploy: the new version and the app's pointer to it, in one transaction.

        Fails if a URL label belongs to another app of any workspace (labels are global).
        """
        check_app_name(name)
        now = time.time()
        with self.tx() as db:
            row = db.execute(f"SELECT {self._APP_COLS} FROM apps WHERE workspace_id = ? AND name = ?",
                             (workspace.id, name)).fetchone()
            if row is None:
                app_id = "ap-" + pysecrets.token_hex(11)
                db.execute("INSERT INTO apps VALUES (?, ?, ?, 'deployed', NULL, ?, NULL)",
                           (app_id, workspace.id, name, now))
                number = 1
            else:
                app_id = row[0]
                number = (db.execute("SELECT MAX(version) FROM versions WHERE app_id = ?", (app_id,)).fetchone()[0]
                          or 0) + 1
            for sub in subdomains or []:
                owner = db.execute("SELECT app_id FROM labels WHERE subdomain = ?", (sub,)).fetchone()
                if owner and owner[0] != app_id:
                    other = db.execute("SELECT name FROM apps WHERE id = ?", (owner[0],)).fetchone()
                    raise InvalidError(f"The URL label {sub!r} is already used by the deployed app {other[0]!r}.")
            db.execute("DELETE FROM labels WHERE app_id = ?", (app_id,))
            db.executemany("INSERT INTO labels VALUES (?, ?)", [(s, app_id) for s in subdomains or []])
            db.execute("INSERT INTO versions VALUES (?, ?, ?, ?, ?, ?)",
                       (app_id, number, self._seal_manifest(manifest), bundle_id, tag, now))
            db.execute("UPDATE apps SET state = 'deployed', current_version = ?, stopped_at = NULL WHERE id = ?",
                       (number, app_id))
            db.execute("INSERT INTO events VALUES (?, ?, 'deploy', ?)", (app_id, number, now))
        app = self.app(workspace, name)
        assert app is not None
        return app, self.version(app.id, number)

    def labels_of(self, app_id: str) -> list[str]:
        return [r[0] for r in self.db.execute("SELECT subdomain FROM labels WHERE app_id = ?", (app_id,))]

    def undo_version(self, app: AppRecord, number: int, previous: AppRecord | None, labels: list[str]) -> None:
        """Forget version `number` of `app` as if it had never been deployed: it did not come to serve.
        `previous` and `labels`: the app's row and URL labels before that deploy (None: a new app)."""
        with self.tx() as db:
            db.execute("DELETE FROM events WHERE app_id = ? AND version = ?", (app.id, number))
            db.execute("DELETE FROM versions WHERE app_id = ? AND version = ?", (app.id, number))
            db.execute("DELETE FROM labels WHERE app_id = ?", (app.id,))
            if previous is None:
                db.execute("DELETE FROM events WHERE app_id = ?", (app.id,))
                db.execute("DELETE FROM apps WHERE id = ?", (app.id,))
                return
            db.executemany("INSERT INTO labels VALUES (?, ?)", [(s, app.id) for s in labels])
            db.execute("UPDATE apps SET state = ?, current_version = ?, stopped_at = ? WHERE id = ?",
                       (previous.state, previous.current_version, previous.stopped_at, app.id))

    def version(self, app_id: str, number: int) -> VersionRecord:
        row = self.db.execute("SELECT app_id, version, manifest, bundle_id, tag, created_at FROM versions "
                              "WHERE app_id = ? AND version = ?", (app_id, number)).fetchone()
        if row is None:
            raise NotFoundError(f"App has no version {number}.")
        return VersionRecord(row[0], row[1], self._open_manifest(row[2]), row[3], row[4], row[5])

    def versions(self, app_id: str) -> list[VersionRecord]:
        rows = self.db.execute("SELECT version FROM versions WHERE app_id = ? ORDER BY version", (app_id,)).fetchall()
        return [self.version(app_id, r[0]) for r in rows]

    def set_current(self, app: AppRecord, number: int, action: str = "rollback") -> None:
        self.version(app.id, number)
        with self.tx() as db:
            db.execute("UPDATE apps SET state = 'deployed', current_version = ?, stopped_at = NULL WHERE id = ?",
                       (number, app.id))
            db.execute("INSERT INTO events VALUES (?, ?, ?, ?)", (app.id, number, action, time.time()))

    def stop_app(self, app: AppRecord) -> None:
        with self.tx() as db:
            db.execute("UPDATE apps SET state = 'stopped', stopped_at = ? WHERE id = ?", (time.time(), app.id))
            db.execute("DELETE FROM labels WHERE app_id = ?", (app.id,))
            db.execute("INSERT INTO events VALUES (?, ?, 'stop', ?)", (app.id, app.current_version, time.time()))

    def events(self, app_id: str) -> list[EventRecord]:
        rows = self.db.execute("SELECT version, action, at FROM events WHERE app_id = ? ORDER BY at", (app_id,))
        return [EventRecord(*r) for r in rows.fetchall()]

    # -- secrets ------------------------------------------------------------------------------
    def put_secret(self, workspace: Workspace, name: str, values: dict[str, str], force: bool = False) -> None:
        import re

        if not re.fullmatch(r"[a-zA-Z0-9\-_.]{1,63}", name):
            raise InvalidError(f"Invalid Secret name: {name!r}. {APP_NAME_RULE}.")
        if not values:
            raise InvalidError("A secret needs at least one KEY=VALUE.")
        now = time.time()
        with self.tx() as db:
            exists = db.execute("SELECT 1 FROM secrets WHERE workspace_id = ? AND name = ?",
                                (workspace.id, name)).fetchone()
            if exists and not force:
                raise InvalidError(f"Secret {name!r} already exists. Use --force to overwrite it.")
            db.execute("INSERT INTO secrets VALUES (?, ?, ?, ?, ?) ON CONFLICT (workspace_id, name) DO UPDATE "
                       "SET ciphertext = excluded.ciphertext, updated_at = excluded.updated_at",
                       (workspace.id, name, self.box.seal(values), now, now))

    def secret_values(self, workspace: Workspace, name: str) -> dict[str, str]:
        row = self.db.execute("SELECT ciphertext FROM secrets WHERE workspace_id = ? AND name = ?",
                              (workspace.id, name)).fetchone()
        if row is None:
            raise NotFoundError(f"Secret '{name}' not found. Create it with: sampan secret create {name} KEY=VALUE")
        return self.box.open(row[0])

    def secrets(self, workspace: Workspace) -> list[SecretInfo]:
        rows = self.db.execute("SELECT name, created_at, updated_at, ciphertext FROM secrets WHERE workspace_id = ? "
                               "ORDER BY name", (workspace.id,)).fetchall()
        return [SecretInfo(r[0], r[1], r[2], tuple(sorted(self.box.open(r[3])))) for r in rows]

    def delete_secret(self, workspace: Workspace, name: str) -> bool:
        with self.tx() as db:
            cur = db.execute("DELETE FROM secrets WHERE workspace_id = ? AND name = ?", (workspace.id, name))
        return cur.rowcount > 0

    # -- proxy tokens -------------------------------------------------------------------------
    def create_proxy_token(self, workspace: Workspace, name: str = "") -> tuple[str, str]:
        token_id, secret = _new_id("wk"), "ws-" + pysecrets.token_urlsafe(24)
        with self.tx() as db:
            db.execute("INSERT INTO proxy_tokens VALUES (?, ?, ?, ?, ?)",
                       (token_id, workspace.id, name, _hash(secret), time.time()))
        return token_id, secret

    def proxy_tokens(self, workspace: Workspace) -> list[ProxyToken]:
        rows = self.db.execute("SELECT id, name, created_at FROM proxy_tokens WHERE workspace_id = ? "
                               "ORDER BY created_at", (workspace.id,)).fetchall()
        return [ProxyToken(*r) for r in rows]

    def delete_proxy_token(self, workspace: Workspace, token_id: str) -> bool:
        with self.tx() as db:
            cur = db.execute("DELETE FROM proxy_tokens WHERE workspace_id = ? AND id = ?", (workspace.id, token_id))
        return cur.rowcount > 0

    def check_proxy_token(self, workspace_name: str, token_id: str, secret: str) -> bool:
        row = self.db.execute(
            "SELECT p.secret_hash FROM proxy_tokens p JOIN workspaces w ON w.id = p.workspace_id "
            "WHERE p.id = ? AND w.name = ?", (token_id, workspace_name)).fetchone()
        expected = row[0] if row else _hash("no such token")
        return hmac.compare_digest(expected, _hash(secret)) and row is not None
