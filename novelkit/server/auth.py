"""API keys (stored hashed under the served root) and single-use WebSocket tickets.

A key is ``nk_`` + 43 random URL-safe characters (256 bits). Only its SHA-256 is stored, in
``ROOT/.novelkit-keys.json`` (mode 0600); a high-entropy token needs no slow hash. Every stored
hash is compared with :func:`hmac.compare_digest`, so timing says nothing about which matched.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import json
import os
import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._artefacts import write_atomic

__all__ = ["KEYS_FILE", "KeyStore", "Principal", "Scope", "TicketBook", "create_key"]

KEYS_FILE = ".novelkit-keys.json"
KEY_PREFIX = "nk_"
TICKET_TTL = 30.0


class Scope(enum.Enum):
    READ = "read"
    WRITE = "write"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class Principal:
    """Who is calling: the key's id (never the key), its scope and optional project."""

    key_id: str
    scope: Scope
    project: str | None = None

    @property
    def can_write(self) -> bool:
        return self.scope is Scope.WRITE

    def sees(self, project_id: str) -> bool:
        return self.project is None or self.project == project_id

    def to_dict(self) -> dict[str, Any]:
        return {"key_id": self.key_id, "scope": self.scope.value, "project": self.project}


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def keys_path_for(root: str | os.PathLike[str]) -> Path:
    return Path(root) / KEYS_FILE


def create_key(
    root: str | os.PathLike[str],
    scope: str = "read",
    project: str | None = None,
    *,
    keys_path: str | os.PathLike[str] | None = None,
    name: str = "",
) -> str:
    """Create an API key for the projects under ``root`` and return it (shown only this once).

    key = create_key("novels", "write", project="lighthouse")
    """
    try:
        level = Scope(scope)
    except ValueError:
        raise ValueError(f"scope must be 'read' or 'write', not {scope!r}") from None
    if project is not None and (not project or "/" in project or project.startswith(".")):
        raise ValueError(f"project must be a folder name under the root, not {project!r}")
    path = Path(keys_path) if keys_path is not None else keys_path_for(root)
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    entry = {
        "id": "k_" + secrets.token_hex(4),
        "hash": _digest(key),
        "scope": level.value,
        "project": project,
        "name": name,
        "created": time.time(),
    }
    with _FILE_LOCK:
        data = _read(path)
        data["keys"].append(entry)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, (json.dumps(data, indent=2) + "\n").encode("utf-8"))
        os.chmod(path, 0o600)
    return key


_FILE_LOCK = threading.Lock()


def _read(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {"version": 1, "keys": []}
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot read the keys file {path}: {exc}; fix or delete it") from None
    if not isinstance(data, dict) or not isinstance(data.get("keys"), list):
        raise ValueError(f"the keys file {path} is not a novelkit keys file; fix or delete it")
    return data


class KeyStore:
    """The keys file, re-read when it changes (keys created while the server runs work at once)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._entries: list[tuple[str, Principal]] = []
        self._stamp: tuple[int, int] | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<KeyStore {str(self.path)!r}>"

    def _refresh(self) -> None:
        try:
            st = self.path.stat()
            stamp: tuple[int, int] | None = (st.st_mtime_ns, st.st_size)
        except FileNotFoundError:
            stamp = None
        if stamp == self._stamp:
            return
        with self._lock:
            entries = []
            if stamp is not None:
                for item in _read(self.path)["keys"]:
                    principal = Principal(
                        str(item["id"]), Scope(item["scope"]), item.get("project")
                    )
                    entries.append((str(item["hash"]), principal))
            self._entries, self._stamp = entries, stamp

    def count(self) -> int:
        self._refresh()
        return len(self._entries)

    def verify(self, key: str | None) -> Principal | None:
        """The key's principal, or None. Compares against every stored hash in constant time."""
        self._refresh()
        if not key:
            return None
        digest = _digest(key)
        found: Principal | None = None
        for stored, principal in self._entries:
            if hmac.compare_digest(stored, digest):
                found = principal
        return found


class TicketBook:
    """Short-lived single-use tickets for browsers that cannot set WebSocket headers."""

    def __init__(self, ttl: float = TICKET_TTL, capacity: int = 10_000) -> None:
        self.ttl = ttl
        self.capacity = capacity
        self._tickets: dict[str, tuple[float, Principal]] = {}
        self._lock = threading.Lock()

    def issue(self, principal: Principal) -> str:
        ticket = "t_" + secrets.token_urlsafe(24)
        now = time.monotonic()
        with self._lock:
            self._tickets = {t: v for t, v in self._tickets.items() if v[0] > now}
            if len(self._tickets) >= self.capacity:
                oldest = min(self._tickets, key=lambda t: self._tickets[t][0])
                del self._tickets[oldest]
            self._tickets[_digest(ticket)] = (now + self.ttl, principal)
        return ticket

    def redeem(self, ticket: str | None) -> Principal | None:
        """The ticket's principal, once; None if unknown, used or expired."""
        if not ticket:
            return None
        with self._lock:
            entry = self._tickets.pop(_digest(ticket), None)
        if entry is None or entry[0] < time.monotonic():
            return None
        return entry[1]
