"""All-or-nothing folder writes: the grid folder, ``day --out`` and ``clear --export`` share one swap."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

__all__ = ["swapped_folder"]


@contextlib.contextmanager
def swapped_folder(out: str | Path) -> Iterator[Path]:
    """Yield a temporary sibling folder of ``out``; on a clean exit it replaces ``out`` as a whole.

    The caller writes every file into the yielded folder (same file system as ``out``). Only when
    the block ends without an exception is a previous ``out`` renamed aside, the new folder renamed
    into its place and the old one removed; if that second rename fails the old folder is renamed
    back. A failure at any step leaves the previous folder as it was and no temporary folder
    behind. The new folder gets a new folder's usual mode (``mkdtemp`` alone would make it 0700).
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.new-", dir=out.parent))
    old: Path | None = None
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)
        yield tmp
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
            os.replace(out, old)  # the empty placeholder folder is replaced by the rename
            try:
                os.replace(tmp, out)
            except BaseException:
                os.replace(old, out)
                old = None
                raise
        else:
            os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
