"""The private cache's write-behind: the caller gets the value before it is on disk, other
processes wait for the file under the lock, and a failed write leaves nothing behind."""

from __future__ import annotations

import pickle
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from optim import private_cache

REPO = Path(__file__).resolve().parents[2]


class Gated:
    """Pickles only once ``gate`` is set (at most 30 s), so a write that waits for it is slow."""

    gate = threading.Event()
    written_before_gate = False

    def __init__(self, payload: list[int]) -> None:
        self.payload = payload

    def __getstate__(self) -> dict:
        Gated.written_before_gate = not Gated.gate.is_set()
        Gated.gate.wait(timeout=30)
        return {"payload": self.payload}


class Unpicklable:
    def __reduce__(self):
        raise pickle.PicklingError("not today")


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DIGIPLAT_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(private_cache, "_MEMORY", {})
    return tmp_path / "cache"


def _writers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("cache-write-")]


def test_a_write_behind_value_is_returned_before_it_is_on_disk_and_read_back_after(cache) -> None:
    Gated.gate.clear()
    value = private_cache.stored("things", "gated", lambda: Gated([1, 2, 3]), lock=True, memory=False,
                                 write_behind=True)
    assert value.payload == [1, 2, 3]
    assert not list((cache / "things").glob("*.pickle"))  # the write waits for the gate
    # another process asking meanwhile blocks on the lock, then reads the entry (never builds)
    code = ("import sys; sys.path.insert(0, %r); sys.path.insert(0, %r)\n"
            "from optim import private_cache\n"
            "import test_private_cache\n"
            "def build():\n    raise SystemExit('built again')\n"
            "v = private_cache.stored('things', 'gated', build, lock=True, memory=False)\n"
            "print(v.payload)\n") % (str(REPO), str(Path(__file__).parent))
    reader = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, env={"DIGIPLAT_CACHE_DIR": str(cache), "PATH": "/usr/bin:/bin"})
    Gated.gate.set()
    out, err = reader.communicate(timeout=60)
    assert reader.returncode == 0, err
    assert out.strip() == "[1, 2, 3]"
    for thread in _writers():
        thread.join(timeout=30)
    assert Gated.written_before_gate  # the pickling had started before the gate opened
    assert [p.name.startswith("gated-") for p in (cache / "things").glob("*")].count(True) == 2  # entry + lock


def test_a_failed_write_behind_leaves_no_file_and_releases_the_lock(cache, caplog) -> None:
    built = []

    def build():
        built.append(1)
        return Unpicklable()

    private_cache.stored("things", "bad", build, lock=True, memory=False, write_behind=True)
    for thread in _writers():
        thread.join(timeout=30)
    assert not [p for p in (cache / "things").iterdir() if p.suffix != ".lock"]  # no entry, no temporary file
    assert "not written (PicklingError)" in caplog.text
    # the lock was released: the next ask computes again instead of waiting forever
    private_cache.stored("things", "bad", build, lock=True, memory=False, write_behind=True)
    for thread in _writers():
        thread.join(timeout=30)
    assert len(built) == 2
