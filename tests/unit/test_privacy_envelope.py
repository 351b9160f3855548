"""Operating envelopes (``HardeningConfig(mechanism="envelope")``): per-bus boxes instead of grid rows.

- The package ships no grid row: only bounds on single buses, one box per request band.
- Utility: for requests over each frame's offers, the same delivered volume, zero AC violations
  (the units' physical Q) and a cost within +0.5 % of the paper-style package.
- Safety: the AC power flow at random corners and interior dispatches of every box finds no
  violation (the design checks the boxes' worst corners by AC power flow).
- The attacks fail within issue 10's targets: substation and feeder ARI <= 0.2 (the cap attack
  included), edges <= 10 %, no grid row to link, ids at chance.
- Bad input: an unknown mechanism, a band of 0 MW, no bids, and CLI options that do not apply.
"""

from __future__ import annotations

import numpy as np
import pytest

from optim._errors import InputError
from optim.privacy.envelope import EnvelopeConfig, request_bands
from optim.privacy.hardening import HardeningConfig, ac_verifier, harden
from tests.unit.test_privacy_attacks import paper_linearizations

#: Requests as shares of each frame's largest deliverable volume (the offers follow the time frame).
REQUEST_SHARES = (0.2, 0.45, 0.7, 0.85)


@pytest.fixture(scope="module")
def frames():
    return paper_linearizations()


@pytest.fixture(scope="module")
def envelopes(frames):
    return [harden(lin.package, lin.key, scenario.bids, config=HardeningConfig(mechanism="envelope", random_state=3),
                   verify=ac_verifier(grid, scenario, lin.key)) for grid, scenario, lin in frames]


def _box(package, point) -> tuple[np.ndarray, np.ndarray]:
    lo, hi = np.array(package.row_box_lower_mw, dtype=float), np.array(package.row_box_upper_mw, dtype=float)
    for a, b in zip(point.a_per_mw, point.b):
        (j,) = np.flatnonzero(a)
        if a[j] > 0:
            hi[j] = min(hi[j], b / a[j])
        else:
            lo[j] = max(lo[j], b / a[j])
    return lo, hi


def test_request_bands_cover_what_can_be_delivered() -> None:
    assert request_bands(-0.3, 0.6, 0.25) == [(-0.3, -0.25), (-0.25, 0.0), (0.0, 0.25), (0.25, 0.5), (0.5, 0.6)]
    assert request_bands(0.0, 0.2, 0.25) == [(0.0, 0.2)]


def test_an_envelope_package_ships_bounds_on_single_buses_only(envelopes) -> None:
    for env in envelopes:
        pkg = env.package
        assert pkg.style == "hardened" and pkg.meta["hardening"]["mechanism"] == "envelope"
        assert pkg.n_points == len(env.stats["envelopes"]) >= 3
        for point in pkg.points:
            assert np.all(point.p_flex_mw == 0.0)
            assert np.all((point.a_per_mw != 0).sum(axis=1) == 1)  # no row couples two buses
        kinds = {element[0] for element in env.origins.row_element.values()}
        assert kinds == {"flex"}
        # some bus is capped somewhere (the grid does congest), and every box was AC-checked
        assert sum(p.n_rows for p in pkg.points) > 0
        assert all(e["corners_checked"] >= 2 for e in env.stats["envelopes"])


@pytest.mark.parametrize("frame", [0, 1])
def test_the_envelope_clears_like_the_paper_style_package(frames, envelopes, frame) -> None:
    from types import SimpleNamespace

    from optim.market import clear_market

    grid, scenario, lin = frames[frame]
    paper = SimpleNamespace(package=lin.package, key=lin.key, private_package=lin.package, runtime_s=0.0)
    deliverable = max(b[1] for b in (e["band_mw"] for e in envelopes[frame].stats["envelopes"]))
    for request in (round(share * deliverable, 3) for share in REQUEST_SHARES):
        base = clear_market(grid, scenario, request_mw=request, linearization=paper)
        env = clear_market(grid, scenario, request_mw=request, linearization=envelopes[frame])
        assert base.clearing.ok and env.clearing.ok, request
        assert env.clearing.delivered_mw == pytest.approx(base.clearing.delivered_mw, abs=1e-6)
        assert env.validation.n_violations == 0 == base.validation.n_violations, request
        assert base.clearing.cost_eur - 1e-9 <= env.clearing.cost_eur <= base.clearing.cost_eur * 1.005 + 1e-9, request
        # Table I is measured with the DSO's own point nearest the dispatch
        assert env.validation.vm_mae_pu is not None and env.validation.vm_mae_pu < 1e-3


def test_every_box_is_clean_in_the_ac_power_flow(frames, envelopes) -> None:
    rng = np.random.default_rng(0)
    for (grid, scenario, _), env in zip(frames, envelopes):
        check = ac_verifier(grid, scenario, env.key)
        for point in env.package.points:
            lo, hi = _box(env.package, point)
            corners = np.where(rng.random((3, len(lo))) < 0.5, lo, hi)
            inside = lo + rng.random((2, len(lo))) * (hi - lo)
            for x in np.vstack([corners, inside]):
                assert check(x) == 0


