"""What the app computes on the server: one market round as a small, browser-safe dict.

The pandapower net, the DSO key and the package stay on the server; the browser receives only
the figures it draws (per-element voltages and loadings by pandapower index for the DSO's map,
the package's opaque figures for the TSO view). Every function here is plain and tested directly.
"""

from __future__ import annotations

import functools
import io
import logging
import math
import os
import threading
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from optim.private_cache import cache_dir  # noqa: F401 - the app's callers and tests use session.cache_dir
from optim.private_cache import code_fingerprint as _code_fingerprint  # noqa: F401 - app.day_job uses it

log = logging.getLogger(__name__)

DAY_TYPES = ("weekday", "weekend")
FRAME_MIN = 15  # the app's time frame: one 15-minute market time unit (the balancing market's MTU)
FRAME_STARTS = tuple(f"{h:02d}:{m:02d}" for h in range(24) for m in range(0, 60, FRAME_MIN))  # 00:00 ... 23:45
BID_COLUMNS = ("bid_id", "aggregator", "building_id", "p_mw", "price_eur_per_mwh", "fpu")


GRID_ENV = "DIGIPLAT_GRID_DIR"  # set by ``digiplat serve --grid DIR``; inherited by gunicorn and Celery workers


def grid_dir() -> Path:
    """Return the folder of the grid the app serves: ``$DIGIPLAT_GRID_DIR``, else the shipped Bergwald grid."""
    from gridgen.grid import default_grid_dir

    named = os.environ.get(GRID_ENV, "").strip()
    return Path(named) if named else default_grid_dir()


def grid_title() -> str:
    """Return the served grid's name for titles: Karlsruhe-Bergwald, or the folder's name for another grid."""
    from gridgen.grid import default_grid_dir

    folder = grid_dir()
    if folder.resolve() == default_grid_dir().resolve():
        return "Karlsruhe-Bergwald"
    return folder.resolve().name


@functools.lru_cache(maxsize=1)
def default_grid():
    """Return the served grid (:func:`grid_dir`; loaded once per server process)."""
    from gridgen.grid import Grid

    return Grid.load(grid_dir())


@functools.lru_cache(maxsize=1)
def bus_points() -> dict[int, tuple[float, float]]:
    """Return ``{bus index: (lon, lat)}`` of the shipped grid (for zooming the map to a bus)."""
    import json

    net = default_grid().net
    return {int(i): tuple(json.loads(g)["coordinates"][:2]) for i, g in net.bus["geo"].items() if isinstance(g, str)}


def time_frame_of(value: Any) -> tuple[int, int]:
    """Return ``(hour, minute)`` of a time frame start ``HH:MM`` in 15-minute steps (00:00 ... 23:45).

    Raises ``optim._errors.InputError`` for anything else (the app's time control offers only these).
    """
    from optim._errors import InputError

    text = value.strip() if isinstance(value, str) else ""
    if text not in FRAME_STARTS:
        shown = repr(value)[:20] if value not in (None, "") else "nothing"
        raise InputError(f"time must be HH:MM in {FRAME_MIN}-minute steps (00:00 ... 23:45), got {shown}")
    return int(text[:2]), int(text[3:])


def peak_load_flow() -> dict[str, dict[str, float]]:
    """Return the shipped grid's peak-load AC power flow (the one its build sized the grid with).

    In the form of an outcome's values (:func:`_outcome_view`): ``vm_pu``, ``line_loading_percent``
    and ``trafo_loading_percent`` by pandapower index (as strings), for the Grid page's details.
    """
    net = default_grid().net

    def column(table, name: str) -> dict[str, float]:
        return {str(i): round(float(x), 6) for i, x in table[name].items() if math.isfinite(float(x))} if len(table) else {}

    return {"vm_pu": column(net.res_bus, "vm_pu"), "line_loading_percent": column(net.res_line, "loading_percent"),
            "trafo_loading_percent": column(net.res_trafo, "loading_percent")}


@functools.lru_cache(maxsize=8)
def scenario_for(day_type: str, hour: int, minute: int = 0):
    """Return the default scenario of the 15-minute time frame starting at ``hour:minute`` (cached; read-only)."""
    from optim.dso.scenario import ScenarioConfig, scenario_from_grid

    config = ScenarioConfig().with_time_frame(day_type=day_type, hour=int(hour), minute=int(minute), duration_min=FRAME_MIN)
    return scenario_from_grid(default_grid(), config)


