"""Test systems of paper B: IEEE 30-bus transmission system and three meshed IEEE 33-bus DSs.

Numbering
---------
Paper B numbers the transmission-system (TS) buses from 1 (MATPOWER style). Public functions here
take and report TS buses **1-based as in the paper** (``pcc_ts_buses_1based``); internally every
array is 0-based (pandapower order). DS buses are always 0-based pandapower indices of ``case33bw``
(DS bus 0 is the substation bus).

Connection of a DS to the TS
----------------------------
Everything is in per unit on the TS base (100 MVA). A DS is attached by *merging* one of its buses
with a TS bus (an ideal, lossless 135/12.66 kV coupling with ratio 1 in per unit): the first PCC is
always DS bus 0 (the case33bw substation); a second PCC, where present, is DS bus 17 (the far end
of the main feeder, paper 1-based bus 18). So DS2 joins TS buses 16 and 17 (1-based) through its
own meshed grid, and DS3 joins TS buses 19 and 20.

PCC voltage angles: the DSO does not know TS angles, so when labelling samples the DS power flow
holds every PCC at its sampled voltage magnitude with angle 0 (both PCCs of a two-PCC DS share the
same angle). In the integrated system the angles come from the TS; the small angle difference of
two adjacent TS buses (below 1 degree in the benchmark) drives a loop flow through the DS that the
surrogates neglect. The TSO OPF absorbs it with a small margin on generator Q limits and TS line
ratings, and can optionally bound the PCC angle difference (``optim.mlopf.opf.OpfConfig``); the
full-system AC power flow of the benchmark checks the result.

PCC buses of the TS carry no own load or generation (paper B, II-B): the case30 loads at TS buses
16, 17, 19 and 20 (1-based) are removed; the DS loads replace them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

BASE_MVA = 100.0
#: DS bus used as the second PCC of a two-PCC DS (0-based case33bw index, paper 1-based bus 18).
SECOND_PCC_DS_BUS = 17
#: Default DG buses (0-based case33bw indices).
DS1_DG_BUSES = (17,)
DS23_DG_BUSES = (7, 13, 21, 24, 30)


@dataclass(frozen=True)
class Network:
    """A power network in per unit (base ``BASE_MVA``), enough for power flow and OPF.

    Attributes
    ----------
    from_bus, to_bus : 0-based branch ends.
    r_pu, x_pu, b_pu : series resistance/reactance and total charging susceptance.
    rate_s_pu : apparent-power limit at either end (0: none), used for TS lines.
    rate_i_pu : current-magnitude limit (0: none), used for DS lines.
    pd_pu, qd_pu : bus demand.
    gs_pu, bs_pu : bus shunt admittance.
    vmin_pu, vmax_pu : bus voltage limits.
    """

    name: str
    from_bus: np.ndarray
    to_bus: np.ndarray
    r_pu: np.ndarray
    x_pu: np.ndarray
    b_pu: np.ndarray
    rate_s_pu: np.ndarray
    rate_i_pu: np.ndarray
    pd_pu: np.ndarray
    qd_pu: np.ndarray
    gs_pu: np.ndarray
    bs_pu: np.ndarray
    vmin_pu: np.ndarray
    vmax_pu: np.ndarray

    @property
    def n_bus(self) -> int:
        """Number of buses."""
        return int(self.pd_pu.shape[0])

    @property
    def n_branch(self) -> int:
        """Number of branches."""
        return int(self.from_bus.shape[0])

    @cached_property
    def branch_admittances(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Return ``(yff, yft, ytf, ytt)`` of every branch (pi model, no taps)."""
        ys = 1.0 / (self.r_pu + 1j * self.x_pu)
        ysh = 0.5j * self.b_pu
        return ys + ysh, -ys, -ys, ys + ysh

    @cached_property
    def ybus(self) -> np.ndarray:
        """Return the dense complex bus admittance matrix."""
        n = self.n_bus
        yff, yft, ytf, ytt = self.branch_admittances
        y = np.zeros((n, n), dtype=complex)
        f, t = self.from_bus, self.to_bus
        np.add.at(y, (f, f), yff)
        np.add.at(y, (f, t), yft)
        np.add.at(y, (t, f), ytf)
        np.add.at(y, (t, t), ytt)
        y[np.arange(n), np.arange(n)] += self.gs_pu + 1j * self.bs_pu
        return y

    def with_demand(self, pd_pu: np.ndarray, qd_pu: np.ndarray) -> "Network":
        """Return a copy with another demand vector."""
        from dataclasses import replace

        return replace(self, pd_pu=np.asarray(pd_pu, float), qd_pu=np.asarray(qd_pu, float))