def test_the_attacks_fail_on_the_envelope_package(frames, envelopes) -> None:
    from optim.privacy.audit import audit_package

    grid = frames[0][0]
    report = audit_package(envelopes[0].package, origins=envelopes[0].origins, grid=grid,
                           other=envelopes[1].package, other_origins=envelopes[1].origins)
    s = report.scores
    assert s["substation_ari"] <= 0.2 and s["feeder_ari"] <= 0.2
    assert s["edge_recall"] <= 0.1 and s["tree_cluster_recall"] <= 0.1
    assert s["row_link_rate"] is None and report.counts["grid_rows"] == 0  # nothing of the grid to link
    assert s["resistance_median_rel_error"] >= s["resistance_prior_median_rel_error"]
    assert s["rating_median_rel_error"] is None  # no branch row to guess a rating from
    assert s["id_inversion_rate"] <= 3.0 / report.counts["flex_buses"]


def test_the_cap_attack_reads_the_pattern_of_the_bounds(envelopes) -> None:
    """The audit is not blind to the caps: columns capped alike are grouped (so a score of ~0.1 is measured)."""
    from optim.privacy import attacks

    views = [attacks.view_of_package(envelopes[0].package, point=k) for k in range(envelopes[0].package.n_points)]
    pattern, shares = attacks.cap_groups(views)
    capped = {j for v in views for (j, _side) in attacks._caps(v)}
    assert len(set(pattern)) > 1 and len(set(shares)) >= len(set(pattern))
    assert len({pattern[j] for j in range(len(pattern)) if j not in capped}) == 1  # uncapped: one group


def test_the_designs_reference_costs_are_the_optima_on_both_frames(frames) -> None:
    """The design prices its sampled requests on the 2 points nearest each request's level
    (``cost_candidates``): on both frames' packages that is the optimum over every point."""
    from optim.privacy.envelope import band_requests, deliverable_range
    from optim.tso.bids import bids_from_frame
    from optim.tso.clearing import OptimalCosts

    for _, scenario, lin in frames:
        bids = bids_from_frame(scenario.bids, package=lin.package)
        requests = np.concatenate([band_requests(band, 6)
                                   for band in request_bands(*deliverable_range(lin.package, bids), 0.25)])
        exact = OptimalCosts(lin.package, bids)(requests)
        nearest = OptimalCosts(lin.package, bids, candidates=EnvelopeConfig().cost_candidates)(requests)
        assert np.isfinite(exact).sum() >= 0.9 * len(requests)
        assert np.allclose(nearest, exact, rtol=1e-9, atol=1e-9, equal_nan=True)


def test_bad_envelope_input_gets_a_clear_error(frames) -> None:
    _, scenario, lin = frames[0]
    for bad in (0, 1.5, True):
        with pytest.raises(InputError, match="cost_candidates"):
            EnvelopeConfig(cost_candidates=bad)
    with pytest.raises(InputError, match="unknown privacy mechanism"):
        HardeningConfig(mechanism="zones")
    with pytest.raises(InputError, match="positive width"):
        EnvelopeConfig(band_mw=0.0)
    with pytest.raises(InputError, match="needs the bids"):
        harden(lin.package, lin.key, config=HardeningConfig(mechanism="envelope"))
    import dataclasses

    other = dataclasses.replace(lin.key, buses=lin.key.buses[:-1])  # another grid's key: one bus fewer
    for mechanism in ("envelope", "rows"):
        with pytest.raises(InputError, match="does not match the package's rows"):
            harden(lin.package, other, scenario.bids, config=HardeningConfig(mechanism=mechanism))


def test_the_cli_refuses_envelope_options_that_do_not_apply(tmp_path, capsys) -> None:
    from app.cli import main

    assert main(["linearize", "--package-style", "paper", "--privacy-mechanism", "envelope",
                 "--out", str(tmp_path / "p.zip")]) == 2
    assert main(["linearize", "--envelope-band-mw", "0.5", "--out", str(tmp_path / "q.zip")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all("apply to" in line or "applies to" in line for line in err)
    assert not list(tmp_path.iterdir())


def test_the_compiled_ac_check_agrees_with_pandapower(frames) -> None:
    from optim.privacy.hardening import flex_box_from_bids

    grid, scenario, lin = frames[0]
    fast = ac_verifier(grid, scenario, lin.key)
    slow = ac_verifier(grid, scenario, lin.key, engine="pandapower")
    lo, hi = flex_box_from_bids(scenario.bids, lin.package)
    rng = np.random.default_rng(1)
    dispatches = [np.zeros_like(lo), hi, lo, 0.5 * hi, *np.where(rng.random((3, len(lo))) < 0.7, hi, lo)]
    counts = [(fast(x), slow(x)) for x in dispatches]
    assert all(f == s for f, s in counts), counts
    assert any(f > 0 for f, _ in counts) and counts[0] == (0, 0)  # it does find violations where there are some


def test_the_envelope_design_reports_its_progress(frames) -> None:
    grid, scenario, lin = frames[1]
    seen = []
    hard = harden(lin.package, lin.key, scenario.bids, config=HardeningConfig(mechanism="envelope", random_state=3),
                  progress=lambda done, total, message: seen.append((done, total, message)))
    assert seen and seen[-1][0] == seen[-1][1] and f"{hard.package.n_points} boxes" in seen[-1][2]
    assert all(0 < d <= t for d, t, _ in seen) and [d for d, _, _ in seen] == sorted(d for d, _, _ in seen)