def default_bid_records(day_type: str = "weekday", hour: int = 18, minute: int = 0) -> list[dict[str, Any]]:
    """Return the scenario's bids as bid table records (AG Grid rowData)."""
    frame = scenario_for(day_type, hour, minute).bids
    return _records(frame)


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    frame = frame.reindex(columns=list(BID_COLUMNS))
    frame["fpu"] = frame["fpu"].fillna("")
    return frame.to_dict("records")


UPLOAD_LIMIT_BYTES = 5 * 1024 * 1024  # 5 MB, as dcc.Upload's max_size (app.pages.market)
_BASE64_LIMIT_CHARS = (UPLOAD_LIMIT_BYTES + 2) // 3 * 4


def upload_name(filename: Any) -> str:
    """Return the user's file name as shown in messages: its last path part, printable, at most 80 chars."""
    if not isinstance(filename, str) or not filename.strip():
        return "the uploaded file"
    name = filename.replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch if ch.isprintable() else "?" for ch in name).strip()
    return (name[:77] + "...") if len(name) > 80 else (name or "the uploaded file")


def bids_from_upload(contents: Any, filename: Any) -> list[dict[str, Any]]:
    """Return bid table records from an uploaded CSV/JSON (``dcc.Upload`` base64 contents).

    Whatever arrives (a crafted POST may send a list, a number, bad base64, a file of any size
    or a JSON nested 100,000 deep) ends in an ``optim._errors.InputError`` naming the user's
    file, never in another exception; messages never show a server path. Nothing is returned
    half-read.
    """
    import base64
    import binascii
    import tempfile
    from pathlib import Path

    from optim._errors import InputError
    from optim.tso.bids import read_bids

    name = upload_name(filename)
    if not isinstance(contents, str):
        raise InputError(f"{name}: the upload is not a file (upload one .csv or .json bid file)")
    if not contents or "," not in contents:
        raise InputError(f"{name}: the upload is empty")
    base = filename.replace("\\", "/").rsplit("/", 1)[-1] if isinstance(filename, str) else ""
    suffix = Path(base).suffix.lower() if base.strip() else ".csv"  # no name: CSV, as dcc.Upload's default
    if suffix not in (".csv", ".json"):
        kind = f"a {suffix} file" if suffix else "a file without a type"
        raise InputError(f"{name}: {kind} is not a bid file; upload a .csv or .json bid file (docs/bids.md)")
    header, data = contents.split(",", 1)
    if not header.endswith(";base64"):
        raise InputError(f"{name}: the upload is not base64-encoded file data")
    if len(data) > _BASE64_LIMIT_CHARS:
        raise InputError(f"{name}: the file is {len(data) * 3 / 4 / 2**20:.1f} MB; the limit is "
                         f"{UPLOAD_LIMIT_BYTES / 2**20:.0f} MB (split it into smaller files)")
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise InputError(f"{name}: the upload is not valid base64 data") from None
    with tempfile.TemporaryDirectory(prefix="digiplat-upload-") as tmp:
        # The temp file carries the user's name so that read_bids' messages name it; the
        # directory part is cut from every message below.
        path = Path(tmp) / f"upload{suffix}"
        if name == base and name not in (".", "..") and Path(name).suffix.lower() == suffix:
            path = Path(tmp) / name
        path.write_bytes(raw)
        try:
            table = read_bids(path, package=_grid_buildings())  # unknown buildings are flagged here, not at clearing
        except InputError as exc:
            raise InputError(_table_message(_without_dir(str(exc), tmp, path.name, name))) from None
        except RecursionError:
            raise InputError(f"{name}: the JSON is nested too deeply to be a bid file") from None
        except (ValueError, TypeError, KeyError, IndexError, UnicodeError, MemoryError) as exc:
            log.warning("upload %s: %s: %s", name, type(exc).__name__, exc)
            raise InputError(f"{name}: cannot read the bid file ({type(exc).__name__})") from None
    return _records(table.to_frame())


def _without_dir(message: str, tmp: str, stored: str, name: str) -> str:
    """Return ``message`` with the temporary directory cut out and the stored name replaced by ``name``."""
    for prefix in (tmp + "/", tmp):
        message = message.replace(prefix, "")
    return message.replace(stored, name) if stored != name else message


