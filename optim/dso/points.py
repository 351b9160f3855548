"""Operating-point selection: where the DSO linearizes a time frame (paper A's future work).

The DSO chooses the ``m`` points of a time frame **before the market**, without knowing the
request ``P_E``, from what it knows then: its grid, the time frame's ``P_fix`` and the bid table
(volumes and prices, fixed at the bids' gate closure, before the TSO's request arrives).

- ``"all-half-none"`` (paper A, IV): every bid at the fraction ``f_i`` of its volume,
  ``f = linspace(1, 0, m)``: "all bids", "half of each bid", "no bids" for ``m = 3``.
- ``"merit-levels"``: the points sit where the cost-optimal dispatches are. Grid-aware
  clearings are all-or-nothing per bus in cost order, so a dispatch is far from the "half" point
  in directions that no point on the all/half/none line covers. The DSO therefore runs its own
  grid-aware clearings (the TSO's MILP on its own package) in advance at request levels
  spread over what the offers can deliver, in each direction that has offers: level ``j`` of
  ``n`` is ``(j - 1/2) / n`` of the deliverable volume (mid-cells, so no level coincides with a
  round request by construction), and linearizes at those dispatches, plus "no bids". Two
  passes: the first pass clears on the all/half/none package, the second on the first pass'
  package (its dispatches are then close to those of the final package). **Prices are used**:
  they are in the bid table the DSO already holds to build any point (paper A's points use the
  same table's volumes); the request, the one thing not known before the market, is not used.

**Bisection** (``max_points``; the CLI's and the app's default: up to 33 points): between two
neighbouring levels the cost-optimal dispatch switches the marginal bids on or off, and where
those sit at the ends of weak LV feeders (VTDF up to 0.68 p.u./MW) a tangent's curvature error
halfway between two levels missed Table I (V MAE up to 8e-5 p.u. with 9 points), while uniformly
denser levels spend points where the grid is stiff. So the DSO measures each interval: the
tangent at one end predicts the other end's dispatch, and that end's AC state is known (both are
linearization points, no power flow is run); the *gap* is the larger of both directions'
``max(V MAE / 2.3e-5, loading MAE / 6.1e-3)`` (paper A's Table I). Intervals with a gap above
``point_gap`` (default 2: a quadratic error halfway is a quarter of the end-to-end one, so about
half of Table I remains) get a level at their middle request, cleared on the package of the
interval's two end points, the worst first, and the new points are linearized, until no gap
exceeds it or ``max_points`` is reached. A half whose gap is still ``STOP_GAP_RATIO`` (0.9) of its
parent's is not bisected again: curvature quarters the gap per halving and a current's kink
halves it, but a jump (a branch's real current changing sign, a marginal bid switching between
feeders) keeps it at any width, and at weekend 12:00 five of 16 points went into 0.180-0.194 MW
that way. At 0.75 a weekday 18:00 interval whose gap fell to 0.78 of its parent's was stopped and
its middle request then missed Table I (V MAE 4.0e-5 p.u.): only a kept gap counts as a jump.
The levels stay request-independent: they depend on the grid, ``P_fix`` and the bids only.

Points that coincide with the dispatch that is then validated would make the errors vanish by
construction; the benchmarks report the distance of each validated dispatch to its point, and
``benchmarks/bench_validation.py --random`` draws its requests away from every level.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np

if TYPE_CHECKING:  # annotations only: the CLI reads this module's defaults while it builds its parser
    import pandas as pd

from optim._errors import InputError
from optim.dso import DEFAULT_MAX_POINTS, DEFAULT_POINT_GAP

logger = logging.getLogger(__name__)

POINT_METHODS = ("all-half-none", "merit-levels")
#: Paper A's Table I (1.8 MW): the errors the bisection of ``merit-levels`` measures its gaps in.
TABLE_I_VM_MAE_PU = 2.3e-5
TABLE_I_LOADING_MAE_PERCENT = 6.1e-3
#: Level intervals narrower than this (MW) are not bisected further.
MIN_LEVEL_STEP_MW = 1e-3
#: A half interval whose gap is still this share of its parent's is not bisected again: curvature
#: quarters a gap per halving (a current's kink halves it), a jump keeps it (module docstring).
STOP_GAP_RATIO = 0.9
#: Labels of the default three points (paper A, IV).
DEFAULT_LABELS = {1.0: "all bids", 0.5: "half of each bid", 0.0: "no bids"}

__all__ = ["POINT_METHODS", "DEFAULT_MAX_POINTS", "DEFAULT_POINT_GAP", "point_fractions", "points_for",
           "fraction_points", "level_gap"]


def point_fractions(n_points: int) -> tuple[float, ...]:
    """Fractions of every bid activated at the ``n_points`` operating points: ``linspace(1, 0, m)``.

    ``m = 1`` gives the single point "no bids" (``0.0``).
    """
    if n_points < 1:
        raise InputError("at least one operating point is needed")
    if n_points == 1:
        return (0.0,)
    return tuple(float(f) for f in np.linspace(1.0, 0.0, n_points))


def _label(fraction: float) -> str:
    return DEFAULT_LABELS.get(round(fraction, 12), f"{100 * fraction:.0f} % of each bid")


def fraction_points(p_offered_mw: np.ndarray, n_points: int) -> list[tuple[str, np.ndarray]]:
    """Paper A's points: every bid at ``f_i`` of its volume."""
    return [(_label(f), f * np.asarray(p_offered_mw, dtype=float)) for f in point_fractions(n_points)]


