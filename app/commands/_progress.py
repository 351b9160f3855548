"""The progress bar of the long commands (tqdm on stderr, off when stderr is not a terminal)."""

from __future__ import annotations

import sys
from typing import Callable


def progress_bar(desc: str, *, disable: bool, unit: str = "it", width: int = 60) -> Callable[[int, int, str], None]:
    """Return ``update(done, total, message)`` that draws a bar named ``desc`` and closes it at the end."""
    from tqdm import tqdm

    bar = None

    def update(done: int, total: int, message: str) -> None:
        nonlocal bar
        if bar is None:
            bar = tqdm(total=total, file=sys.stderr, disable=disable, leave=False, desc=desc, unit=unit)
        bar.n = done
        bar.set_postfix_str(message[:width])
        bar.refresh()
        if done >= total:
            bar.close()

    return update