def bids_csv(records: list[dict[str, Any]]) -> str:
    """Return the bid table as CSV text (the documented bid format, docs/bids.md)."""
    frame = pd.DataFrame(records).reindex(columns=list(BID_COLUMNS))
    buf = io.StringIO()
    frame.to_csv(buf, index=False)
    return buf.getvalue()


def market_round(
    day_type: str, hour: int, request_mw: float, bid_records: list[dict[str, Any]], *, refine: bool = False,
    minute: int = 0,
) -> dict[str, Any]:
    """Clear one request with the grid-aware MILP and the grid-blind merit order; validate both.

    The time frame is the 15-minute market time unit starting at ``hour:minute`` of ``day_type``.

    With ``refine`` the MILP adds its validated dispatch as a linearization point and clears again
    until it is clean (beyond paper A; see :func:`optim.market.clear_market`).

    Returns a JSON-serializable dict (see :func:`_outcome_view`) with ``milp``, ``merit``, the TSO
    view ``tso``, the time frame and ``export_key`` (what :func:`exported_round` finds the round
    by). Raises ``optim._errors.InputError`` for bad bids or request.
    """
    rnd, lin, key = _cleared_round(day_type, hour, request_mw, bid_records, refine=refine, minute=minute)
    milp, merit = rnd.outcomes["milp"], rnd.outcomes["merit_order"]
    return {
        "time_frame": {"day_type": day_type, "hour": int(hour), "minute": int(minute),
                       "start": f"{int(hour):02d}:{int(minute):02d}", "duration_min": FRAME_MIN,
                       "timestamp": rnd.scenario.timestamp},
        "request_mw": float(request_mw),
        "refine": bool(refine),
        "export_key": key,
        "milp": _outcome_view(milp, rnd.grid, rnd.bids),
        "merit": _outcome_view(merit, rnd.grid, rnd.bids),
        "tso": _tso_view(milp.package, milp.clearing),
        "linearize_s": round(lin.runtime_s, 3),
    }


_ROUNDS: dict[str, Any] = {}  # this process's last rounds (with their linearizations), for the exports
_ROUNDS_SIZE = 2
_ROUNDS_GUARD = threading.Lock()


def _round_key(day_type: str, hour: int, request_mw: float, bids_key: str, refine: bool, minute: int = 0) -> str:
    import hashlib

    text = (f"{day_type}|{int(hour)}|{int(minute)}|{FRAME_MIN}|{float(request_mw)!r}|{bids_key}|{bool(refine)}"
            f"|{grid_dir().resolve()}")
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def _cleared_round(day_type: str, hour: int, request_mw: float, bid_records: list[dict[str, Any]], *,
                   refine: bool = False, minute: int = 0):
    """Return ``(MarketRound, linearization, export key)`` of a request, both methods cleared and validated.

    The time frame is the 15-minute unit starting at ``hour:minute``. The round (with its
    linearization) is kept for :func:`exported_round` (the last ``_ROUNDS_SIZE`` of this process).
    """
    from app.export import MarketRound
    from optim._errors import InputError
    from optim.market import clear_market

    if day_type not in DAY_TYPES:
        raise InputError(f"day type must be one of {', '.join(DAY_TYPES)}")
    if hour is None or not (0 <= int(hour) <= 23):
        raise InputError("hour must be between 0 and 23")
    if minute is None or int(minute) not in range(0, 60, FRAME_MIN):
        raise InputError("minute must be 0, 15, 30 or 45")
    if request_mw is None or not math.isfinite(float(request_mw)) or float(request_mw) == 0:
        raise InputError("the request P_E must be a non-zero number of MW")
    grid = default_grid()
    bids, scenario_with_bids, lin = _linearized(day_type, int(hour), bid_records, int(minute))
    # the validations on the compiled grid (pandapower's model, equal within the power-flow
    # tolerance, ~5 instead of ~50 ms each); the solved nets are made when the round is exported
    milp = clear_market(grid, scenario_with_bids, bids, float(request_mw), method="milp", linearization=lin, refine=refine,
                        engine="compiled")
    merit = clear_market(grid, scenario_with_bids, bids, float(request_mw), method="merit-order", linearization=lin,
                         engine="compiled")
    rnd = MarketRound(grid=grid, scenario=scenario_with_bids, bids=bids, request_mw=float(request_mw),
                      outcomes={"milp": milp, "merit_order": merit})
    key = _round_key(day_type, int(hour), float(request_mw), _bids_key(scenario_with_bids.bids), refine, int(minute))
    with _ROUNDS_GUARD:
        _ROUNDS.pop(key, None)
        _ROUNDS[key] = (rnd, lin)
        while len(_ROUNDS) > _ROUNDS_SIZE:
            _ROUNDS.pop(next(iter(_ROUNDS)))
    return rnd, lin, key


