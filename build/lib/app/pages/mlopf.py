"""Dash page of paper B: ML-based privacy-preserving AC-OPF.

Shows DS1's feasible region in 3-D with the trained polytope (paper B, Fig. 7), the cost-difference
and solve-time histograms of the benchmark (Fig. 8) and the metric tables (Tables I and II). It
reads ``assets/mlopf`` (``digiplat mlopf train`` and ``digiplat mlopf benchmark --save
assets/mlopf/benchmark.json`` write it). The figure functions are plain and testable.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import plotly.graph_objects as go

PREFIX = "mlopf-"


def _model_dir() -> Path:
    from optim.mlopf.model_store import DEFAULT_MODEL_DIR

    return DEFAULT_MODEL_DIR


def polytope_mesh(a: np.ndarray, b: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """Return ``(vertices, triangles)`` of ``{A x <= b} ∩ box`` in 3-D, or None if it is empty."""
    from scipy.optimize import linprog
    from scipy.spatial import ConvexHull, HalfspaceIntersection

    d = lower.size
    box_a = np.vstack([np.eye(d), -np.eye(d)])
    box_b = np.concatenate([upper, -lower])
    aa = np.vstack([a, box_a])
    bb = np.concatenate([b, box_b])
    # Chebyshev centre: an interior point
    norms = np.linalg.norm(aa, axis=1)
    res = linprog(np.r_[np.zeros(d), -1.0], A_ub=np.hstack([aa, norms[:, None]]), b_ub=bb,
                  bounds=[(None, None)] * d + [(0, None)], method="highs")
    if not res.success or res.x[-1] <= 1e-9:
        return None
    hs = HalfspaceIntersection(np.hstack([aa, -bb[:, None]]), res.x[:d])
    verts = hs.intersections
    hull = ConvexHull(verts)
    return verts, hull.simplices


def region_figure(x: np.ndarray, feasible: np.ndarray, polytope: Any | None = None, *, max_points: int = 3000) -> go.Figure:
    """Return DS1's samples (feasible/infeasible) and its polytope in (V_PCC, P_DG, Q_DG) (paper B, Fig. 7)."""
    x = np.asarray(x, float)
    feasible = np.asarray(feasible, bool)
    if x.shape[0] > max_points:
        idx = np.random.default_rng(0).choice(x.shape[0], max_points, replace=False)
        x, feasible = x[idx], feasible[idx]
    fig = go.Figure()
    for mask, name, color in ((feasible, "feasible sample", "#2a9d8f"), (~feasible, "infeasible sample", "#e76f51")):
        fig.add_trace(go.Scatter3d(x=x[mask, 1], y=x[mask, 2], z=x[mask, 0], mode="markers", name=name,
                                   marker={"size": 2, "color": color, "opacity": 0.6}))
    if polytope is not None:
        mesh = polytope_mesh(polytope.a, polytope.b, polytope.x_lower, polytope.x_upper)
        if mesh is not None:
            v, t = mesh
            fig.add_trace(go.Mesh3d(x=v[:, 1], y=v[:, 2], z=v[:, 0], i=t[:, 0], j=t[:, 1], k=t[:, 2], name="polytope A x ≤ b",
                                    color="#264653", opacity=0.25, showlegend=True, flatshading=True))
    fig.update_layout(scene={"xaxis_title": "P_DG (MW)", "yaxis_title": "Q_DG (MVAr)", "zaxis_title": "V_PCC (p.u.)"},
                      margin={"l": 0, "r": 0, "t": 30, "b": 0}, title="DS1 feasible region and NN polytope",
                      legend={"orientation": "h"})
    return fig


def cost_histogram_figure(cost_diff_percent: np.ndarray, *, nbins: int = 40) -> go.Figure:
    """Return the histogram of the cost difference (proposed vs full AC-OPF, %) (paper B, Fig. 8)."""
    c = np.asarray(cost_diff_percent, float)
    c = c[np.isfinite(c)]
    fig = go.Figure(go.Histogram(x=c, nbinsx=nbins, marker_color="#264653", name="cost difference"))
    if c.size:
        fig.add_vline(x=float(np.mean(c)), line_dash="dash", line_color="#e76f51", annotation_text=f"mean {np.mean(c):.3f} %")
    fig.update_layout(title="Cost difference", xaxis_title="cost difference (%)", yaxis_title="cost sets", bargap=0.05,
                      margin={"l": 40, "r": 10, "t": 40, "b": 40})
    return fig


def time_histogram_figure(time_diff_s: np.ndarray, *, nbins: int = 40) -> go.Figure:
    """Return the histogram of the solve-time difference (proposed minus full, s) (paper B, Fig. 8)."""
    t = np.asarray(time_diff_s, float)
    t = t[np.isfinite(t)]
    fig = go.Figure(go.Histogram(x=t, nbinsx=nbins, marker_color="#2a9d8f", name="time difference"))
    if t.size:
        fig.add_vline(x=float(np.mean(t)), line_dash="dash", line_color="#e76f51", annotation_text=f"mean {np.mean(t):.3f} s")
    fig.update_layout(title="Solve-time difference", xaxis_title="time difference (s)", yaxis_title="cost sets", bargap=0.05,
                      margin={"l": 40, "r": 10, "t": 40, "b": 40})
    return fig