@dataclass(frozen=True)
class Generator:
    """A dispatchable TS generator (the ext_grid is the slack generator)."""

    bus: int
    pmin_pu: float
    pmax_pu: float
    qmin_pu: float
    qmax_pu: float
    c1_eur_per_mwh: float
    c2_eur_per_mw2h: float

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return dict(self.__dict__)


@dataclass(frozen=True)
class PQChart:
    """A DG PQ chart as linear inequalities ``c [p; q] <= d`` (p in MW, q in MVAr).

    ``vertices_mw_mvar`` is the polygon (counter-clockwise); its bounding box is the sampling box.
    """

    c: np.ndarray
    d: np.ndarray
    vertices_mw_mvar: np.ndarray

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """Return ``(pmin_mw, pmax_mw, qmin_mvar, qmax_mvar)`` of the bounding box."""
        v = self.vertices_mw_mvar
        return float(v[:, 0].min()), float(v[:, 0].max()), float(v[:, 1].min()), float(v[:, 1].max())

    def contains(self, p_mw: np.ndarray, q_mvar: np.ndarray, *, tol: float = 1e-9) -> np.ndarray:
        """Return a boolean mask of the points inside the chart."""
        pts = np.stack([np.asarray(p_mw, float), np.asarray(q_mvar, float)], axis=-1)
        return np.all(pts @ self.c.T <= self.d + tol, axis=-1)

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return {"c": self.c.tolist(), "d": self.d.tolist(), "vertices_mw_mvar": self.vertices_mw_mvar.tolist()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "PQChart":
        """Inverse of :meth:`to_dict`."""
        return cls(np.asarray(data["c"], float), np.asarray(data["d"], float), np.asarray(data["vertices_mw_mvar"], float))


def rectangular_chart(pmin_mw: float = 0.0, pmax_mw: float = 2.0, qmin_mvar: float = 0.0, qmax_mvar: float = 2.0) -> PQChart:
    """Return the rectangular PQ chart ``[pmin, pmax] x [qmin, qmax]``."""
    c = np.array([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0]])
    d = np.array([pmax_mw, -pmin_mw, qmax_mvar, -qmin_mvar])
    v = np.array([[pmin_mw, qmin_mvar], [pmax_mw, qmin_mvar], [pmax_mw, qmax_mvar], [pmin_mw, qmax_mvar]])
    return PQChart(c, d, v)


def random_convex_chart(*, random_state: int, box: tuple[float, float, float, float] = (0.0, 2.0, 0.0, 2.0), n_points: int = 9) -> PQChart:
    """Return a seeded random convex polygon whose bounding box is exactly ``box``.

    One point is drawn on each side of the box (so the box is the polygon's bounding rectangle,
    as in paper B, Fig. 2b) plus ``n_points`` interior points; the chart is their convex hull.
    """
    from scipy.spatial import ConvexHull

    rng = np.random.default_rng(random_state)
    p0, p1, q0, q1 = box
    side = rng.uniform(0.15, 0.85, size=4)
    pts = [
        (p0 + side[0] * (p1 - p0), q0),
        (p1, q0 + side[1] * (q1 - q0)),
        (p0 + side[2] * (p1 - p0), q1),
        (p0, q0 + side[3] * (q1 - q0)),
    ]
    inner = np.column_stack([rng.uniform(p0, p1, n_points), rng.uniform(q0, q1, n_points)])
    allpts = np.vstack([np.array(pts), inner])
    hull = ConvexHull(allpts)
    verts = allpts[hull.vertices]  # counter-clockwise in 2-D
    eq = hull.equations  # a.x + off <= 0 inside
    return PQChart(eq[:, :2].copy(), -eq[:, 2].copy(), verts)


