"""Market day page: a whole day of 15-minute units, MILP against merit order, and the grid of any unit.

The user picks the day type and the request profile (the shipped weekday profile or an uploaded
``start,request_mw`` CSV, read by :func:`optim.day.request_profile_from_csv`, so a file may name only
some units of the day) and runs the day. The run is a background job (:mod:`app.day_job`: its own
process, progress in a status file, results in the private cache, so any server worker and any
later visit finds them). The charts show per unit the request against what each method delivered,
the cost and the AC violations; the time slider, or a click on a chart, selects a unit and the two
maps show that unit's grid state (bus voltages, line and substation loadings, bid activations) for
the MILP and for the merit order, drawn from the states stored with the results (no power flow
when the slider moves).

The callbacks are plain functions, tested directly in ``tests/app/test_day_page.py``.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

import pandas as pd
import plotly.graph_objects as go

log = logging.getLogger(__name__)

PREFIX = "day-"
METHODS = (("milp", "Grid-aware MILP (paper A)"), ("merit", "Grid-blind merit order"))
#: Where a method's units are in the day's results.
RESULT_KEYS = {"milp": "units", "merit": "merit_order"}
POLL_MS = 1000  # how often the page asks for a running day's progress (reads a small status file)
CHART_HEIGHT_PX = 230
LEGEND_SHARE = 0.45  # of the district's width, added west of it on the maps: room for the open legend
DEFAULT_SOURCE = "default"


def _colors() -> dict[str, str]:
    """Series colours taken from the map's symbol table (no second palette): blue feeder, vermillion, grey."""
    from app.mapview import STYLES

    return {"milp": STYLES["lv_line"]["style"]["color"], "merit": STYLES["substation"]["style"]["fillColor"],
            "request": STYLES["bid_none"]["style"]["color"]}


# ------------------------------------------------------------------------------------- profiles
@functools.lru_cache(maxsize=2)
def _default_profile_csv(mtu_min: int = 15) -> str:
    from app.day_job import profile_csv
    from optim.day import default_request_profile

    return profile_csv(default_request_profile(mtu_min))


def _profile_from_text(text: str, name: str) -> pd.DataFrame:
    """Read profile CSV text with optim.day's reader; messages name ``name``, never a server path."""
    import tempfile
    from pathlib import Path

    from app.session import _without_dir
    from optim._errors import InputError
    from optim.day import request_profile_from_csv

    with tempfile.TemporaryDirectory(prefix="digiplat-profile-") as tmp:
        path = Path(tmp) / "profile.csv"
        path.write_text(text)
        try:
            return request_profile_from_csv(path, 15)
        except InputError as exc:
            raise InputError(_without_dir(str(exc), tmp, path.name, name)) from None


def profile_from_upload(contents: Any, filename: Any) -> tuple[pd.DataFrame, str]:
    """Return ``(profile, shown name)`` of an uploaded request profile (``dcc.Upload`` base64 contents).

    Raises
    ------
    optim._errors.InputError
        Not a file, not base64, over the size limit, or anything :func:`optim.day.request_profile_from_csv`
        refuses (with its message: the line and what is wrong).
    """
    import base64
    import binascii

    from app.session import upload_name
    from optim._errors import InputError
    from optim.day import MAX_PROFILE_BYTES

    name = upload_name(filename)
    if not isinstance(contents, str) or "," not in contents:
        raise InputError(f"{name}: the upload is not a file (upload a .csv with columns start,request_mw)")
    header, data = contents.split(",", 1)
    if not header.endswith(";base64"):
        raise InputError(f"{name}: the upload is not base64-encoded file data")
    if len(data) > (MAX_PROFILE_BYTES + 2) // 3 * 4:
        raise InputError(f"request profile {name} is larger than {MAX_PROFILE_BYTES // 1000} kB; a day has at most 96 rows")
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise InputError(f"{name}: the upload is not valid base64 data") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InputError(f"cannot read request profile {name}: it is not a UTF-8 text file") from None
    return _profile_from_text(text, name), name