def points_for(grid: Any, scenario: Any, flex: pd.DataFrame, config: Any,
               progress: Callable[[int, int, str], None] | None = None, frame: Any = None
               ) -> tuple[list[tuple[str, np.ndarray]], dict[str, Any]]:
    """The points ``(label, P_flex per bus of flex)`` of ``config.point_method`` and their meta.

    ``frame`` (:func:`optim.dso.linearize.frame_model`) shares the time frame's solved net.
    """
    p_offered = flex.p_offered_mw.to_numpy(dtype=float)
    if config.point_method == "all-half-none":
        fractions = point_fractions(config.n_points)
        return fraction_points(p_offered, config.n_points), {
            "point_fractions": [float(f) for f in fractions],
            "point_definition": "point i activates every bid at fraction f_i of its offered volume, "
                                "f = linspace(1, 0, m)",
        }
    if config.point_method == "merit-levels":
        return merit_level_points(grid, scenario, flex, config, progress=progress, frame=frame)
    raise InputError(f"unknown point method {config.point_method!r}: use one of {', '.join(POINT_METHODS)}")


def _levels(n_levels: int) -> np.ndarray:
    return (np.arange(1, n_levels + 1) - 0.5) / n_levels


def merit_level_points(grid: Any, scenario: Any, flex: pd.DataFrame, config: Any,
                       progress: Callable[[int, int, str], None] | None = None, frame: Any = None
                       ) -> tuple[list[tuple[str, np.ndarray]], dict[str, Any]]:
    """Points at the DSO's own pre-market clearings (see the module docstring).

    ``config.n_points`` is the total ``m``: "no bids" plus ``m - 1`` levels, split between the
    directions in proportion to their offered volume (at least one level per direction with offers).
    """
    import dataclasses

    from optim.dso.linearize import linearize_at
    from optim.tso.bids import bids_from_frame
    from optim.tso.clearing import clear_milp

    p_up = float(flex.p_up_mw.sum())
    p_down = float(-flex.p_down_mw.sum())
    n_levels = int(config.n_points) - 1
    directions = [(s, v) for s, v in ((1.0, p_up), (-1.0, p_down)) if v > 1e-9]
    if not directions:
        raise InputError("the bids offer no volume: no levels to clear")
    if n_levels == 0:
        return [("no bids", np.zeros(len(flex)))], {"point_levels_mw": [], "point_definition": "no bids only"}
    directions = sorted(directions, key=lambda d: -d[1])[:n_levels]  # too few levels: the larger directions
    counts = {s: 1 for s, _ in directions}
    for _ in range(n_levels - len(directions)):  # the remaining levels go where the volume is
        s = max(directions, key=lambda d: d[1] / counts[d[0]])[0]
        counts[s] += 1
    bids = bids_from_frame(scenario.bids)
    base = dataclasses.replace(config, point_method="all-half-none", n_points=3)
    chosen = fraction_points(flex.p_offered_mw.to_numpy(float), 3)
    lin = linearize_at(grid, scenario, flex, chosen, config=base, frame=frame, bound_key=False)
    order = _bus_order(lin.key, lin.package, flex)
    levels_mw: list[float] = []
    n_passes = int(getattr(config, "point_passes", 1))
    for passes in range(n_passes):
        new_points: list[tuple[str, np.ndarray]] = [("no bids", np.zeros(len(flex)))]
        levels_mw = []
        for s, volume in directions:
            deliverable = _deliverable(lin.package, bids, s * volume)
            for q in _levels(counts[s]):
                request = s * q * deliverable
                result = clear_milp(lin.package, bids, request)
                if not result.ok or abs(request) < 1e-6:
                    continue
                levels_mw.append(round(float(request), 6))
                new_points.append((f"level {request:+.3f} MW", np.asarray(result.p_flex_mw)[order]))
        if progress:
            progress(passes + 1, n_passes + 1, f"point selection pass {passes + 1}: {len(new_points)} points")
        chosen = new_points
        if passes < n_passes - 1:
            lin = linearize_at(grid, scenario, flex, chosen, config=dataclasses.replace(config, screen_rows=True),
                               frame=frame, bound_key=False)
            order = _bus_order(lin.key, lin.package, flex)
    bisections: list[dict[str, float]] = []
    stopped: list[dict[str, float]] = []
    if config.max_points and config.max_points > len(chosen):
        chosen, levels_mw, bisections, stopped = _bisected_levels(grid, scenario, flex, config, chosen, levels_mw, bids, frame)
    logger.info("merit-level points: %d levels (%s MW) and no bids", len(levels_mw),
                ", ".join(f"{x:+.3f}" for x in levels_mw))
    definition = ("dispatches of the DSO's own grid-aware clearings at (j - 1/2)/n of the deliverable volume "
                  "per direction, chosen before the market; plus no bids")
    if bisections:
        definition += (f"; level intervals whose end points' tangents miss each other by more than {config.point_gap:g} "
                       f"x Table I bisected, up to {config.max_points} points")
    return chosen, {"point_levels_mw": levels_mw, "point_bisections": bisections, "point_bisections_stopped": stopped,
                    "point_definition": definition}