@dataclass(frozen=True)
class DistributionSystem:
    """One DS of paper B: its grid (per unit, TS base), PCCs, DGs and their PQ charts.

    Attributes
    ----------
    name : "DS1", "DS2", "DS3".
    network : the meshed case33bw grid (tie lines closed) in per unit.
    pcc_ds_buses : DS buses that are PCCs (0 and, for two PCCs, ``SECOND_PCC_DS_BUS``).
    pcc_ts_buses_1based : TS buses (1-based as in the paper) the PCCs merge with.
    dg_buses : DS buses of the DGs.
    charts : one PQ chart per DG.
    vpcc_min_pu, vpcc_max_pu : sampling range of the PCC voltage magnitudes.
    model_name : the DS whose dataset and models this DS uses (DS3 uses DS2's, as in paper B).
    """

    name: str
    network: Network
    pcc_ds_buses: tuple[int, ...]
    pcc_ts_buses_1based: tuple[int, ...]
    dg_buses: tuple[int, ...]
    charts: tuple[PQChart, ...]
    vpcc_min_pu: float = 0.95
    vpcc_max_pu: float = 1.05
    model_name: str = ""

    @property
    def n_pcc(self) -> int:
        """Number of PCCs."""
        return len(self.pcc_ds_buses)

    @property
    def n_dg(self) -> int:
        """Number of DGs."""
        return len(self.dg_buses)

    @property
    def n_x(self) -> int:
        """Dimension of ``x = (V_PCC, P_DG, Q_DG)``."""
        return self.n_pcc + 2 * self.n_dg

    @property
    def x_lower(self) -> np.ndarray:
        """Lower bounds of ``x`` (V in p.u., P in MW, Q in MVAr): bounding boxes of the charts."""
        b = np.array([c.bounds for c in self.charts])
        return np.concatenate([np.full(self.n_pcc, self.vpcc_min_pu), b[:, 0], b[:, 2]])

    @property
    def x_upper(self) -> np.ndarray:
        """Upper bounds of ``x``."""
        b = np.array([c.bounds for c in self.charts])
        return np.concatenate([np.full(self.n_pcc, self.vpcc_max_pu), b[:, 1], b[:, 3]])

    @property
    def x_names(self) -> list[str]:
        """Names of the components of ``x``."""
        return ([f"vm_pcc{k + 1}_pu" for k in range(self.n_pcc)] + [f"p_dg{g + 1}_mw" for g in range(self.n_dg)]
                + [f"q_dg{g + 1}_mvar" for g in range(self.n_dg)])

    def charts_contain(self, x: np.ndarray, *, tol: float = 1e-9) -> np.ndarray:
        """Return a mask of the samples whose DG set-points all lie inside their PQ charts (MW, MVAr)."""
        x = np.atleast_2d(x)
        ok = np.ones(x.shape[0], dtype=bool)
        for g, chart in enumerate(self.charts):
            ok &= chart.contains(x[:, self.n_pcc + g], x[:, self.n_pcc + self.n_dg + g], tol=tol)
        return ok


def _network_from_pandapower(net: Any, *, name: str, rate_i_ka: float | None = None) -> Network:
    """Convert a pandapower net made of lines, loads and shunts to a per-unit :class:`Network`."""
    bus_pos = {b: i for i, b in enumerate(net.bus.index)}
    line = net.line[net.line.in_service]
    vn = net.bus.vn_kv.to_numpy()
    f = line.from_bus.map(bus_pos).to_numpy()
    t = line.to_bus.map(bus_pos).to_numpy()
    zbase = vn[f] ** 2 / BASE_MVA
    par = line.parallel.to_numpy()
    r = line.r_ohm_per_km.to_numpy() * line.length_km.to_numpy() / zbase / par
    x = line.x_ohm_per_km.to_numpy() * line.length_km.to_numpy() / zbase / par
    b = 2 * np.pi * net.f_hz * line.c_nf_per_km.to_numpy() * 1e-9 * line.length_km.to_numpy() * zbase * par
    x = np.where(np.abs(r + 1j * x) < 1e-9, 1e-6, x)
    i_ka = line.max_i_ka.to_numpy() * par
    if rate_i_ka is None:
        rate_s = i_ka * vn[f] * np.sqrt(3) / BASE_MVA * line.max_loading_percent.to_numpy() / 100.0
        rate_i = np.zeros_like(rate_s)
    else:
        rate_s = np.zeros(len(line))
        rate_i = np.full(len(line), rate_i_ka) / (BASE_MVA / (np.sqrt(3) * vn[f]))
    n = len(net.bus)
    pd = np.zeros(n)
    qd = np.zeros(n)
    load = net.load[net.load.in_service]
    np.add.at(pd, load.bus.map(bus_pos).to_numpy(), load.p_mw.to_numpy() * load.scaling.to_numpy() / BASE_MVA)
    np.add.at(qd, load.bus.map(bus_pos).to_numpy(), load.q_mvar.to_numpy() * load.scaling.to_numpy() / BASE_MVA)
    gs = np.zeros(n)
    bs = np.zeros(n)
    sh = net.shunt[net.shunt.in_service] if len(net.shunt) else net.shunt
    if len(sh):
        np.add.at(gs, sh.bus.map(bus_pos).to_numpy(), sh.p_mw.to_numpy() * sh.step.to_numpy() / BASE_MVA)
        np.add.at(bs, sh.bus.map(bus_pos).to_numpy(), -sh.q_mvar.to_numpy() * sh.step.to_numpy() / BASE_MVA)
    return Network(name=name, from_bus=f.astype(int), to_bus=t.astype(int), r_pu=r, x_pu=x, b_pu=b,
                   rate_s_pu=rate_s, rate_i_pu=rate_i, pd_pu=pd, qd_pu=qd, gs_pu=gs, bs_pu=bs,
                   vmin_pu=net.bus.min_vm_pu.to_numpy(float), vmax_pu=net.bus.max_vm_pu.to_numpy(float))