def profile_of(source: str | None, stored: dict | None) -> tuple[pd.DataFrame, str]:
    """The profile the controls select: ``(profile, description)``; the shipped one unless an upload is chosen."""
    if source == "upload" and isinstance(stored, dict) and isinstance(stored.get("csv"), str):
        name = str(stored.get("name") or "the uploaded file")
        return _profile_from_text(stored["csv"], name), name
    return _profile_from_text(_default_profile_csv(), "the shipped profile"), "the shipped weekday profile"


def profile_label(profile: pd.DataFrame, name: str) -> str:
    """``name (k units, HH:MM-HH:MM)``."""
    return f"{name} ({len(profile)} units, {profile.start.iloc[0]}–{profile.start.iloc[-1]})"


# ---------------------------------------------------------------------------------------- figures
def _unit_cost_eur(unit: dict[str, Any], mtu_min: int) -> float | None:
    """The unit's cost in €: ``cost_eur`` is price x MW (one hour of activation); a unit lasts ``mtu_min``."""
    if unit.get("status") != "optimal" or unit.get("cost_eur") is None:
        return None
    return float(unit["cost_eur"]) * mtu_min / 60.0


def _violations(unit: dict[str, Any]) -> int | None:
    v = unit.get("validation")
    return None if not v else int(v.get("violations") or 0)