def exported_round(result: dict[str, Any] | None, bid_records: list[dict[str, Any]] | None):
    """Return the :class:`app.export.MarketRound` of a shown result (for the download).

    The round is this process's copy if it still has it; otherwise (another worker cleared it,
    or it was pushed out) it is cleared again from the result's time frame and request and the
    bid table, which gives the same numbers, provided the table is still the one that was
    cleared.

    Raises
    ------
    optim._errors.InputError
        No result, or the bids changed since the clearing and the round is not kept.
    """
    from optim._errors import InputError
    from optim.tso.bids import bids_from_frame

    if not isinstance(result, dict) or not result.get("export_key"):
        raise InputError("clear the market first: the download holds the files of a cleared round")
    key = str(result["export_key"])
    with _ROUNDS_GUARD:
        kept = _ROUNDS.get(key)
    if kept is not None:
        return _with_solved_nets(*kept)
    tf = result.get("time_frame") or {}
    day_type, hour, request_mw = tf.get("day_type"), tf.get("hour"), result.get("request_mw")
    minute = int(tf.get("minute") or 0)
    refine = bool(result.get("refine"))
    frame = pd.DataFrame(bid_records or []).reindex(columns=list(BID_COLUMNS))
    frame["fpu"] = frame["fpu"].replace("", None)
    try:
        current = _bids_key(bids_from_frame(frame).to_frame())
    except InputError:
        current = None
    if current is None or hour is None or request_mw is None or \
            _round_key(day_type, int(hour), float(request_mw), current, refine, minute) != key:
        raise InputError("the bid table changed after this clearing: clear the market again, then download")
    rnd, lin, _ = _cleared_round(day_type, int(hour), float(request_mw), bid_records or [], refine=refine, minute=minute)
    return _with_solved_nets(rnd, lin)


def _with_solved_nets(rnd: Any, lin: Any) -> Any:
    """The round with the solved pandapower net of each validated outcome (the exports write and
    name from them; the round's validations ran on the compiled grid, which keeps no net). Two
    pandapower runs per download (~0.1 s), not kept: a kept net would double a round's memory."""
    import dataclasses

    from optim.market import with_solved_net

    outcomes = {name: with_solved_net(outcome, rnd.grid, rnd.scenario, lin, rnd.bids)
                for name, outcome in rnd.outcomes.items()}
    return dataclasses.replace(rnd, outcomes=outcomes)


_LIN_CACHE: dict[tuple, Any] = {}  # this process's linearizations (at most _LIN_CACHE_SIZE)
_LIN_CACHE_SIZE = 8
_LIN_LOCKS: dict[tuple, threading.Lock] = {}
_LIN_LOCKS_GUARD = threading.Lock()


def _bids_key(frame: pd.DataFrame) -> str:
    import hashlib

    return hashlib.sha256(frame.to_csv(index=False).encode()).hexdigest()


def _disk_name(day_type: str, hour: int, bids_key: str, minute: int = 0) -> str:
    """Name of a frame's point selection in the store: it depends on the time frame, the bids, the
    grid's files (the net and the buildings) and the configuration (the store adds the code's
    fingerprint)."""
    import hashlib

    files = []
    for name in ("grid.json", "buildings.csv"):
        path = grid_dir() / name
        st = path.stat() if path.is_file() else None
        files.append(f"{path.resolve()}|{st.st_size if st else '-'}|{st.st_mtime_ns if st else '-'}")
    config = sorted(_linearization_config().to_dict().items())
    text = f"{day_type}|{hour}|{minute}|{FRAME_MIN}|{bids_key}|{'|'.join(files)}|{config}"
    return "lin-" + hashlib.sha256(text.encode()).hexdigest()[:32]


def _linearization_config():
    """The DSO's points as ``digiplat linearize`` places them by default (9 merit levels, bisected up
    to 33 points), so the app's Validation page shows the README's Table I method."""
    from optim.dso.linearize import LinearizationConfig
    from optim.dso import DEFAULT_MAX_POINTS, DEFAULT_POINT_GAP

    return LinearizationConfig(n_points=9, point_method="merit-levels", max_points=DEFAULT_MAX_POINTS,
                               point_gap=DEFAULT_POINT_GAP)


