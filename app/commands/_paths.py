"""Checks of output paths shared by the commands' argument parsers: refuse before any work is done."""

from __future__ import annotations

import argparse
import os
from pathlib import Path


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