def _base_layout(fig: go.Figure, title: str, yaxis_title: str, starts: list[str]) -> go.Figure:
    step = max(1, len(starts) // 8)  # 96 units: a tick every 3 hours, upright on a third of a laptop's width
    fig.update_layout(
        title=dict(text=title, font=dict(size=13), x=0.01, xanchor="left", y=0.98, yanchor="top"),
        template="plotly_white", margin=dict(l=48, r=8, t=28, b=30), yaxis_title=yaxis_title, clickmode="event",
        showlegend=False,  # one legend for the three charts, above them (series_legend)
        xaxis=dict(type="category", categoryorder="array", categoryarray=starts, tickmode="array",
                   tickvals=starts[::step], title=None),
    )
    return fig


def day_figures(results: dict[str, Any]) -> tuple[go.Figure, go.Figure, go.Figure]:
    """The three charts of a day: request vs delivered, cost, violations, per unit (x = unit start)."""
    colors = _colors()
    mtu = int(results["config"]["mtu_min"])
    milp, merit = results["units"], results["merit_order"]
    starts = [u["start"] for u in milp]
    index = list(range(len(starts)))
    names = dict(METHODS)
    size = 7 if len(starts) <= 24 else 4  # a whole day of 96 units: small markers, the lines carry it

    def status_text(units):
        return [f"{u['start']}: {u['status']}" + (f" (at most {u['max_deliverable_mw']:.3f} MW)"
                                                 if u.get("max_deliverable_mw") is not None and u["status"] != "optimal" else "")
                for u in units]

    delivered = go.Figure()
    delivered.add_trace(go.Scatter(x=starts, y=[u["request_mw"] for u in milp], name="request P_E", mode="lines+markers",
                                   line=dict(color=colors["request"], width=5), marker=dict(size=size + 2), opacity=0.45,
                                   customdata=index, hovertemplate="%{x}: request %{y:.3f} MW<extra></extra>"))
    # the MILP solid, the merit order dashed on top: where both deliver the request both stay visible
    for key, units, symbol, dash in (("milp", milp, "circle", "solid"), ("merit", merit, "x", "dash")):
        delivered.add_trace(go.Scatter(
            x=starts, y=[u["delivered_mw"] if u["status"] == "optimal" else None for u in units],
            name=names[key].split(" (")[0], mode="lines+markers", line=dict(color=colors[key], width=2, dash=dash),
            marker=dict(symbol=symbol, size=size), customdata=index, hovertext=status_text(units),
            hovertemplate="%{hovertext}<br>delivered %{y:.3f} MW<extra></extra>"))
    _base_layout(delivered, "Request and delivered power", "MW", starts)

    cost = go.Figure()
    for key, units in (("milp", milp), ("merit", merit)):
        cost.add_trace(go.Bar(x=starts, y=[_unit_cost_eur(u, mtu) for u in units], name=names[key].split(" (")[0],
                              marker_color=colors[key], customdata=index,
                              hovertemplate="%{x}: %{y:.2f} €<extra></extra>"))
    _base_layout(cost, f"Cost per unit ({mtu} min)", "€", starts).update_layout(barmode="group")

    # lines, not bars: the MILP's zeros stay visible as a line along the axis
    viol = go.Figure()
    for key, units, symbol, dash in (("milp", milp, "circle", "solid"), ("merit", merit, "x", "dash")):
        viol.add_trace(go.Scatter(x=starts, y=[_violations(u) for u in units], name=names[key].split(" (")[0],
                                  mode="lines+markers", line=dict(color=colors[key], width=2, dash=dash),
                                  marker=dict(symbol=symbol, size=size), customdata=index, hovertext=status_text(units),
                                  hovertemplate="%{hovertext}<br>%{y} violations in the AC power flow<extra></extra>"))
    _base_layout(viol, "Violations in the AC power flow", "limits violated", starts).update_layout(
        yaxis=dict(rangemode="tozero"))
    return delivered, cost, viol


def series_legend():
    """The one legend of the three charts: a swatch per series, in the charts' colours."""
    from dash import html

    colors = _colors()
    items = [("request P_E", colors["request"], "solid", 0.45)] + [(label, colors[key], "solid" if key == "milp" else "dashed", 1.0)
                                                                    for key, label in METHODS]
    return html.Div([html.Span([html.Span(style={"display": "inline-block", "width": "22px", "marginRight": "5px",
                                                 "verticalAlign": "middle", "opacity": opacity,
                                                 "borderTop": f"{5 if name.startswith('request') else 3}px {style} {color}"}),
                                name], className="me-3")
                     for name, color, style, opacity in items], className="small", id=f"{PREFIX}series-legend")


def unit_marker(start: str) -> list[dict[str, Any]]:
    """The shapes of a chart that mark the selected unit: a band over its category."""
    return [{"type": "line", "xref": "x", "yref": "paper", "x0": start, "x1": start, "y0": 0, "y1": 1,
             "line": {"color": "#222222", "width": 1.5, "dash": "dash"}, "layer": "below"}]


def totals_view(results: dict[str, Any]):
    """One line per method: delivered of requested energy, cost, units with violations, infeasible units."""
    from dash import html

    names = dict(METHODS)
    rows = []
    for key, method in (("milp", "milp"), ("merit", "merit_order")):
        t = results["totals"][method]
        text = (f"{t['delivered_mwh']:.2f} of {t['requested_mwh']:.2f} MWh delivered, cost {t['cost_eur']:.0f} €, "
                f"{t['units_with_violations']} of {t['units_traded']} units with violations"
                + (f", {t['units_infeasible']} infeasible" if t["units_infeasible"] else ""))
        rows.append(html.Div([html.Span(names[key] + ": ", className="fw-semibold"), html.Span(text, id=f"{PREFIX}total-{key}")]))
    rows.append(html.Div(f"{len(results['units'])} units, {results['config']['day_type']}, computed in "
                         f"{results['runtime_s']:.0f} s", className="text-muted"))
    return rows


def slider_marks(starts: list[str]) -> dict[int, str]:
    """Slider labels: every unit for a short profile, every 2 hours of units for a day."""
    step = 1 if len(starts) <= 12 else max(1, len(starts) // 12)
    return {k: starts[k] for k in range(0, len(starts), step)}


def default_unit(results: dict[str, Any]) -> int:
    """The unit shown first: where the merit order violates most limits (else the first)."""
    counts = [_violations(u) or 0 for u in results["merit_order"]]
    return max(range(len(counts)), key=lambda k: (counts[k], -k)) if counts else 0


def unit_outcome(unit: dict[str, Any]) -> dict[str, Any] | None:
    """A unit's stored grid state in the form of :func:`app.mapview.styled_layers` (None: nothing dispatched)."""
    state = unit.get("grid_state")
    if not state:
        return None
    return {
        "vm_pu": {str(b): v for b, v in zip(state["bus"], state["vm_pu"])},
        "line_loading_percent": {str(i): x for i, x in zip(state["line"], state["line_loading_percent"])},
        "trafo_loading_percent": {str(i): x for i, x in zip(state["trafo"], state["trafo_loading_percent"])},
        "buildings": {b: {"offered_mw": o, "activated_mw": a} for b, (o, a) in state["buildings"].items()},
    }


@functools.lru_cache(maxsize=64)
def _unit_layers(key: str, index: int, method: str) -> tuple[dict[str, Any], ...]:
    """The map layers of one unit and method (cached: moving back to a unit is immediate)."""
    from app import session
    from app.day_job import day_results
    from app.mapview import result_layer_data

    results = day_results(key)
    unit = results[RESULT_KEYS[method]][index]
    return tuple(result_layer_data(session.default_grid().geojson, unit_outcome(unit)))


def unit_caption(results: dict[str, Any], index: int) -> str:
    """What the maps show: the unit, its request, and per method what was delivered and violated."""
    milp, merit = results["units"][index], results["merit_order"][index]
    parts = []
    for name, unit in (("MILP", milp), ("merit order", merit)):
        if unit["status"] == "no request":
            parts.append(f"{name}: no request")
        elif unit["status"] != "optimal":
            parts.append(f"{name}: {unit['status']}")
        else:
            parts.append(f"{name} {unit['delivered_mw']:.3f} MW, {_violations(unit)} violations")
    return f"Unit {milp['start']}, request {milp['request_mw']:.3f} MW: " + "; ".join(parts)


# -------------------------------------------------------------------------------------- callbacks
def _user_error_types() -> tuple[type[BaseException], ...]:
    from gridgen._errors import GridGenError
    from optim._errors import OptimError

    return (GridGenError, OptimError)


def upload_profile(contents: Any, filename: Any):
    """Callback: ``(profile store, source options, source value, alert, alert open)`` for an uploaded profile."""
    import dash

    if not contents:
        raise dash.exceptions.PreventUpdate
    try:
        profile, name = profile_from_upload(contents, filename)
    except _user_error_types() as exc:
        return dash.no_update, dash.no_update, dash.no_update, str(exc).strip(), True
    except Exception as exc:  # never an HTTP 500 for a bad file
        log.exception("profile upload failed")
        return dash.no_update, dash.no_update, dash.no_update, f"cannot read the request profile ({type(exc).__name__})", True
    from app.day_job import profile_csv

    stored = {"name": name, "csv": profile_csv(profile), "source": "upload"}
    return stored, source_options(stored), "upload", "", False


def choose_profile(trigger: str | None, contents: Any, source: str | None, filename: Any, stored: dict | None):
    """Callback: the profile choice, kept in the session's store; ``(store, options, source, alert, alert open)``.

    ``trigger`` is the id of the input that changed: an upload (read it), the choice (remember it),
    or None when the tab is drawn again (the session's upload and choice come back).
    """
    import dash

    no = dash.no_update
    has_upload = isinstance(stored, dict) and isinstance(stored.get("csv"), str)
    if trigger == f"{PREFIX}upload":
        return upload_profile(contents, filename)
    if trigger == f"{PREFIX}profile-source":
        if has_upload and source in (DEFAULT_SOURCE, "upload") and stored.get("source") != source:
            return {**stored, "source": source}, no, no, no, no
        raise dash.exceptions.PreventUpdate
    value = stored.get("source", "upload") if has_upload else DEFAULT_SOURCE
    return no, source_options(stored), value if value in (DEFAULT_SOURCE, "upload") else DEFAULT_SOURCE, no, no


def source_options(stored: dict | None) -> list[dict[str, Any]]:
    """The profile choices: the shipped profile, and the uploaded one once there is one."""
    default = profile_of(DEFAULT_SOURCE, None)
    options = [{"label": " " + profile_label(*default), "value": DEFAULT_SOURCE}]
    if isinstance(stored, dict) and stored.get("csv"):
        try:
            options.append({"label": " uploaded: " + profile_label(*profile_of("upload", stored)), "value": "upload"})
        except _user_error_types():
            pass
    else:
        options.append({"label": " an uploaded profile (upload a CSV first)", "value": "upload", "disabled": True})
    return options


def _job_of(day_type: str, source: str | None, stored: dict | None) -> tuple[Any, pd.DataFrame]:
    from app.day_job import day_config
    from optim._errors import InputError

    if day_type not in ("weekday", "weekend"):
        raise InputError(f"day type must be weekday or weekend, got {day_type!r}")
    profile, _ = profile_of(source, stored)
    return day_config(day_type), profile


def select_day(day_type: str, source: str | None, stored: dict | None):
    """Callback: the job store of the controls' day (its key; nothing is run), so a finished day shows at once."""
    import dash

    from app.day_job import job_key

    try:
        config, profile = _job_of(day_type, source, stored)
        return {"key": job_key(config, profile), "total": int(len(profile))}, dash.no_update, dash.no_update
    except _user_error_types() as exc:
        return None, str(exc).strip(), True


def run_day(n_clicks: int | None, day_type: str, source: str | None, stored: dict | None):
    """Callback: start the controls' day in the background; ``(job store, alert, alert open)``."""
    import dash

    from app.day_job import start_day

    if not n_clicks:
        raise dash.exceptions.PreventUpdate
    try:
        config, profile = _job_of(day_type, source, stored)
        key = start_day(config, profile)
    except _user_error_types() as exc:
        return dash.no_update, str(exc).strip(), True
    except Exception as exc:  # the user gets one line, the log the traceback
        log.exception("starting the market day failed")
        return dash.no_update, f"The market day could not be started ({type(exc).__name__}); the server log has the details.", True
    return {"key": key, "total": int(len(profile)), "run": int(n_clicks)}, "", False


def poll_day(_n: Any, job: dict | None, shown: dict | None):
    """Callback: the job's progress; ``(poll disabled, progress value, progress label, progress style,
    running text, shown store, alert, alert open, run disabled)``.

    The shown store changes only when the finished day differs from the one drawn, so the charts
    are not redrawn on every poll.
    """
    import dash

    from app.day_job import day_results, day_status

    hidden = {"display": "none"}
    idle = (True, 0, "", hidden, "")
    if not isinstance(job, dict) or not isinstance(job.get("key"), str):
        return (*idle, None if shown else dash.no_update, dash.no_update, dash.no_update, False)
    try:
        status = day_status(job["key"])
    except (ValueError, *_user_error_types()) as exc:
        return (*idle, None, str(exc).strip(), True, False)
    state, done, total = status["state"], int(status.get("done") or 0), int(status.get("total") or job.get("total") or 0)
    if state == "done":
        if day_results(job["key"]) is None:
            return (*idle, None, "The stored market day could not be read; run the day again.", True, False)
        new_shown = {"key": job["key"]}
        return (*idle, new_shown if new_shown != shown else dash.no_update, dash.no_update, dash.no_update, False)
    if state == "failed":
        return (*idle, None if shown else dash.no_update, f"The market day failed: {status.get('message')}", True, False)
    if state == "none":
        return (*idle, None if shown else dash.no_update, dash.no_update, dash.no_update, False)
    percent = round(100 * done / total) if total else 0
    if state == "queued":
        text = f"queued: {status.get('message') or 'waiting'}…"
    else:
        text = f"running: {done} of {total} units done" + (f" (last {status['unit']})" if status.get("unit") else "")
    return (False, percent, f"{done} / {total}", {}, text, None if shown else dash.no_update, dash.no_update,
            dash.no_update, True)


def _shown_results(shown: Any) -> dict[str, Any] | None:
    from app.day_job import day_results

    return day_results(shown["key"]) if isinstance(shown, dict) and isinstance(shown.get("key"), str) else None


def show_day(shown: dict | None):
    """Callback: hint or charts; ``(hint style, charts style, 3 figures, totals, slider max, marks, value, disabled)``."""
    results = _shown_results(shown)
    if not results:
        return ({}, {"display": "none"}, {}, {}, {}, [], 0, {0: " "}, 0, True)
    figs = day_figures(results)
    starts = [u["start"] for u in results["units"]]
    index = default_unit(results)
    for fig in figs:
        fig.update_layout(shapes=unit_marker(starts[index]))
    return ({"display": "none"}, {}, *figs, totals_view(results), len(starts) - 1, slider_marks(starts), index, False)


NO_DAY_CAPTION = "Run the day; the maps then show the grid state of the unit the slider selects."


def select_unit(index: Any, shown: dict | None, caption: Any = None):
    """Callback: the two maps at the selected unit; ``(milp layers..., merit layers..., milp legend,
    merit legend, caption, 3 figure patches)``.

    Without a day the maps show the plain grid; they are drawn with it, so the layers are sent
    again only when a shown day goes away (``caption`` is the current one).
    """
    import dash

    from app import session
    from app.mapview import legend, result_layer_data

    results = _shown_results(shown)
    if not results:
        if caption == NO_DAY_CAPTION:
            raise dash.exceptions.PreventUpdate
        plain = result_layer_data(session.default_grid().geojson, None)
        return (*plain, *plain, legend(False), legend(False), NO_DAY_CAPTION, dash.no_update, dash.no_update,
                dash.no_update)
    units = results["units"]
    k = int(index) if isinstance(index, (int, float)) and 0 <= int(index) < len(units) else default_unit(results)
    layers = {m: _unit_layers(shown["key"], k, m) for m, _ in METHODS}
    legends = [legend(unit_outcome(results[RESULT_KEYS[m]][k]) is not None) for m, _ in METHODS]
    legends[1].open = False  # the same scales and symbols twice: the merit order's map keeps its legend folded
    patches = []
    for _ in range(3):
        patch = dash.Patch()
        patch["layout"]["shapes"] = unit_marker(units[k]["start"])
        patches.append(patch)
    return (*layers["milp"], *layers["merit"], *legends, unit_caption(results, k), *patches)


def unit_from_click(click: Any) -> int:
    """Callback: the slider's unit for a click on a chart point (its ``customdata`` is the unit index)."""
    import dash

    try:
        return int(click["points"][0]["customdata"])
    except (TypeError, KeyError, IndexError, ValueError):
        raise dash.exceptions.PreventUpdate from None


# ----------------------------------------------------------------------------------------- layout
def _map(prefix: str, title: str, geojson: dict[str, Any]):
    import dash_bootstrap_components as dbc
    from dash import html

    from app.mapview import map_bounds, map_component

    frame = map_component(prefix, geojson)
    leaflet = frame.children[0]
    leaflet.zoomSnap = 0.25  # half-width maps: fit the district closer than whole zoom levels allow
    # Half-width maps are narrow beside the open legend (bottom left): the fitted area reaches west of
    # the district by LEGEND_SHARE of its width, so the district lies right of the legend on both maps.
    (south, west), (north, east) = map_bounds(geojson)
    west -= LEGEND_SHARE * (east - west)
    leaflet.bounds = [[south, west], [north, east]]
    leaflet.center = [(south + north) / 2, (west + east) / 2]
    # the two maps fill the viewport below the slider when scrolled to (no change to the shared CSS)
    frame.style = {**(frame.style or {}), "height": "calc(100vh - 170px)", "minHeight": "380px"}
    return dbc.Card([dbc.CardHeader(title, className="py-1"), dbc.CardBody(frame, className="p-1")])


def layout():
    """The page: controls, progress, the hint or the charts, the slider and the two maps."""
    import dash_bootstrap_components as dbc
    from dash import dcc, html

    from app import session
    from optim.day import MAX_PROFILE_BYTES

    geojson = session.default_grid().geojson
    # responsive: the charts take their column's width also when they were first drawn hidden
    graph = dict(config={"displayModeBar": False}, responsive=True, style={"height": f"{CHART_HEIGHT_PX}px"})
    controls = dbc.Card(dbc.CardBody(dbc.Row([
        dbc.Col([dbc.Label("Day type"), dcc.RadioItems(id=f"{PREFIX}day-type", options=["weekday", "weekend"], value="weekday",
                                                        inline=True, inputStyle={"marginRight": "4px", "marginLeft": "8px"}, className="small",
                                                        persistence=True, persistence_type="session")], md=2),
        dbc.Col([dbc.Label(html.Span("Request profile", title="a CSV with columns start (HH:MM) and request_mw; "
                                                              "it may name only some units of the day")),
                 dcc.RadioItems(id=f"{PREFIX}profile-source", options=source_options(None), value=DEFAULT_SOURCE,
                                inputStyle={"marginRight": "4px"}, labelStyle={"display": "block"}, className="small")],
                md=5),
        dbc.Col([html.Br(), dcc.Upload(dbc.Button("Upload profile (CSV)", color="secondary", outline=True, size="sm"),
                                       id=f"{PREFIX}upload", accept=".csv,text/csv", max_size=MAX_PROFILE_BYTES)], md=2),
        dbc.Col([html.Br(), dbc.Button("Run day", id=f"{PREFIX}run", color="primary", className="me-2"),
                 html.Span(id=f"{PREFIX}running", className="small")], md=3),
    ]), className="py-1"), className="mb-1 market-controls")
    progress = html.Div(dbc.Progress(id=f"{PREFIX}progress", value=0, label="", striped=True, animated=True,
                                     style={"height": "18px"}),
                        id=f"{PREFIX}progress-holder", style={"display": "none"}, className="mb-1")
    hint = html.Div(
        "Run the day: each unit of the profile gets its own time frame, bids and sensitivity package, its request is "
        "cleared by the grid-aware MILP and by the grid-blind merit order, and both dispatches are checked by an AC "
        "power flow. The charts and the maps of each unit appear here when it is done (a finished day is kept, for "
        "every visitor).", id=f"{PREFIX}hint", className="text-muted small mb-2")
    charts = html.Div([
        series_legend(),
        dbc.Row([dbc.Col(dcc.Graph(id=f"{PREFIX}delivered", **graph), md=4),
                 dbc.Col(dcc.Graph(id=f"{PREFIX}cost", **graph), md=4),
                 dbc.Col(dcc.Graph(id=f"{PREFIX}violations", **graph), md=4)], className="g-1"),
        html.Div(id=f"{PREFIX}totals", className="small mb-1"),
    ], id=f"{PREFIX}charts", style={"display": "none"})
    slider = dbc.Card(dbc.CardBody([
        html.Div(NO_DAY_CAPTION, id=f"{PREFIX}unit", className="small fw-semibold"),
        dcc.Slider(id=f"{PREFIX}slider", min=0, max=0, step=1, value=0, marks={0: " "}, disabled=True,
                   allow_direct_input=False, updatemode="mouseup", included=False),
    ], className="py-1 px-2"), className="mb-1")
    maps = dbc.Row([dbc.Col(_map(f"{PREFIX}milp", dict(METHODS)["milp"], geojson), md=6),
                    dbc.Col(_map(f"{PREFIX}merit", dict(METHODS)["merit"], geojson), md=6)], className="g-1")
    return html.Div([
        dcc.Store(id=f"{PREFIX}profile", storage_type="session"),
        dcc.Store(id=f"{PREFIX}job", storage_type="session"),
        dcc.Store(id=f"{PREFIX}shown", storage_type="memory"),
        dcc.Interval(id=f"{PREFIX}poll", interval=POLL_MS, disabled=True),
        controls,
        dbc.Alert(id=f"{PREFIX}alert", is_open=False, color="danger", dismissable=True),
        progress, hint, charts, slider, maps,
    ])


def register_callbacks(app: Any) -> None:
    """Wire the page's callbacks (their functions above are plain and tested directly)."""
    import dash
    from dash import Input, Output, State

    from app.mapview import RESULT_LAYERS

    p = PREFIX
    # one callback owns the profile choice (a store in the browser's session storage): an upload, a
    # change of the choice, and a new render of the tab, which brings the session's choice back
    app.callback(Output(f"{p}profile", "data"), Output(f"{p}profile-source", "options"),
                 Output(f"{p}profile-source", "value"), Output(f"{p}alert", "children", allow_duplicate=True),
                 Output(f"{p}alert", "is_open", allow_duplicate=True),
                 Input(f"{p}upload", "contents"), Input(f"{p}profile-source", "value"), State(f"{p}upload", "filename"),
                 State(f"{p}profile", "data"), prevent_initial_call="initial_duplicate",
                 )(lambda contents, source, filename, stored: choose_profile(dash.ctx.triggered_id, contents, source,
                                                                             filename, stored))
    app.callback(Output(f"{p}job", "data"), Output(f"{p}alert", "children", allow_duplicate=True),
                 Output(f"{p}alert", "is_open", allow_duplicate=True),
                 Input(f"{p}day-type", "value"), Input(f"{p}profile-source", "value"), State(f"{p}profile", "data"),
                 prevent_initial_call="initial_duplicate")(select_day)
    app.callback(Output(f"{p}job", "data", allow_duplicate=True), Output(f"{p}alert", "children", allow_duplicate=True),
                 Output(f"{p}alert", "is_open", allow_duplicate=True),
                 Input(f"{p}run", "n_clicks"), State(f"{p}day-type", "value"), State(f"{p}profile-source", "value"),
                 State(f"{p}profile", "data"), prevent_initial_call=True)(run_day)
    app.callback(Output(f"{p}poll", "disabled"), Output(f"{p}progress", "value"), Output(f"{p}progress", "label"),
                 Output(f"{p}progress-holder", "style"), Output(f"{p}running", "children"), Output(f"{p}shown", "data"),
                 Output(f"{p}alert", "children", allow_duplicate=True), Output(f"{p}alert", "is_open", allow_duplicate=True),
                 Output(f"{p}run", "disabled"),
                 Input(f"{p}poll", "n_intervals"), Input(f"{p}job", "data"), State(f"{p}shown", "data"),
                 prevent_initial_call="initial_duplicate")(poll_day)
    app.callback(Output(f"{p}hint", "style"), Output(f"{p}charts", "style"), Output(f"{p}delivered", "figure"),
                 Output(f"{p}cost", "figure"), Output(f"{p}violations", "figure"), Output(f"{p}totals", "children"),
                 Output(f"{p}slider", "max"), Output(f"{p}slider", "marks"), Output(f"{p}slider", "value"),
                 Output(f"{p}slider", "disabled"), Input(f"{p}shown", "data"))(show_day)
    app.callback(*[Output(f"{p}{m}-layer-{name}", "data") for m in ("milp", "merit") for name in RESULT_LAYERS],
                 Output(f"{p}milp-legend", "children"), Output(f"{p}merit-legend", "children"), Output(f"{p}unit", "children"),
                 *[Output(f"{p}{g}", "figure", allow_duplicate=True) for g in ("delivered", "cost", "violations")],
                 Input(f"{p}slider", "value"), Input(f"{p}shown", "data"), State(f"{p}unit", "children"),
                 prevent_initial_call="initial_duplicate")(select_unit)
    app.callback(Output(f"{p}slider", "value", allow_duplicate=True),
                 *[Input(f"{p}{g}", "clickData") for g in ("delivered", "cost", "violations")],
                 prevent_initial_call=True)(lambda *_: unit_from_click(dash.ctx.triggered[0]["value"]))
