"""The market round of paper A, end to end: DSO linearization -> TSO clearing -> DSO validation.

:func:`clear_market` is what ``digiplat clear`` and the app call:

1. DSO: :func:`optim.dso.linearize.linearize` (``m`` operating points, AC power flows, analytic
   sensitivities) gives the :class:`~optim.package.SensitivityPackage` and the private key
   (skipped when a linearization is passed in);
2. TSO: :func:`optim.tso.clearing.clear_milp` (grid-aware) or
   :func:`optim.tso.merit_order.clear_merit_order` (grid-blind) on the package and the bids only;
3. DSO: :func:`optim.validation.validate_dispatch` applies the dispatch to the full grid with the
   physical P and Q of every activated unit (:func:`optim.validation.q_flex_from_pieces`), runs
   the AC power flow and compares it with the prediction of the DSO's own paper-style point that
   the clearing chose (``Linearization.private_package`` if a hardened package was shared).

**Refinement** (``refine=True``, beyond paper A, its future work on the choice of operating
points): while the validated dispatch has a violation, or its voltage or loading MAE is above the
tolerance, the DSO adds the dispatch itself as a new linearization point (power flow and
sensitivities there) and the TSO clears again, at most ``max_iterations`` clearings. Each round is
recorded in ``MarketOutcome.rounds``.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from optim._errors import InputError

logger = logging.getLogger(__name__)

METHODS = ("milp", "merit-order")

__all__ = ["RefineConfig", "MarketOutcome", "clear_market", "clear_package", "building_activations", "with_solved_net",
           "METHODS"]


@dataclass(frozen=True)
class RefineConfig:
    """Stopping rule of the refinement.

    Parameters
    ----------
    max_iterations
        Largest number of clearings (the first one included).
    vm_tolerance_pu, loading_tolerance_percent
        Accept a dispatch with no violation whose voltage and loading MAE are at most these
        (default: paper A's Table I figures).
    """

    max_iterations: int = 4
    vm_tolerance_pu: float = 2.3e-5
    loading_tolerance_percent: float = 6.1e-3

    def __post_init__(self) -> None:
        if int(self.max_iterations) < 1:
            raise InputError("max_iterations must be at least 1")
        if not (self.vm_tolerance_pu > 0 and self.loading_tolerance_percent > 0):
            raise InputError("refinement tolerances must be positive")

    def to_dict(self) -> dict[str, Any]:
        return {"max_iterations": int(self.max_iterations), "vm_tolerance_pu": self.vm_tolerance_pu,
                "loading_tolerance_percent": self.loading_tolerance_percent}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "RefineConfig":
        return cls(**data)


@dataclass(frozen=True)
class MarketOutcome:
    """Result of one market round.

    Attributes
    ----------
    clearing
        The TSO's :class:`~optim.tso.clearing.ClearingResult` (the last one if refined).
    validation
        :class:`~optim.validation.ValidationResult` of its dispatch (None if not OPTIMAL).
    package
        The package the final clearing used (with any refinement points).
    key
        The DSO's private key of the package.
    rounds
        Per clearing: ``{points, status, delivered_mw, cost_eur, chosen_point, violations, vm_mae_pu,
        loading_mae_percent}``.
    linearize_s, runtime_s
        Time of the linearization (0 if given) and of the whole round.
    net
        The solved pandapower net of the validation (DSO-private, with its ``res_*`` tables; None
        without a validation or with the compiled engine: :func:`with_solved_net` adds it). Kept
        for the exports (:mod:`app.export`); never in :meth:`to_dict`.
    """

    clearing: Any
    validation: Any
    package: Any
    key: Any
    rounds: tuple[dict[str, Any], ...] = ()
    linearize_s: float = 0.0
    runtime_s: float = 0.0
    refined: bool = False
    net: Any = field(default=None, repr=False, compare=False)

    def summary(self) -> dict[str, Any]:
        """The JSON line of ``digiplat clear`` (issue 4's keys and a few more)."""
        c = self.clearing
        v = self.validation
        return {
            "status": c.status.value,
            "method": c.method,
            "solver": c.solver,
            "requested_mw": c.requested_mw,
            "delivered_mw": c.delivered_mw,
            "max_deliverable_mw": c.max_deliverable_mw,
            "cost_eur": c.cost_eur,
            "chosen_point": c.chosen_point,
            "chosen_point_label": c.chosen_point_label,
            "points": None if self.package is None else self.package.n_points,
            "activations": [{"bid_id": a["bid_id"], "aggregator": a.get("aggregator"),
                             "offered_mw": a["offered_mw"], "activated_mw": a["activated_mw"]}
                            for a in c.activations],
            "validation": None if v is None else v.summary(),
            "refined": self.refined,
            "rounds": [dict(r) for r in self.rounds],
            "message": c.message,
            "clearing_s": c.runtime_s,
            "linearize_s": self.linearize_s,
            "runtime_s": self.runtime_s,
        }

    def to_dict(self, *, include_package: bool = False) -> dict[str, Any]:
        """JSON-serializable dict. The package (dense matrices, megabytes on Bergwald) only on request;
        the key is the DSO's and stays on the server (do not send it to a browser)."""
        return {
            "clearing": self.clearing.to_dict(),
            "validation": None if self.validation is None else self.validation.to_dict(),
            "package": self.package.to_dict() if include_package else None,
            "key": None if self.key is None else self.key.to_dict(),
            "rounds": [dict(r) for r in self.rounds],
            "linearize_s": self.linearize_s,
            "runtime_s": self.runtime_s,
            "refined": self.refined,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "MarketOutcome":
        from optim.dso.linearize import DsoKey
        from optim.package import SensitivityPackage
        from optim.tso.clearing import ClearingResult
        from optim.validation import ValidationResult

        return cls(
            clearing=ClearingResult.from_dict(data["clearing"]),
            validation=None if data.get("validation") is None else ValidationResult.from_dict(data["validation"]),
            package=None if data.get("package") is None else SensitivityPackage.from_dict(data["package"]),
            key=None if data.get("key") is None else DsoKey.from_dict(data["key"]),
            rounds=tuple(dict(r) for r in data.get("rounds", [])),
            linearize_s=float(data.get("linearize_s", 0.0)),
            runtime_s=float(data.get("runtime_s", 0.0)),
            refined=bool(data.get("refined", False)),
        )


def _bid_table(bids: Any, scenario: Any, package: Any) -> Any:
    from optim.tso.bids import BidTable, bids_from_frame

    if bids is None:
        bids = scenario.bids
    if isinstance(bids, BidTable):
        return bids
    if hasattr(bids, "columns"):
        return bids_from_frame(bids, package=package)
    raise InputError("bids must be a BidTable or a pandas DataFrame in the bid-table format")


def clear_package(method: str, package: Any, bids: Any, request_mw: float, solver: str = "highs") -> Any:
    """TSO only: clear ``bids`` on ``package`` with ``method`` (no grid, no validation)."""
    if method == "milp":
        from optim.tso.clearing import clear_milp

        return clear_milp(package, bids, request_mw, solver=solver)
    from optim.tso.merit_order import clear_merit_order

    return clear_merit_order(package, bids, request_mw)


def _round(package: Any, clearing: Any, validation: Any) -> dict[str, Any]:
    return {
        "points": package.n_points,
        "status": clearing.status.value,
        "delivered_mw": clearing.delivered_mw,
        "cost_eur": clearing.cost_eur,
        "chosen_point": clearing.chosen_point,
        "violations": None if validation is None else validation.n_violations,
        "vm_mae_pu": None if validation is None else validation.vm_mae_pu,
        "loading_mae_percent": None if validation is None else validation.loading_mae_percent,
    }


def is_envelope(package: Any) -> bool:
    """True for a hardened package whose points are operating envelopes (boxes), not linearizations."""
    return (package.meta.get("hardening") or {}).get("mechanism") == "envelope"


def nearest_point(package: Any, p_flex_mw: np.ndarray) -> int:
    """Index of the package's operating point nearest (Euclidean) to a dispatch per flexible bus."""
    points = np.array([np.asarray(p.p_flex_mw, dtype=float) for p in package.points])
    return int(np.argmin(((points - p_flex_mw[None, :]) ** 2).sum(axis=1)))


def validation_of_clearing(grid: Any, scenario: Any, linearization: Any, package: Any, table: Any, clearing: Any, *,
                           method: str, engine: str = "pandapower") -> tuple[Any, Any]:
    """DSO: the AC validation of an OPTIMAL clearing of ``package`` (and the solved net; None with
    ``engine="compiled"``, see :func:`optim.validation.validate_dispatch`).

    The prediction comes from the DSO's own paper-style point at the chosen index (the shared
    package may be hardened, with the same points); the flexibility's physical Q from its pieces.
    """
    from optim.validation import q_flex_from_pieces, validate_dispatch

    key = linearization.key
    own = getattr(linearization, "private_package", None) or package
    point = None
    if clearing.chosen_point is not None and own.style == "paper":
        if own is not package and is_envelope(package):
            # the shared points are boxes: the DSO predicts with its own point nearest the dispatch,
            # the one paper A's Voronoi rows (14h) would have chosen
            point = own.points[nearest_point(own, np.asarray(clearing.p_flex_mw))]
        elif own.n_points == package.n_points:
            point = own.points[clearing.chosen_point]
    return validate_dispatch(
        grid, scenario, key, np.asarray(clearing.p_flex_mw), point=point,
        q_flex_mvar=q_flex_from_pieces(key, clearing.piece_activations, table), method=method,
        vm_min_pu=package.vm_min_pu, vm_max_pu=package.vm_max_pu,
        loading_max_percent=package.loading_max_percent, return_net=True, engine=engine,
    )


def with_solved_net(outcome: MarketOutcome, grid: Any, scenario: Any, linearization: Any, bids: Any = None) -> MarketOutcome:
    """The outcome with the solved pandapower net of its dispatch (for the exports).

    An outcome validated on the compiled grid keeps no net; the exports name violated elements
    and write the solved net, so pandapower runs the same dispatch here (same validation, same
    physical Q), once, when a round is exported. An outcome that has its net, or has no
    validation, is returned as it is.
    """
    import dataclasses

    if outcome.net is not None or outcome.validation is None:
        return outcome
    table = _bid_table(bids, scenario, outcome.package)
    _, net = validation_of_clearing(grid, scenario, linearization, outcome.package, table, outcome.clearing,
                                    method=outcome.validation.method)
    return dataclasses.replace(outcome, net=net)


def clear_market(
    grid: Any,
    scenario: Any,
    bids: Any = None,
    request_mw: float = 1.8,
    *,
    method: str = "milp",
    solver: str = "highs",
    refine: bool = False,
    linearization: Any = None,
    n_points: int = 3,
    point_method: str = "all-half-none",
    refine_config: RefineConfig = RefineConfig(),
    validate: bool = True,
    engine: str = "pandapower",
    progress: Callable[[int, int, str], None] | None = None,
) -> MarketOutcome:
    """Run one market round: linearize (DSO), clear (TSO), validate (DSO).

    Parameters
    ----------
    grid
        :class:`gridgen.grid.Grid` of the DSO.
    scenario
        :class:`optim.dso.scenario.Scenario` (time frame, ``P_fix``, default bids).
    bids
        :class:`optim.tso.bids.BidTable` or a bid-table DataFrame; default ``scenario.bids``.
    request_mw
        ``P_E`` (MW, + = upward).
    method
        ``"milp"`` (grid-aware, paper A) or ``"merit-order"`` (grid-blind).
    solver
        ``"highs"`` or ``"pyomo:NAME"`` (MILP only).
    refine
        Add the validated dispatch as a linearization point and clear again until it is clean
        (MILP only; see :class:`RefineConfig`).
    linearization
        A :class:`optim.dso.linearize.Linearization` to reuse (default: computed here).
    n_points, point_method
        Operating points of the linearization computed here and how they are chosen.
    refine_config
        Stopping rule of the refinement.
    validate
        Run the power-flow validation (default True).
    engine
        The validation's power flow: ``"pandapower"`` (default; the outcome keeps the solved net)
        or ``"compiled"`` (the same AC power flow on the compiled grid, equal within the
        power-flow tolerance, 4-5 instead of 45-50 ms on Bergwald, no net kept;
        :func:`optim.validation.validate_dispatch`).
        The refinement needs the net of its dispatch and always uses pandapower.
    progress
        ``progress(done, total, message)`` for the CLI.

    Returns
    -------
    MarketOutcome

    Raises
    ------
    InputError
        Unknown method, bad bids or request, NaN inputs.
    PowerFlowError
        A power flow of the DSO side does not converge.
    """
    from optim.dso.linearize import (
        LinearizationConfig,
        linearize,
        operating_point_from_net,
        p_fix_at_flex,
        package_with_point,
    )
    t0 = time.perf_counter()
    if method not in METHODS:
        raise InputError(f"unknown method {method!r}: use {' or '.join(METHODS)}")
    if refine and method != "milp":
        raise InputError("--refine applies to the MILP clearing only")
    from optim.validation import ENGINES

    if engine not in ENGINES:  # checked before the clearing: the validation would find it only after
        raise InputError(f"unknown power-flow engine {engine!r}: use {' or '.join(ENGINES)}")
    if linearization is None:
        linearization = linearize(grid, scenario, config=LinearizationConfig(n_points=n_points, point_method=point_method),
                                  progress=progress)
        linearize_s = linearization.runtime_s
    else:
        linearize_s = 0.0
    package, key = linearization.package, linearization.key
    table = _bid_table(bids, scenario, package)

    rounds: list[dict[str, Any]] = []
    max_rounds = int(refine_config.max_iterations) if refine else 1
    clearing = validation = None
    for it in range(max_rounds):
        clearing = clear_package(method, package, table, request_mw, solver)
        validation = net = None
        if clearing.ok and validate:
            validation, net = validation_of_clearing(grid, scenario, linearization, package, table, clearing,
                                                     method=method, engine="pandapower" if refine else engine)
        rounds.append(_round(package, clearing, validation))
        if progress:
            progress(it + 1, max_rounds, f"clearing {it + 1}: {clearing.status.value}")
        if not refine or validation is None:
            break
        clean = (validation.n_violations == 0 and validation.vm_mae_pu is not None
                 and validation.vm_mae_pu <= refine_config.vm_tolerance_pu
                 and validation.loading_mae_percent <= refine_config.loading_tolerance_percent)
        if clean or it == max_rounds - 1:
            break
        p_flex = np.asarray(clearing.p_flex_mw, dtype=float)
        rows = "current" if package.points[0].has_currents else "signed-loading"
        point = operating_point_from_net(net, key, p_fix_at_flex(grid, scenario, key), p_flex,
                                         label=f"refinement {it + 1}", branch_rows=rows)
        package = package_with_point(package, point)

    outcome = MarketOutcome(clearing=clearing, validation=validation, package=package, key=key,
                            rounds=tuple(rounds), linearize_s=linearize_s, runtime_s=time.perf_counter() - t0,
                            refined=bool(refine), net=net)
    v = validation
    logger.info("market %s %.3g MW: %s, delivered %.4g MW, %s violations, %d round(s) in %.2f s", method,
                float(request_mw), clearing.status.value, clearing.delivered_mw,
                "n/a" if v is None else v.n_violations, len(rounds), outcome.runtime_s)
    return outcome


def building_activations(outcome: MarketOutcome, bids: Any) -> dict[str, dict[str, float]]:
    """DSO: offered and activated MW per building with a bid (the map's activation markers).

    A bid's activation is its piece's activated share (``activated / offered`` of the piece of
    the bid at the building's flexible bus, from the DSO key); a building's figures sum its bids.

    Parameters
    ----------
    outcome
        A market round's outcome (its clearing's pieces and the DSO key).
    bids
        The round's bids: a :class:`~optim.tso.bids.BidTable` or a bid-table DataFrame.

    Returns
    -------
    dict
        ``{building_id: {"offered_mw", "activated_mw"}}`` for every building with a bid.
    """
    frame = bids.to_frame() if hasattr(bids, "to_frame") else bids
    share_of_piece = {(p["bid_id"], p["flex_id"]): (p["activated_mw"] / p["offered_mw"] if p["offered_mw"] else 0.0)
                      for p in outcome.clearing.piece_activations}
    flex_of_building = {}
    if outcome.key is not None:
        flex_of_building = {b: flex_id for flex_id, buildings in outcome.key.buildings_of_flex.items() for b in buildings}
    out: dict[str, dict[str, float]] = {}
    for bid_id, building_id, p_mw in zip(frame["bid_id"], frame["building_id"], frame["p_mw"]):
        share = share_of_piece.get((bid_id, flex_of_building.get(building_id)), 0.0)
        entry = out.setdefault(building_id, {"offered_mw": 0.0, "activated_mw": 0.0})
        entry["offered_mw"] += float(p_mw)
        entry["activated_mw"] += float(p_mw) * share
    return out