def level_gap(a: Any, b: Any) -> float:
    """How far the tangent at point ``a`` misses the AC state at point ``b``, in Table I units.

    ``max(V MAE / 2.3e-5 p.u., loading MAE / 6.1e-3 %)`` of ``a``'s prediction at ``b``'s dispatch
    against ``b``'s own power flow (both points are solved already: no power flow is run).
    """
    from optim.package import predicted_state

    vm, loading = predicted_state(a, b.p_flex_mw)
    vm_b, loading_b = predicted_state(b, b.p_flex_mw)
    return max(float(np.abs(vm - vm_b).mean()) / TABLE_I_VM_MAE_PU,
               float(np.abs(loading - loading_b).mean()) / TABLE_I_LOADING_MAE_PERCENT)


def _bisected_levels(grid: Any, scenario: Any, flex: pd.DataFrame, config: Any, chosen: list, levels_mw: list[float],
                     bids: Any, frame: Any) -> tuple[list, list[float], list[dict[str, Any]], list[dict[str, Any]]]:
    """Bisect the level intervals whose end points' tangents miss each other (see the module docstring).

    ``chosen[0]`` is "no bids" (level 0), ``chosen[1:]`` the levels ``levels_mw``. Returns the points,
    their levels, one record per bisection (the interval, its gap, whether it was cleared) and one
    per interval left as it is because halving its parent did not shrink the gap.

    A middle level is cleared on the package of the interval's two end points (the market's
    choice between them), and only the new points are linearized in each round (the same seed
    gives every call the same columns).
    """
    import dataclasses

    from optim.dso.linearize import linearize_at
    from optim.tso.clearing import clear_milp

    screen = dataclasses.replace(config, screen_rows=True)
    lin = linearize_at(grid, scenario, flex, chosen, config=screen, frame=frame, bound_key=False)
    package = lin.package
    order = _bus_order(lin.key, package, flex)
    points = list(package.points)
    levels = [0.0, *levels_mw]
    chosen = list(chosen)
    tried: set[float] = set()
    records: list[dict[str, Any]] = []
    stopped: list[dict[str, Any]] = []
    parent_gap: dict[tuple[float, float], float] = {}  # a bisected interval's gap, on both halves
    while len(chosen) < config.max_points:
        gaps = []
        for s in (1.0, -1.0):
            side = sorted((k for k, level in enumerate(levels) if s * level >= 0), key=lambda k: abs(levels[k]))
            for a, b in zip(side, side[1:]):
                middle = round(float(0.5 * (levels[a] + levels[b])), 6)
                if middle in tried or abs(levels[b] - levels[a]) < MIN_LEVEL_STEP_MW:
                    continue
                gap = max(level_gap(points[a], points[b]), level_gap(points[b], points[a]))
                if gap <= config.point_gap:
                    continue
                parent = parent_gap.get(_interval(levels[a], levels[b]))
                if parent is not None and gap >= STOP_GAP_RATIO * parent:
                    # halving kept the gap: a jump of the dispatch or a current's sign flip lies
                    # inside, which no number of levels resolves; the budget goes elsewhere
                    tried.add(middle)
                    stopped.append({"from_mw": float(levels[a]), "to_mw": float(levels[b]),
                                    "gap": round(float(gap), 3), "parent_gap": round(float(parent), 3)})
                    continue
                gaps.append((gap, middle, a, b))
        if not gaps:
            break
        new = []
        # the worst intervals first: this round takes those within half of the worst gap, so a
        # budget that runs out is spent where the errors are largest (a halved interval's gap is
        # about a quarter of its parent's, and competes in the next round)
        worst = max(g[0] for g in gaps)
        batch = [g for g in sorted(gaps, reverse=True) if g[0] >= 0.5 * worst]
        for gap, middle, a, b in batch[:config.max_points - len(chosen)]:
            tried.add(middle)
            # on the two end points only: the dispatch the market chooses between them, at about
            # two thirds of the time of a clearing on every point (bench_validation --random: Table I
            # met as often)
            result = clear_milp(dataclasses.replace(package, points=(points[a], points[b])), bids, middle)
            records.append({"from_mw": float(levels[a]), "to_mw": float(levels[b]), "gap": round(float(gap), 3),
                            "level_mw": float(middle), "cleared": bool(result.ok)})
            if result.ok:
                parent_gap[_interval(levels[a], middle)] = parent_gap[_interval(middle, levels[b])] = float(gap)
                levels.append(middle)
                new.append((f"level {middle:+.3f} MW", np.asarray(result.p_flex_mw)[order]))
        if new:
            more = linearize_at(grid, scenario, flex, new, config=screen, frame=frame, bound_key=False).package
            if more.flex_ids != package.flex_ids:  # the columns come from the config's seed
                raise RuntimeError("linearize_at gave another column order for the same seed")
            points.extend(more.points)
            chosen.extend(new)
    return chosen, levels[1:], records, stopped


def _interval(a_mw: float, b_mw: float) -> tuple[float, float]:
    return (round(min(a_mw, b_mw), 6), round(max(a_mw, b_mw), 6))


def _bus_order(key: Any, package: Any, flex: pd.DataFrame) -> np.ndarray:
    """Package columns in the order of ``flex``'s buses."""
    col_of = {fid: k for k, fid in enumerate(package.flex_ids)}
    return np.array([col_of[fid] for fid in _flex_ids_in_bus_order(key, flex)])


def _flex_ids_in_bus_order(key: Any, flex: pd.DataFrame) -> Sequence[str]:
    """The key's opaque flexible ids in the order of ``flex``'s buses."""
    id_of_bus = dict(zip(key.flex_buses, key.flex_ids))
    return [id_of_bus[int(b)] for b in flex.index]


def _deliverable(package: Any, bids: Any, offered_mw: float) -> float:
    """The volume (unsigned) the package admits in the direction of ``offered_mw``."""
    from optim.tso.clearing import clear_milp

    result = clear_milp(package, bids, offered_mw)
    if result.ok:
        return abs(offered_mw)
    return abs(result.max_deliverable_mw or 0.0)