@dataclass(frozen=True)
class SystemsConfig:
    """Configuration of the integrated test system.

    Attributes
    ----------
    ds_line_max_i_ka : current rating of every DS line (case33bw has none).
    ds_vmin_pu, ds_vmax_pu : DS bus voltage limits (tighter than case33bw's 0.9/1.1: with the tie
        lines closed the meshed grid never leaves 0.9-1.1 p.u. in the sampling box).
    polygon_seed : seed of DS3's random convex PQ charts.
    """

    ds_line_max_i_ka: float = 0.2
    ds_vmin_pu: float = 0.95
    ds_vmax_pu: float = 1.05
    polygon_seed: int = 7

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return dict(self.__dict__)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "SystemsConfig":
        """Inverse of :meth:`to_dict`."""
        return cls(**data)


@dataclass(frozen=True)
class IntegratedSystem:
    """The TS, its generators and the three DSs."""

    ts: Network
    generators: tuple[Generator, ...]
    slack_bus: int
    ds: tuple[DistributionSystem, ...] = field(default_factory=tuple)

    def ds_by_name(self, name: str) -> DistributionSystem:
        """Return the DS called ``name``."""
        for d in self.ds:
            if d.name == name:
                return d
        raise KeyError(name)


def ds_network_from_case33bw(config: SystemsConfig = SystemsConfig()) -> Network:
    """Return case33bw with its five tie lines closed (meshed), in per unit of the TS base."""
    import pandapower.networks as pn

    net = pn.case33bw()
    net.line["in_service"] = True
    net.bus["min_vm_pu"] = config.ds_vmin_pu
    net.bus["max_vm_pu"] = config.ds_vmax_pu
    return _network_from_pandapower(net, name="case33bw-meshed", rate_i_ka=config.ds_line_max_i_ka)


def ts_network_from_case30() -> tuple[Network, tuple[Generator, ...], int]:
    """Return case30 (loads at the PCC buses removed), its generators and the slack bus (0-based)."""
    import pandapower.networks as pn

    net = pn.case30()
    pcc0 = [b - 1 for b in (11, 16, 17, 19, 20)]
    net.load.loc[net.load.bus.isin(pcc0), "in_service"] = False
    ts = _network_from_pandapower(net, name="case30")
    cost = net.poly_cost.set_index(["et", "element"])
    gens = []
    eg = net.ext_grid.iloc[0]
    c = cost.loc[("ext_grid", net.ext_grid.index[0])]
    gens.append(Generator(int(eg.bus), eg.min_p_mw / BASE_MVA, eg.max_p_mw / BASE_MVA, eg.min_q_mvar / BASE_MVA,
                          eg.max_q_mvar / BASE_MVA, float(c.cp1_eur_per_mw), float(c.cp2_eur_per_mw2)))
    for i, g in net.gen.iterrows():
        c = cost.loc[("gen", i)]
        gens.append(Generator(int(g.bus), g.min_p_mw / BASE_MVA, g.max_p_mw / BASE_MVA, g.min_q_mvar / BASE_MVA,
                              g.max_q_mvar / BASE_MVA, float(c.cp1_eur_per_mw), float(c.cp2_eur_per_mw2)))
    return ts, tuple(gens), int(eg.bus)


