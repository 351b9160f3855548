"""Where the shipped files are: the checkout's ``assets/`` or, after ``pip install .``, the copy
the wheel puts in ``<prefix>/share/digiplat-demonstrator/assets`` (pyproject's data-files)."""

from __future__ import annotations

import sys
import sysconfig
from pathlib import Path

__all__ = ["assets_dir"]

_CHECKOUT = Path(__file__).resolve().parent.parent / "assets"
_SHARE = Path("share") / "digiplat-demonstrator" / "assets"


def assets_dir(*, strict: bool = True) -> Path:
    """Return the folder of the shipped assets (scenario, paper B models, CSS and JS).

    The checkout's ``assets/`` wins (editable install, running from the source tree); otherwise the
    installed data folder under the interpreter's prefix. When neither exists: ``FileNotFoundError``
    with what to do, or with ``strict=False`` the checkout's path (for module-level defaults whose
    readers then report the missing file themselves).
    """
    candidates = [_CHECKOUT]
    for prefix in dict.fromkeys((sysconfig.get_paths()["data"], sys.prefix, sys.base_prefix)):
        candidates.append(Path(prefix) / _SHARE)
    for folder in candidates:
        if (folder / "bergwald").is_dir():
            return folder
    if not strict:
        return _CHECKOUT
    raise FileNotFoundError(
        "the shipped assets are missing (looked in " + ", ".join(str(c) for c in candidates)
        + "); reinstall the package with 'pip install .'"
    )
