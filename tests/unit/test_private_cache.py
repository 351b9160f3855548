"""The private cache keeps what pickles and returns what does not, leaving no file behind."""

from __future__ import annotations

import pickle

import pytest

from optim import private_cache


class Unpicklable:
    def __reduce__(self):
        raise pickle.PicklingError("not today")


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DIGIPLAT_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(private_cache, "_MEMORY", {})
    return tmp_path / "cache"


def test_a_value_that_does_not_pickle_is_returned_and_leaves_no_file(cache, caplog) -> None:
    built = []

    def build():
        built.append(1)
        return Unpicklable()

    value = private_cache.stored("things", "bad", build, lock=True, memory=False)
    assert isinstance(value, Unpicklable)
    assert not [p for p in (cache / "things").iterdir() if p.suffix != ".lock"]  # no entry, no temporary file
    assert "not written (PicklingError: not today)" in caplog.text
    # nothing was kept: the next ask builds again (and the lock was released)
    private_cache.stored("things", "bad", build, lock=True, memory=False)
    assert len(built) == 2


def test_a_value_is_kept_and_read_back_without_building(cache) -> None:
    assert private_cache.stored("things", "good", lambda: {"p_mw": [1.0, 2.0]}, lock=True, memory=False) == \
        {"p_mw": [1.0, 2.0]}

    def no_build():
        raise AssertionError("built again")

    assert private_cache.stored("things", "good", no_build, lock=True, memory=False) == {"p_mw": [1.0, 2.0]}