def _linearization(day_type: str, hour: int, bids_key: str, scenario, minute: int = 0):
    """Return the DSO's linearization for a time frame and bid set (bids define the points).

    Cached in this process; for every worker of the server its points are kept in the private
    cache directory: the first worker that needs them chooses them under a file lock (about 1 s
    at 33 points), the others wait, read them and linearize only those points (0.3-0.4 s).
    """
    key = (str(grid_dir()), day_type, hour, minute, bids_key)  # a test process may serve two grids
    with _LIN_LOCKS_GUARD:
        lock = _LIN_LOCKS.setdefault(key, threading.Lock())
    with lock:
        if key not in _LIN_CACHE:
            lin = _shared_linearization(day_type, hour, bids_key, scenario, minute)
            with _LIN_LOCKS_GUARD:
                if len(_LIN_CACHE) >= _LIN_CACHE_SIZE:
                    _LIN_CACHE.pop(next(iter(_LIN_CACHE)))
                _LIN_CACHE[key] = lin
        return _LIN_CACHE[key]


@functools.lru_cache(maxsize=1)
def _discard_old_store() -> None:
    """Once per process: remove the whole linearizations earlier versions kept (never read again,
    60-85 MB each)."""
    from optim.private_cache import discard_folder

    discard_folder("linearizations")


def _shared_linearization(day_type: str, hour: int, bids_key: str, scenario, minute: int = 0):
    """The frame's linearization; its points come from the private cache, chosen by the first
    worker that asks (file lock).

    Only the point selection is stored (44 kB at 33 points; the package is a 60-85 MB pickle,
    and a room's frames written at that size stalled the clicks on this VM's disk: 1.1 s frames
    became 2-3 s). A worker that finds it linearizes those points (no selection run): every
    point's power flow starts at the frame's solved state, so all workers hold the same package
    to the last bit.
    """
    from optim._errors import InputError
    from optim.dso.linearize import linearize
    from optim.private_cache import stored

    _discard_old_store()
    config = _linearization_config()
    mine = []

    def chosen():
        lin = linearize(default_grid(), scenario, config=config, bound_key=False)  # never written with its key
        mine.append(lin)
        return lin.point_selection

    # not kept in the store's memory too: _LIN_CACHE holds the linearization, and the store's
    # bounded memory keeps the compiled grid and the profiles
    selection = stored("point-selections", _disk_name(day_type, hour, bids_key, minute), chosen, lock=True,
                       memory=False)
    if mine:
        return mine[0]
    try:
        return linearize(default_grid(), scenario, config=config, bound_key=False, points=selection)
    except InputError:  # an entry that does not fit this frame (a grid changed in place): choose again
        return linearize(default_grid(), scenario, config=config, bound_key=False)


def _linearized(day_type: str, hour: int, bid_records: list[dict[str, Any]] | None, minute: int = 0):
    """Return ``(bids, scenario with these bids, linearization)`` for bid table records.

    Raises ``optim._errors.InputError`` listing every bad bid row by its row number in the
    app's bid table (1 = the first row, as the user counts) and its bid id.
    """
    from optim._errors import InputError
    from optim.tso.bids import bids_from_frame

    frame = pd.DataFrame(bid_records or []).reindex(columns=list(BID_COLUMNS))
    frame["fpu"] = frame["fpu"].replace("", None)
    frame.index = range(1, len(frame) + 1)  # messages name "row 3": counted from 1, as the user counts the table
    try:
        bids = bids_from_frame(frame, package=_grid_buildings())
    except InputError as exc:
        raise InputError(_table_message(str(exc)).replace("and load the file again", "in the table, then clear again")) from None
    scenario = replace(scenario_for(day_type, hour, minute), bids=bids.to_frame())
    return bids, scenario, _linearization(day_type, hour, _bids_key(scenario.bids), scenario, minute)


_UNKNOWN_TO_PACKAGE = "is unknown to the sensitivity package (no flexible bus)"  # optim.tso.bids' reason


def _table_message(message: str) -> str:
    """Return a bid check's message in the app's words: "the bid table" for ``<frame>``, buildings of the grid."""
    return message.replace("<frame>", "the bid table").replace(_UNKNOWN_TO_PACKAGE, _UNKNOWN_BUILDING)


