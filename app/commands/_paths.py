"""Output paths shared by the commands: checks that refuse before any work is done, and the
all-or-nothing folder write of ``day --out`` and ``clear --export``."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Mapping


def nearest_existing(path: Path) -> Path:
    """The path itself or its closest ancestor that exists."""
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def writable_below(text: str, path: Path) -> Path:
    """``path`` if its closest existing ancestor is a folder this process may write in, else the
    parser's one-line error naming ``text``."""
    base = nearest_existing(path)
    if not base.is_dir():
        raise argparse.ArgumentTypeError(f"{text}: {base} is a file, not a folder; choose another path")
    if not os.access(base, os.W_OK | os.X_OK):
        raise argparse.ArgumentTypeError(f"{text}: no permission to write in {base}; choose another path")
    return path


def _write_file(path: Path, data: bytes) -> None:
    """Write one file of :func:`replace_folder` (a seam for the fault tests)."""
    path.write_bytes(data)


def replace_folder(out: Path, files: Mapping[str, bytes]) -> Path:
    """Write ``files`` (name -> content) as the folder ``out``, all or nothing; return ``out`` resolved.

    The files go to a temporary sibling folder (same file system); only when every one is complete
    is a previous ``out`` renamed aside, the new folder renamed into its place and the old one
    removed. If that second rename fails the old folder is renamed back. A failure at any step
    leaves the previous folder as it was and no temporary folder behind. The caller checks that
    ``out`` holds nothing else worth keeping (it is replaced as a whole).
    """
    from gridgen.folders import swapped_folder

    out = Path(out).resolve()
    with swapped_folder(out) as tmp:
        for name, data in files.items():
            _write_file(tmp / name, data)
    return out
