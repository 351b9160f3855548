"""The app tests keep linearizations in a private temporary cache, never in the user's ~/.cache."""

from __future__ import annotations

import shutil
import tempfile

import pytest


@pytest.fixture(scope="session", autouse=True)
def private_cache_dir():
    folder = tempfile.mkdtemp(prefix="digiplat-app-tests-")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DIGIPLAT_CACHE_DIR", folder)
        yield folder
    shutil.rmtree(folder, ignore_errors=True)