_UNKNOWN_BUILDING = "is not a building of this grid (ids look like B0001; see the Grid page)"


def _grid_buildings():
    """The grid's buildings as the ``package`` of :func:`optim.tso.bids.read_bids`' location check.

    Every building of the shipped grid has a bus, so a bid on one of them has a flexible bus;
    an id not among them (``B9999``, or ``b0001`` in lower case) is flagged where the bids enter.
    """
    from types import SimpleNamespace

    ids = [f["properties"]["building_id"] for f in default_grid().geojson["features"]
           if f["properties"].get("kind") == "building"]
    return SimpleNamespace(flex_of_asset=dict.fromkeys(ids))


def warm_up() -> None:
    """Load the grid, the default scenario and its linearization (the first click is then fast)."""
    try:
        _linearized("weekday", 18, default_bid_records())
    except Exception:  # warm-up is an optimisation; the real call reports errors to the user
        log.exception("warm-up failed")


def _outcome_view(outcome, grid, bids) -> dict[str, Any]:
    """Browser-safe summary of one outcome: per-bid, per-building, per-element results."""
    from optim.market import building_activations

    v, key = outcome.validation, outcome.key
    per_building = building_activations(outcome, bids)
    view: dict[str, Any] = {
        "summary": outcome.summary(),
        "buildings": {b: {k: round(x, 6) for k, x in e.items()} for b, e in per_building.items()},
        "vm_pu": {},
        "line_loading_percent": {},
        "trafo_loading_percent": {},
        "violations": [],
    }
    if v is not None and key is not None:
        view["vm_pu"] = {str(b): round(float(x), 6) for b, x in zip(key.buses, v.vm_pf_pu)}
        for element, index, value in zip(key.branch_elements, key.branch_indices, v.loading_pf_percent):
            view[f"{element}_loading_percent"][str(index)] = round(float(value), 4)
        view["violations"] = [x.to_dict() for x in v.violations]
        view["plots"] = {
            "bus_ids": list(v.bus_ids),
            "vm_pf_pu": np.round(v.vm_pf_pu, 8).tolist(),
            "vm_pred_pu": None if v.vm_pred_pu is None else np.round(v.vm_pred_pu, 8).tolist(),
            "critical_buses": np.asarray(v.critical_buses, bool).tolist(),
            "branch_ids": list(v.branch_ids),
            "loading_pf_percent": np.round(v.loading_pf_percent, 6).tolist(),
            "loading_pred_percent": None if v.loading_pred_percent is None else np.round(v.loading_pred_percent, 6).tolist(),
            "critical_branches": np.asarray(v.critical_branches, bool).tolist(),
        }
    return view


def _tso_view(package, clearing) -> dict[str, Any]:
    """What the TSO knows: the package's opaque figures and its own clearing, no grid."""
    if package is None:
        return {}
    points = []
    for k, p in enumerate(package.points):
        points.append({
            "point": k,
            "label": p.label,
            "p_flex_mw": round(float(p.p_flex_mw.sum()), 4),
            "vm_min_pu": round(float(p.vm_pu.min()), 5),
            "vm_max_pu": round(float(p.vm_pu.max()), 5),
            "max_abs_loading_percent": round(float(np.abs(p.loading_percent).max()), 2),
        })
    view: dict[str, Any] = {
        "flex_buses": len(package.flex_ids),
        "monitored_buses": len(package.bus_ids),
        "monitored_branches": len(package.branch_ids),
        "points": points,
        "limits": {"vm_min_pu": package.vm_min_pu, "vm_max_pu": package.vm_max_pu,
                   "loading_min_percent": package.loading_min_percent, "loading_max_percent": package.loading_max_percent},
    }
    if clearing.vm_pu is not None and clearing.loading_percent is not None:
        order = np.argsort(-np.abs(clearing.loading_percent))[:15]
        view["predicted_loading_top"] = [
            {"id": clearing.branch_ids[i], "loading_percent": round(float(clearing.loading_percent[i]), 3)} for i in order
        ]
        order_v = np.argsort(-np.abs(clearing.vm_pu - 1.0))[:15]
        view["predicted_vm_top"] = [{"id": clearing.bus_ids[i], "vm_pu": round(float(clearing.vm_pu[i]), 5)} for i in order_v]
    return view