@lru_cache(maxsize=8)
def integrated_system_from_cases(config: SystemsConfig = SystemsConfig()) -> IntegratedSystem:
    """Return the integrated system of paper B (TS case30 with DS1, DS2, DS3); cached, treat as read-only.

    DS1: PCC at TS bus 11 (1-based), one DG at DS bus 17. DS2: PCCs at TS buses 16 and 17,
    five DGs at DS buses 7, 13, 21, 24, 30 with rectangular charts [0, 2] MW x [0, 2] MVAr.
    DS3: PCCs at TS buses 19 and 20, the same DG buses with seeded random convex charts inside
    that box. DS3 uses DS2's dataset and ML models (same grid and DG buses, paper B, V-B).
    """
    ts, gens, slack = ts_network_from_case30()
    dsn = ds_network_from_case33bw(config)
    rect = rectangular_chart()
    ds1 = DistributionSystem("DS1", dsn, (0,), (11,), DS1_DG_BUSES, (rect,), model_name="DS1")
    ds2 = DistributionSystem("DS2", dsn, (0, SECOND_PCC_DS_BUS), (16, 17), DS23_DG_BUSES, (rect,) * 5, model_name="DS2")
    polys = tuple(random_convex_chart(random_state=config.polygon_seed + g) for g in range(5))
    ds3 = DistributionSystem("DS3", dsn, (0, SECOND_PCC_DS_BUS), (19, 20), DS23_DG_BUSES, polys, model_name="DS2")
    system = IntegratedSystem(ts=ts, generators=gens, slack_bus=slack, ds=(ds1, ds2, ds3))
    logger.info("integrated system: TS %d buses, %d DSs, %d DGs", ts.n_bus, 3, sum(d.n_dg for d in system.ds))
    return system


@dataclass(frozen=True)
class MergedNetwork:
    """The full integrated network with the DS buses appended after the TS buses.

    ``ds_bus_maps[k][j]`` is the integrated index of bus ``j`` of DS ``k`` (PCC buses map to their
    TS bus). ``dg_index`` lists ``(ds_index, dg_number, integrated_bus)``.
    """

    network: Network
    ds_bus_maps: tuple[np.ndarray, ...]
    ts_n_bus: int


def merged_network_from_system(system: IntegratedSystem) -> MergedNetwork:
    """Return the integrated network: DS PCC buses merged into their TS buses (ideal coupling)."""
    ts = system.ts
    parts = {k: [getattr(ts, k)] for k in ("from_bus", "to_bus", "r_pu", "x_pu", "b_pu", "rate_s_pu", "rate_i_pu")}
    bus_parts = {k: [getattr(ts, k)] for k in ("pd_pu", "qd_pu", "gs_pu", "bs_pu", "vmin_pu", "vmax_pu")}
    n = ts.n_bus
    maps = []
    for d in system.ds:
        dn = d.network
        m = np.full(dn.n_bus, -1, dtype=int)
        for ds_bus, ts1 in zip(d.pcc_ds_buses, d.pcc_ts_buses_1based):
            m[ds_bus] = ts1 - 1
        own = np.flatnonzero(m < 0)
        m[own] = n + np.arange(own.size)
        n += own.size
        maps.append(m)
        parts["from_bus"].append(m[dn.from_bus])
        parts["to_bus"].append(m[dn.to_bus])
        for k in ("r_pu", "x_pu", "b_pu", "rate_s_pu", "rate_i_pu"):
            parts[k].append(getattr(dn, k))
        for k in bus_parts:
            bus_parts[k].append(getattr(dn, k)[own])
    arrays = {k: np.concatenate(v) for k, v in parts.items()}
    barrays = {k: np.concatenate(v) for k, v in bus_parts.items()}
    # PCC buses keep their TS data; DS demand at a PCC bus (DS bus 17 has 90 kW) is added there.
    for d, m in zip(system.ds, maps):
        for ds_bus in d.pcc_ds_buses:
            barrays["pd_pu"][m[ds_bus]] += d.network.pd_pu[ds_bus]
            barrays["qd_pu"][m[ds_bus]] += d.network.qd_pu[ds_bus]
    net = Network(name="integrated", **arrays, **barrays)
    logger.info("merged network: %d buses, %d branches", net.n_bus, net.n_branch)
    return MergedNetwork(network=net, ds_bus_maps=tuple(maps), ts_n_bus=ts.n_bus)
