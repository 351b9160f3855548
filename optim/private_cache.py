"""The user's private cache directory and the fingerprint of the code that wrote into it.

The app's point selections and day jobs, its kept bid tables and the DSO's compiled grids
(:mod:`optim.dso.compiled_grid`) are pickles that only this user's processes read back, so the
directory must be this user's alone (mode 0700, no symlink), and a pickle written by other code
is never read back (its name carries :func:`code_fingerprint`).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import pickle
import stat
import threading
from pathlib import Path
from typing import Any, Callable, Iterator, TypeVar

from optim._errors import InputError

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: This process's values by file name (a market day or the app asks for them per time frame).
_MEMORY: dict[str, Any] = {}
_MEMORY_MAX = 32
_GUARD = threading.Lock()
#: Entries kept per folder of :func:`stored` (the newest; older code versions' entries go first).
STORED_FILES_MAX = 64


def cache_dir() -> Path:
    """Return the private cache directory (mode 0700, owned by this user), creating it.

    ``$DIGIPLAT_CACHE_DIR``, else ``$XDG_CACHE_HOME/digiplat`` (``~/.cache/digiplat``). A
    directory owned by another user, or a symlink, is refused.

    Raises
    ------
    optim._errors.InputError
        The directory is not this user's or cannot be created.
    """
    env = os.environ.get("DIGIPLAT_CACHE_DIR")
    base = Path(env) if env else Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "digiplat"
    try:
        base.mkdir(mode=0o700, parents=True, exist_ok=True)
        st = base.lstat()
    except OSError as exc:
        raise InputError(f"cannot create the cache directory {base} ({exc.strerror}): set DIGIPLAT_CACHE_DIR") from None
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid():
        raise InputError(f"the cache directory {base} is not a directory of this user: set DIGIPLAT_CACHE_DIR")
    if stat.S_IMODE(st.st_mode) != 0o700:
        os.chmod(base, 0o700)
    return base


@functools.lru_cache(maxsize=1)
def code_fingerprint() -> str:
    """Hash of the optim and gridgen sources and the versions of the libraries whose objects are
    pickled (pandapower, numpy, scipy, pandas): a pickle of other code is never read back."""
    import hashlib
    from importlib.metadata import PackageNotFoundError, version

    import gridgen
    import optim

    digest = hashlib.sha256()
    for package in (optim, gridgen):
        for path in sorted(Path(package.__file__).parent.rglob("*.py")):
            digest.update(path.read_bytes())
    for name in ("pandapower", "numpy", "scipy", "pandas"):
        try:
            digest.update(f"{name}={version(name)}".encode())
        except PackageNotFoundError:
            digest.update(f"{name}=-".encode())
    return digest.hexdigest()[:16]


def stored(folder: str, name: str, build: Callable[[], T], *, lock: bool = False, memory: bool = True) -> T:
    """Return ``build()``, computed once for this code and kept in ``cache_dir()/folder``.

    ``name`` must say everything the value depends on besides the code (the file is
    ``NAME-FINGERPRINT.pickle``). An entry that cannot be read is computed again; it is written to
    a temporary file and renamed, so a reader never sees half of one; a cache directory that
    cannot be used only costs the time.

    Parameters
    ----------
    lock
        Hold a file lock while looking and computing, so that of several processes asking at once
        (the server's workers) one computes and the others read its result (for values that cost
        seconds); without it two processes may both compute a value they ask for at once.
    memory
        Keep the value in this process too (off for large values the caller keeps itself).
    """
    try:
        base = cache_dir() / folder
        base.mkdir(mode=0o700, exist_ok=True)
    except (InputError, OSError) as exc:
        logger.info("%s/%s not kept: %s", folder, name, exc)
        return build()
    path = base / f"{name}-{code_fingerprint()}.pickle"
    key = str(path)
    with _GUARD:
        if key in _MEMORY:
            return _MEMORY[key]
    with _file_lock(path.with_suffix(".lock")) if lock else contextlib.nullcontext():
        value = _read(path)
        if value is None:
            value = build()
            _write(path, value)
            _prune(base)
    if memory:
        with _GUARD:
            while len(_MEMORY) >= _MEMORY_MAX:
                _MEMORY.pop(next(iter(_MEMORY)))
            _MEMORY[key] = value
    return value


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    import fcntl

    with open(path, "a") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)  # released when the file closes, also if this process dies
        yield


def _read(path: Path) -> Any:
    """The entry at ``path``, or None if there is none or it cannot be read (it is computed again)."""
    if not path.is_file():
        return None
    try:
        with open(path, "rb") as f:
            return pickle.load(f)
    except Exception as exc:  # noqa: BLE001 - a damaged or foreign entry is computed again
        logger.warning("cache entry %s unreadable (%s); computing it again", path.name, type(exc).__name__)
        return None


def _write(path: Path, value: Any) -> None:
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}.{threading.get_ident()}")
    try:
        with open(tmp, "wb") as f:
            pickle.dump(value, f, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, path)
    except OSError as exc:
        logger.info("cache entry %s not written: %s", path.name, exc)
        tmp.unlink(missing_ok=True)
    except Exception as exc:  # noqa: BLE001 - a value that does not pickle is returned, not kept
        logger.warning("cache entry %s not written (%s: %s)", path.name, type(exc).__name__, exc)
        tmp.unlink(missing_ok=True)  # no half-written file is left behind


def is_stored(folder: str, name: str) -> bool:
    """Whether :func:`stored` holds ``folder/name`` for this code (in this process or on disk)."""
    try:
        path = cache_dir() / folder / f"{name}-{code_fingerprint()}.pickle"
    except InputError:
        return False
    with _GUARD:
        if str(path) in _MEMORY:
            return True
    return path.is_file()


def discard_folder(folder: str) -> None:
    """Remove every entry of ``cache_dir()/folder`` (a store this code no longer reads), if any."""
    try:
        path = cache_dir() / folder
    except InputError:
        return
    if path.is_dir():
        _prune(path, keep=0)
        with contextlib.suppress(OSError):
            path.rmdir()  # only if nothing else is left in it


def _prune(folder: Path, keep: int | None = None) -> None:
    """Remove all but the ``keep`` newest entries of ``folder`` (entries of other code versions are
    never read again; a removed entry is only computed again when asked for)."""
    keep = STORED_FILES_MAX if keep is None else keep
    try:
        entries = sorted(folder.glob("*.pickle"), key=lambda p: p.stat().st_mtime)
    except OSError:
        return
    for old in entries[:-keep] if keep > 0 else entries:
        old.unlink(missing_ok=True)
        old.with_suffix(".lock").unlink(missing_ok=True)