def classifier_rows(classifier: dict[str, Any]) -> list[dict[str, str]]:
    """Return Table I rows: accuracy, recall and specificity per DS (in %)."""
    rows = []
    for name, m in classifier.items():
        md = m if isinstance(m, dict) else m.to_dict()
        rows.append({"Model": name, "Accuracy": f"{100 * md['accuracy']:.2f} %", "Recall": f"{100 * md['recall']:.2f} %",
                     "Specificity": f"{100 * md['specificity']:.2f} %"})
    return rows


def regression_rows(regression: dict[str, Any]) -> list[dict[str, str]]:
    """Return Table II rows: RMSE and MAE (p.u.) per DS and PCC output."""
    rows = []
    for name, m in regression.items():
        md = m if isinstance(m, dict) else m.to_dict()
        for out, rmse in md["rmse_pu"].items():
            rows.append({"Model": f"{name} {out}", "RMSE (p.u.)": f"{rmse:.2e}", "MAE (p.u.)": f"{md['mae_pu'][out]:.2e}"})
    return rows


def _table(rows: list[dict[str, str]], table_id: str) -> Any:
    import dash_bootstrap_components as dbc
    from dash import html

    if not rows:
        return html.Div("no data", id=table_id)
    head = html.Thead(html.Tr([html.Th(c) for c in rows[0]]))
    body = html.Tbody([html.Tr([html.Td(v) for v in r.values()]) for r in rows])
    return dbc.Table([head, body], id=table_id, bordered=True, striped=True, size="sm")


def benchmark_rows(summary: dict[str, Any]) -> list[dict[str, str]]:
    """Return the benchmark summary as table rows."""
    return [
        {"Quantity": "cost sets", "Value": f"{summary['cost_sets']}"},
        {"Quantity": "feasibility ratio (full-system AC power flow)", "Value": f"{100 * summary['feasible_ratio']:.1f} %"},
        {"Quantity": "mean / max cost difference", "Value": f"{summary['mean_cost_diff_percent']:.3f} % / {summary['max_cost_diff_percent']:.3f} %"},
        {"Quantity": "mean solve time proposed / full", "Value": f"{summary['mean_time_proposed_s']:.3f} s / {summary['mean_time_full_s']:.3f} s"},
        {"Quantity": "mean time difference", "Value": f"{summary['mean_time_diff_s']:.4f} s"},
    ]


def layout(model_dir: Path | str | None = None) -> Any:
    """Return the page: Fig. 7, Fig. 8 and Tables I/II from ``assets/mlopf``."""
    import dash_bootstrap_components as dbc
    from dash import dcc, html

    from optim.mlopf.benchmark import BenchmarkResult
    from optim.mlopf.model_store import BENCHMARK_FILE, ds1_plot_samples, load_models

    directory = Path(model_dir) if model_dir is not None else _model_dir()
    intro = dcc.Markdown(
        "Each DSO trains, on non-sensitive data only (PCC voltages, DG set-points), a **polytope** "
        "(max-aggregator neural network, `A x ≤ b`) for its feasible region and **quadratic regressions** "
        "for the PCC flows; the TSO solves its AC-OPF with them and dispatches the DGs directly. "
        "Benchmark: the full AC-OPF of the integrated IEEE 30-bus + 3 × IEEE 33-bus system.")
    children: list[Any] = [html.H3("Paper B: ML-based privacy-preserving AC-OPF", id=f"{PREFIX}title"), intro]
    try:
        models = load_models(directory)
    except FileNotFoundError:
        children.append(dbc.Alert("No trained models in assets/mlopf: run `digiplat mlopf train`.", color="warning", id=f"{PREFIX}alert"))
        return dbc.Container(children, fluid=True, id=f"{PREFIX}page")
    samples = ds1_plot_samples(directory)
    if samples is not None:
        fig7 = region_figure(samples[0], samples[1], models.surrogate("DS1").polytope)
        children.append(dbc.Row(dbc.Col(dcc.Graph(id=f"{PREFIX}region-graph", figure=fig7, style={"height": "560px"}))))
    bench_path = directory / BENCHMARK_FILE
    if bench_path.is_file():
        result = BenchmarkResult.load(bench_path)
        children.append(dbc.Row([
            dbc.Col(dcc.Graph(id=f"{PREFIX}cost-hist", figure=cost_histogram_figure(result.cost_diff_percent)), md=6),
            dbc.Col(dcc.Graph(id=f"{PREFIX}time-hist", figure=time_histogram_figure(result.time_diff_s)), md=6),
        ]))
        children.append(html.H5("Benchmark"))
        children.append(_table(benchmark_rows(result.summary()), f"{PREFIX}benchmark-table"))
    else:
        children.append(dbc.Alert("No benchmark results: run `digiplat mlopf benchmark --cost-sets 1000 --save assets/mlopf/benchmark.json`.",
                                  color="info", id=f"{PREFIX}bench-alert"))
    children.append(dbc.Row([
        dbc.Col([html.H5("Table I: classifier (test split)"), _table(classifier_rows(models.classifier), f"{PREFIX}classifier-table")], md=6),
        dbc.Col([html.H5("Table II: regression (test split)"), _table(regression_rows(models.regression), f"{PREFIX}regression-table")], md=6),
    ]))
    return dbc.Container(children, fluid=True, id=f"{PREFIX}page")


def register_callbacks(app: Any) -> None:
    """The page is static: nothing to register."""
    return None
