"""A session's bids kept on the server (app/bidstore.py): atomic, bounded, cleaned up, shared by processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import dash
import pytest

from app import bidstore, server

REPO = Path(__file__).resolve().parents[2]
BIDS = [{"bid_id": "U1", "aggregator": "Uploader", "building_id": "B0001", "p_mw": 0.01, "price_eur_per_mwh": 40.0, "fpu": "pv"},
        {"bid_id": "U2", "aggregator": "Other", "building_id": "B0003", "p_mw": 0.03, "price_eur_per_mwh": 55.0, "fpu": ""}]


@pytest.fixture
def store(tmp_path, monkeypatch):
    """A fresh private cache directory for each test."""
    monkeypatch.setenv("DIGIPLAT_CACHE_DIR", str(tmp_path / "cache"))
    return bidstore.folder()


def test_tokens_are_random_and_checked(store):
    tokens = {bidstore.new_token() for _ in range(50)}
    assert len(tokens) == 50 and all(bidstore.valid_token(t) for t in tokens)
    for bad in (None, 12, "", "short", "../../etc/passwd-aaaaaaaaaaaaaaaaaaaa", "a" * 65, "x/" + "a" * 30):
        assert not bidstore.valid_token(bad)
        assert bidstore.save_bids(bad, BIDS) is False and bidstore.load_bids(bad) is None
    assert list(store.iterdir()) == []


def test_bids_round_trip_and_private(store):
    token = bidstore.new_token()
    assert bidstore.load_bids(token) is None
    assert bidstore.save_bids(token, BIDS) is True
    assert bidstore.load_bids(token) == BIDS
    assert (store.stat().st_mode & 0o777) == 0o700
    assert bidstore.save_bids(token, BIDS[:1]) and bidstore.load_bids(token) == BIDS[:1]  # replaced
    assert bidstore.save_bids(token, "not a list") is False and bidstore.load_bids(token) == BIDS[:1]


def test_a_failed_write_leaves_the_old_table_and_no_temporary_file(store, monkeypatch):
    token = bidstore.new_token()
    bidstore.save_bids(token, BIDS)

    def broken_replace(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(bidstore.os, "replace", broken_replace)
    with pytest.raises(OSError):
        bidstore.save_bids(token, BIDS[:1])
    assert bidstore.load_bids(token) == BIDS
    assert sorted(p.name for p in store.iterdir()) == [f"{token}{bidstore.SUFFIX}"]


def test_damaged_or_foreign_files_are_not_read(store):
    token = bidstore.new_token()
    path = bidstore.path_of(token)
    for text in ('[{"bid_id": "U1"', '{"bid_id": "U1"}', "[1, 2]", "\udcff"):
        path.write_text(text, encoding="utf-8", errors="surrogateescape")
        assert bidstore.load_bids(token) is None


def test_a_table_over_the_size_bound_is_not_kept(store, monkeypatch):
    token = bidstore.new_token()
    bidstore.save_bids(token, BIDS)
    size = len(json.dumps(BIDS, separators=(",", ":")))
    monkeypatch.setattr(bidstore, "MAX_FILE_BYTES", size - 1)
    assert bidstore.save_bids(token, BIDS) is False
    assert bidstore.load_bids(token) is None  # the older table is gone too: a reload never shows stale bids
    monkeypatch.setattr(bidstore, "MAX_FILE_BYTES", size)
    assert bidstore.save_bids(token, BIDS) is True


def test_old_files_are_cleaned_up_and_reads_renew_them(store):
    old, used, new = (bidstore.new_token() for _ in range(3))
    for token in (old, used, new):
        bidstore.save_bids(token, BIDS)
    week_ago = time.time() - bidstore.MAX_AGE_S - 60
    for token in (old, used):
        os.utime(bidstore.path_of(token), (week_ago, week_ago))
    assert bidstore.load_bids(used) == BIDS  # a session in use: its read renews the file
    removed = bidstore.cleanup()
    assert removed == [bidstore.path_of(old)]
    assert bidstore.load_bids(old) is None and bidstore.load_bids(used) == BIDS and bidstore.load_bids(new) == BIDS
    # a write cleans up too, and never removes the file it wrote
    later = time.time() + bidstore.MAX_AGE_S + 60
    assert bidstore.save_bids(new, BIDS, now_s=later)
    assert [p.name for p in store.iterdir()] == [bidstore.path_of(new).name]


def test_the_directory_is_bounded_oldest_first(store, monkeypatch):
    tokens = [bidstore.new_token() for _ in range(5)]
    for k, token in enumerate(tokens):
        bidstore.save_bids(token, BIDS)
        stamp = time.time() - 100 + k  # strictly increasing ages, whatever the file system's resolution
        os.utime(bidstore.path_of(token), (stamp, stamp))
    size = bidstore.path_of(tokens[0]).stat().st_size
    monkeypatch.setattr(bidstore, "MAX_TOTAL_BYTES", 3 * size)
    bidstore.cleanup()
    assert [bidstore.load_bids(t) is not None for t in tokens] == [False, False, True, True, True]


def test_another_process_reads_what_this_one_kept(store):
    """gunicorn's workers are processes: a reload may reach another worker than the upload."""
    token = bidstore.new_token()
    bidstore.save_bids(token, BIDS)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    out = subprocess.run([sys.executable, "-c", f"import json; from app import bidstore; print(json.dumps(bidstore.load_bids({token!r})))"],
                         env=env, capture_output=True, text=True, timeout=60, check=True).stdout
    assert json.loads(out) == BIDS


def test_the_page_is_rendered_with_the_kept_bids(store):
    from tests.app.test_callbacks import by_id

    token = bidstore.new_token()
    assert server.keep_bids(BIDS, token) is True
    page = server.render_restored_page("market", token, None, "?method=merit&time=07:00")
    assert by_id(page, "market-bids").rowData == BIDS
    assert by_id(page, "market-method").value == "merit" and by_id(page, "market-time").value == "07:00"
    assert by_id(server.render_restored_page("market", token, BIDS[:1], ""), "market-bids").rowData == BIDS[:1]  # the page's own table wins
    assert len(by_id(server.render_restored_page("market", bidstore.new_token(), None, ""), "market-bids").rowData) > len(BIDS)  # no file: the defaults
    with pytest.raises(dash.exceptions.PreventUpdate):
        server.keep_bids(None, token)
