"""The tracking URI of a store: made absolute (a Ray worker in its own working directory logs to the same store),
checked before anything is written, and where artifacts go beside a SQLite store."""

from __future__ import annotations

import os
import socket
import urllib.error
import urllib.request
from pathlib import Path
from typing import Optional
from urllib.parse import unquote, urlparse

from runners.store.layout import DEFAULT_TRACKING_URI
from sobolev.errors import ConfigError

SQLITE_PREFIX = "sqlite:///"
SQLITE_HEADER = b"SQLite format 3\x00"


def resolve_tracking_uri(uri: Optional[str], cwd: Optional[Path] = None) -> str:
    """An absolute tracking URI: relative sqlite paths are made absolute; file stores refused."""
    uri = uri or DEFAULT_TRACKING_URI
    cwd = Path(cwd or os.getcwd())
    parsed = urlparse(uri)
    if parsed.scheme == "sqlite":
        path = uri[len(SQLITE_PREFIX):] if uri.startswith(SQLITE_PREFIX) else ""
        if not path:
            raise ConfigError(f"tracking URI {uri!r}: expected sqlite:///path/to/mlflow.db")
        if uri.startswith("sqlite:////"):
            return uri
        return f"{SQLITE_PREFIX}{(cwd / path).resolve()}"
    if parsed.scheme in ("http", "https"):
        return uri.rstrip("/")
    raise ConfigError(
        f"tracking URI {uri!r} is not supported; use sqlite:///path/mlflow.db (default) or http://host:port "
        "(MLflow 3 refuses the ./mlruns file store)"
    )


def is_server(uri: str) -> bool:
    return uri.startswith(("http://", "https://"))


def sqlite_path(uri: str) -> Optional[Path]:
    """The database file of a SQLite store (None for a server)."""
    return Path(uri[len(SQLITE_PREFIX):]) if uri.startswith(SQLITE_PREFIX) else None


def check_reachable(uri: str, timeout: float = 5.0) -> None:
    """Fail in seconds, with the cause, when a tracking server does not answer or a SQLite file is not one."""
    db = sqlite_path(uri)
    if db is not None:
        if not db.parent.is_dir():
            raise ConfigError(f"tracking URI {uri!r}: folder {db.parent} does not exist")
        if db.is_dir():
            raise ConfigError(f"tracking URI {uri!r}: {db} is a folder, not an SQLite database file")
        try:
            if db.exists() and db.stat().st_size:
                with db.open("rb") as fh:
                    if fh.read(len(SQLITE_HEADER)) != SQLITE_HEADER:
                        raise ConfigError(f"tracking URI {uri!r}: {db} is not an SQLite database (an MLflow store "
                                          "is sqlite:///path/to/mlflow.db or http://host:port)")
        except OSError as exc:
            raise ConfigError(f"tracking URI {uri!r}: cannot read {db}: {exc.strerror or exc}") from None
        return
    try:
        with urllib.request.urlopen(f"{uri}/health", timeout=timeout) as resp:
            if resp.status != 200:
                raise ConfigError(f"tracking server {uri} answered /health with HTTP {resp.status}")
    except urllib.error.HTTPError as exc:
        raise ConfigError(f"tracking server {uri} answered /health with HTTP {exc.code}") from None
    except (urllib.error.URLError, socket.timeout, ConnectionError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ConfigError(f"cannot reach tracking server {uri}: {reason}") from None


def check_writable(uri: str) -> None:
    """A SQLite store this invocation can write: the database file (if there is one) opens for writing, and its
    folder takes new files (SQLite's journal, the artifacts).  A read-only, immutable or foreign-owned file is one
    line naming it, before anything is written (a server checks its own store)."""
    db = sqlite_path(uri)
    if db is None:
        return
    try:
        if db.exists():
            with db.open("r+b"):
                pass
        probe = db.parent / f".{db.name}.write-probe-{os.getpid()}"
        probe.touch()
        probe.unlink()
    except OSError as exc:
        raise ConfigError(f"tracking URI {uri!r}: cannot write {exc.filename or db}: {exc.strerror or exc}") from None


def artifact_location(uri: str, experiment: str) -> Optional[str]:
    """Beside a sqlite store: ``<db folder>/mlartifacts/<experiment>``; a server decides itself."""
    db = sqlite_path(uri)
    return (db.parent / "mlartifacts" / experiment).as_uri() if db is not None else None


def local_folder(artifact_uri: str) -> Optional[Path]:
    """The folder of a run's artifacts when it is on this machine (a ``file:`` URI or a plain path: beside a SQLite
    store), read and written without MLflow; None for any other artifact store."""
    parsed = urlparse(artifact_uri)
    return Path(unquote(parsed.path)) if parsed.scheme in ("file", "") and artifact_uri else None


def store_exists(uri: str) -> bool:
    """False for a sqlite store not created yet (reading it must not create it)."""
    db = sqlite_path(uri)
    return db is None or db.exists()
