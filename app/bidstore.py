"""A browser session's bid table, kept on the server so that it survives a reload.

The browser holds only a random token (``dcc.Store(storage_type="session")``: one per browser
tab, kept across reloads, never in the URL, so a shared link carries no bids); the bids are a
JSON file named by the token in the app's private cache directory
(:func:`app.session.cache_dir`), so every gunicorn worker process reads what another wrote.

* Atomic: a file is written under a temporary name in the same directory and renamed
  (``os.replace``), so a reader sees the old table or the new one, never a half-written file.
* Bounded: a table larger than :data:`MAX_FILE_BYTES` is not kept (the session's older file is
  removed, so a reload never brings back stale bids), and the directory keeps at most
  :data:`MAX_TOTAL_BYTES`, oldest first out.
* Cleaned up: files not written or read for :data:`MAX_AGE_S` are removed at each write.

Tokens are checked against :data:`TOKEN_RE` before they name a file (no path can be smuggled in).
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import tempfile
import time
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

TOKEN_RE = re.compile(r"^[A-Za-z0-9_-]{22,64}$")
MAX_FILE_BYTES = 24 * 1024 * 1024  # the JSON of a full 5 MB CSV upload fits (rows grow ~3x as JSON records)
MAX_TOTAL_BYTES = 256 * 1024 * 1024
MAX_AGE_S = 7 * 24 * 3600.0
SUFFIX = ".bids.json"


def new_token() -> str:
    """Return a new random session token (128 bits, URL-safe)."""
    return secrets.token_urlsafe(16)


def valid_token(token: Any) -> bool:
    """Return whether ``token`` has the form of :func:`new_token`'s tokens."""
    return isinstance(token, str) and bool(TOKEN_RE.match(token))


def folder() -> Path:
    """Return the directory of the sessions' bid files (in the private cache directory, mode 0700)."""
    from app.session import cache_dir

    path = cache_dir() / "sessions"
    path.mkdir(mode=0o700, exist_ok=True)
    return path


def path_of(token: str) -> Path:
    """Return the bid file of a valid token."""
    if not valid_token(token):
        raise ValueError("not a session token")
    return folder() / f"{token}{SUFFIX}"


def save_bids(token: Any, records: list[dict[str, Any]] | None, *, now_s: float | None = None) -> bool:
    """Keep a session's bid table; return whether it was kept.

    Not kept (False): an invalid token, records that are not a list, or a table whose JSON is
    larger than :data:`MAX_FILE_BYTES` (then the session's previous file is removed too).
    Each call also removes old files (:func:`cleanup`).
    """
    if not valid_token(token) or not isinstance(records, list):
        return False
    target = path_of(token)
    text = json.dumps(records, separators=(",", ":"), allow_nan=False, default=str)
    if len(text.encode()) > MAX_FILE_BYTES:
        log.warning("session bid table of %.1f MB not kept (limit %.0f MB)", len(text.encode()) / 2**20, MAX_FILE_BYTES / 2**20)
        target.unlink(missing_ok=True)
        return False
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-", suffix=SUFFIX)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    cleanup(now_s=now_s, keep=target)
    return True


def load_bids(token: Any) -> list[dict[str, Any]] | None:
    """Return a session's kept bid table, or None (no valid token, no file, or an unreadable one).

    A read renews the file's age, so a session in use is not cleaned up.
    """
    if not valid_token(token):
        return None
    target = path_of(token)
    try:
        if target.stat().st_size > MAX_FILE_BYTES:
            return None
        records = json.loads(target.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        log.warning("session bid file %s unreadable (%s)", target.name, type(exc).__name__)
        return None
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        return None
    try:
        os.utime(target)
    except OSError:
        pass
    return records


def cleanup(*, now_s: float | None = None, keep: Path | None = None) -> list[Path]:
    """Remove bid files older than :data:`MAX_AGE_S` and, oldest first, beyond :data:`MAX_TOTAL_BYTES`.

    ``keep`` (the file just written) is never removed. Returns the removed files. Leftover
    temporary files of a writer that died are removed after the same age.
    """
    now_s = time.time() if now_s is None else now_s
    entries = []
    for path in folder().glob(f"*{SUFFIX}"):
        try:
            st = path.stat()
        except FileNotFoundError:  # removed meanwhile by another worker
            continue
        entries.append((st.st_mtime, st.st_size, path))
    entries.sort(key=lambda e: e[0], reverse=True)  # newest first
    removed, total = [], 0
    for mtime_s, size, path in entries:
        if path != keep and (now_s - mtime_s > MAX_AGE_S or total + size > MAX_TOTAL_BYTES):
            path.unlink(missing_ok=True)
            removed.append(path)
            continue
        total += size
    return removed
