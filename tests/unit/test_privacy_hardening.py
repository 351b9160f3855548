"""The hardened package: rows only, secret ids, an inner approximation that clears the same bids.

- It carries no physical block and no paper-style id; its ids are fresh for every package.
- Its rows imply the paper-style rows for every dispatch within the bids' box (sampled), with the
  default mechanism and with noise.
- Secret ids change no result: two hardenings with one seed clear to the same activations.
- Utility (issue 10, item 5): for requests 0.5-2.0 MW and two time frames the same delivered volume,
  zero AC violations (physical Q) and a cost within +0.5 % of the paper-style package.
- The attacks fail within the targets that the default meets (edges, resistances, ratings, ids);
  the missed ones (substation and feeder ARI, row linking) are measured by
  ``benchmarks/bench_privacy.py`` and reported in ``docs/privacy.md``; privacy level 0.1 hides
  the substation groups.
"""

from __future__ import annotations

import dataclasses
import json
import re
from types import SimpleNamespace

import numpy as np
import pytest

from optim._errors import InputError
from optim.privacy.hardening import (HardeningConfig, asset_pseudonyms, bids_with_pseudonyms, harden, obscured_rows,
                                     paper_rows)
from tests.unit.test_privacy_attacks import HOURS, paper_linearizations

#: Requests as shares of each frame's upward offer (the offers follow the time frame).
REQUEST_SHARES = (0.2, 0.4, 0.6, 0.75)


@pytest.fixture(scope="module")
def frames():
    return paper_linearizations()


@pytest.fixture(scope="module")
def hardened(frames):
    return [harden(lin.package, lin.key, config=HardeningConfig(random_state=7)) for _, _, lin in frames]


def test_a_hardened_package_holds_rows_only_under_fresh_secret_ids(frames, hardened) -> None:
    (_, _, lin), first = frames[0], hardened[0]
    pkg = first.package
    assert pkg.style == "hardened" and pkg.bus_ids == () and pkg.branch_ids == ()
    for point in pkg.points:
        assert set(point.arrays()) == {"p_flex_mw", "a_per_mw", "b"}
    assert all(re.fullmatch(r"F[0-9a-f]{12}", f) for f in pkg.flex_ids)
    assert not set(pkg.flex_ids) & set(lin.package.flex_ids)
    again = harden(lin.package, lin.key, config=HardeningConfig(random_state=7))
    assert not set(again.package.flex_ids) & set(pkg.flex_ids)
    # far fewer rows than the paper style's every element, and no row that cannot bind
    assert sum(p.n_rows for p in pkg.points) < 0.05 * sum(len(paper_rows(p, lin.package, lin.key).b)
                                                         for p in lin.package.points)
    assert first.key.package_fingerprint == pkg.fingerprint()


def _box(pkg):
    return np.asarray(pkg.row_box_lower_mw), np.asarray(pkg.row_box_upper_mw)


@pytest.mark.parametrize("config", [HardeningConfig(random_state=3),
                                    HardeningConfig(privacy_level=0.1, noise_level=0.01, random_state=3)],
                         ids=["default", "flatten+noise"])
def test_the_hardened_rows_imply_the_paper_rows_within_the_box(frames, config) -> None:
    _, _, lin = frames[0]
    hard = harden(lin.package, lin.key, config=config)
    column = {f: k for k, f in enumerate(lin.key.flex_ids)}
    bus_to_paper = {b: column[f] for f, b in zip(lin.key.flex_ids, lin.key.flex_buses)}
    to_paper = np.array([bus_to_paper[b] for b in hard.key.flex_buses])  # hardened column -> paper column
    lo, hi = _box(hard.package)
    rng = np.random.default_rng(0)
    admitted = 0
    for k, point in enumerate(hard.package.points):
        rows = paper_rows(lin.package.points[k], lin.package, lin.key)
        x = lo + (hi - lo) * rng.random((3000, len(lo)))  # dispatches in the box, hardened columns
        x[:300] = np.clip(x[:300], None, 0) if k == 2 else x[:300]
        d_hard = x - point.p_flex_mw
        ok_hard = np.all(d_hard @ point.a_per_mw.T <= point.b + 1e-9, axis=1)
        d_paper = np.zeros_like(d_hard)
        d_paper[:, to_paper] = d_hard
        ok_paper = np.all(d_paper @ rows.a.T <= rows.b + 1e-9, axis=1)
        assert not np.any(ok_hard & ~ok_paper)
        admitted += int(ok_hard.sum())
    assert admitted > 0


def test_obscured_rows_keep_the_implication_for_any_dispatch_in_the_box() -> None:
    rng = np.random.default_rng(5)
    a = rng.normal(size=(6, 12)) * np.array([1.0, 0.01] * 6)
    b = np.abs(rng.normal(size=6)) + 0.5
    width = rng.random(12)
    a2, b2 = obscured_rows(a, b, width, flatten_share=0.2, noise_share=0.05, rng=rng)
    d = (2 * rng.random((5000, 12)) - 1) * width
    assert not np.any(np.all(d @ a2.T <= b2, axis=1) & ~np.all(d @ a.T <= b, axis=1))
    assert np.all(b2 <= b)


def _outcome(grid, scenario, lin, request):
    from optim.market import clear_market

    return clear_market(grid, scenario, request_mw=request, linearization=lin)


def _paper(lin):
    return SimpleNamespace(package=lin.package, key=lin.key, private_package=lin.package, runtime_s=0.0)


def test_secret_ids_change_no_result(frames) -> None:
    grid, scenario, lin = frames[0]
    one, two = (harden(lin.package, lin.key, config=HardeningConfig(random_state=11)) for _ in range(2))
    assert not set(one.package.flex_ids) & set(two.package.flex_ids)
    a, b = (_outcome(grid, scenario, h, 1.5).clearing for h in (one, two))
    assert a.cost_eur == pytest.approx(b.cost_eur, rel=1e-9)

    def by_bid(clearing):
        return sorted((x["bid_id"], round(x["activated_mw"], 9)) for x in clearing.activations)

    assert by_bid(a) == by_bid(b)


def test_secret_scales_and_orders_change_no_dispatch(frames) -> None:
    """Packages hardened with other secret seeds (other row scales, row and column orders) and the
    paper-style package clear a request with equal-price ties to the same dispatch per building.

    0.3 MW at weekday 18:00 is such a request: before the pieces of a bid were ordered by its rows
    (they followed the package's shuffled columns), four seeds gave four dispatches at the same
    cost, and Table I's voltage error at the DSO moved between 7.9e-5 and 9.3e-5 p.u.
    """
    from optim.market import building_activations

    grid, scenario, lin = frames[0]
    hardened = [harden(lin.package, lin.key, config=HardeningConfig(random_state=seed)) for seed in (3, 4, 5)]
    for request in (0.3, 1.5):
        outcomes = [_outcome(grid, scenario, h, request) for h in (_paper(lin), *hardened)]
        dispatches = [building_activations(o, scenario.bids) for o in outcomes]
        for outcome, dispatch in zip(outcomes[1:], dispatches[1:]):
            assert outcome.clearing.cost_eur == pytest.approx(outcomes[0].clearing.cost_eur, rel=1e-9)
            assert dispatch.keys() == dispatches[0].keys()
            for building, values in dispatch.items():
                assert values["activated_mw"] == pytest.approx(dispatches[0][building]["activated_mw"], abs=1e-6), building
            assert outcome.validation.vm_mae_pu == pytest.approx(outcomes[0].validation.vm_mae_pu, rel=1e-3)


@pytest.mark.parametrize("frame", range(len(HOURS)), ids=[f"hour {h}" for h in HOURS])
def test_the_hardened_package_clears_like_the_paper_style(frames, hardened, frame) -> None:
    grid, scenario, lin = frames[frame]
    offered_up_mw = float(scenario.bids.p_mw.clip(lower=0.0).sum())
    for request in (round(share * offered_up_mw, 3) for share in REQUEST_SHARES):
        paper = _outcome(grid, scenario, _paper(lin), request)
        hard = _outcome(grid, scenario, hardened[frame], request)
        assert paper.clearing.ok and hard.clearing.ok, request
        assert hard.clearing.delivered_mw == pytest.approx(paper.clearing.delivered_mw, abs=1e-6)
        assert hard.validation.n_violations == 0 == paper.validation.n_violations
        assert hard.clearing.cost_eur <= paper.clearing.cost_eur * 1.005 + 1e-9, request
        # Table I is measured DSO-side with the DSO's own linearization at the chosen point
        assert hard.validation.vm_mae_pu is not None


@pytest.fixture(scope="module")
def hardened_report(frames, hardened):
    from optim.privacy.audit import audit_package

    grid = frames[0][0]
    return audit_package(hardened[0].package, origins=hardened[0].origins, grid=grid,
                         other=hardened[1].package, other_origins=hardened[1].origins)


def test_the_attacks_fail_on_the_hardened_package_within_the_targets_it_meets(hardened_report, hardened) -> None:
    s = hardened_report.scores
    n_rows = hardened[0].package.points[0].n_rows
    assert s["edge_recall"] <= 0.1
    assert s["resistance_median_rel_error"] >= s["resistance_prior_median_rel_error"]  # no better than a prior
    assert s["rating_median_rel_error"] >= 0.5
    # The ids are fresh from secrets on every run, so the replay's hits are chance: about one in
    # 170-462 per id, ~1.6 expected among the ~300 ids. Ten or more would happen by chance with
    # probability ~1e-5 (Poisson): the replay does no better than guessing.
    n_ids = len(hardened[0].package.flex_ids) + n_rows
    assert s["id_inversion_rate"] * n_ids < 10
    # substation groups, feeders and row links are targets the default misses (docs/privacy.md):
    # the binding rows themselves tell them; they are still far below the paper-style package
    assert s["tree_cluster_recall"] < 0.5


def test_a_higher_privacy_level_hides_the_substation_groups(frames) -> None:
    from optim.privacy.audit import audit_package

    grid, _, lin = frames[0]
    default = harden(lin.package, lin.key, config=HardeningConfig(random_state=5))
    strong = harden(lin.package, lin.key, config=HardeningConfig(privacy_level=0.1, random_state=5))
    scores = [audit_package(h.package, origins=h.origins, grid=grid).scores["substation_ari"] for h in (default, strong)]
    from optim.privacy.audit import origins_from_dso_key

    paper = audit_package(lin.package, origins=origins_from_dso_key(lin.key), grid=grid).scores["substation_ari"]
    assert scores[1] <= 0.2 and scores[1] <= scores[0] < paper


def test_the_audit_command_reads_a_hardened_package_and_its_keys(frames, hardened, tmp_path, capsys) -> None:
    from app.cli import main
    from optim.package import SensitivityPackage

    from optim.privacy.hardening import load_hardened

    paths = [hardened[k].save(tmp_path / f"hard_h{h}.zip") for k, h in enumerate(HOURS)]
    assert SensitivityPackage.load(paths[0]).fingerprint() == hardened[0].package.fingerprint()
    back = load_hardened(paths[0])
    assert back.origins == hardened[0].origins and back.key == hardened[0].key
    assert back.private_package.fingerprint() == hardened[0].private_package.fingerprint()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("hard_h18")) == [
        "hard_h18.zip", "hard_h18.zip.dso-key.json", "hard_h18.zip.dso-paper.zip", "hard_h18.zip.privacy-key.json"]
    assert main(["audit", "--package", str(paths[0]), "--link-with", str(paths[1]), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["style"] == "hardened" and summary["id_inversion_rate"] < 0.035  # chance, see above
    assert summary["edge_recall"] <= 0.1 and summary["row_link_rate"] is not None


def test_asset_pseudonyms_are_stable_and_carry_no_geography(frames) -> None:
    from optim.privacy.audit import audit_package

    grid, scenario, lin = frames[0]
    names = asset_pseudonyms(lin.package.flex_of_asset, "dso secret")
    assert names == asset_pseudonyms(lin.package.flex_of_asset, "dso secret")
    assert len(set(names.values())) == len(names)
    hard = harden(lin.package, lin.key, config=HardeningConfig(pseudonymize_assets=True, asset_secret="dso secret",
                                                               random_state=2))
    assert set(hard.package.flex_of_asset) == set(names.values())
    report = audit_package(hard.package, origins=hard.origins, grid=grid)
    assert report.scores["asset_id_lon_rank_corr"] <= 0.3
    # bids naming the pseudonyms clear exactly like the plain ids (same seed: same rows)
    plain = harden(lin.package, lin.key, config=HardeningConfig(random_state=2))
    renamed = dataclasses.replace(scenario, bids=bids_with_pseudonyms(scenario.bids, names))
    a = _outcome(grid, scenario, plain, 1.5)
    b = _outcome(grid, renamed, hard, 1.5)
    assert b.clearing.cost_eur == pytest.approx(a.clearing.cost_eur, rel=1e-9)
    assert b.validation.n_violations == 0 == a.validation.n_violations


@pytest.mark.parametrize("kwargs, words", [({"privacy_level": -0.1}, "--privacy-level"),
                                           ({"privacy_level": float("nan")}, "--privacy-level"),
                                           ({"noise_level": -1.0}, "noise"),
                                           ({"pseudonymize_assets": True}, "asset_secret")])
def test_bad_settings_are_refused_in_one_clear_line(kwargs, words) -> None:
    with pytest.raises(InputError, match=re.escape(words)):
        HardeningConfig(**kwargs)


def test_a_hardened_package_cannot_be_hardened_again(hardened) -> None:
    with pytest.raises(InputError, match="paper-style"):
        harden(hardened[0].package, hardened[0].key)


def test_the_tso_skips_screening_rows_the_dso_screened_and_clears_the_same(frames, hardened, monkeypatch) -> None:
    """A hardened package's rows were screened within its box: the TSO's own screening would keep them all."""
    from optim.tso import clearing
    from optim.tso.bids import bids_from_frame

    _, scenario, _ = frames[0]
    package = hardened[0].package
    bids = bids_from_frame(scenario.bids, package=package)
    pieces = clearing._pieces(package, bids)
    assert clearing._screened_by_the_dso(package, pieces)
    fewer = bids_from_frame(scenario.bids.iloc[: len(scenario.bids) // 2], package=package)
    assert not clearing._screened_by_the_dso(package, clearing._pieces(package, fewer))  # another box: screened
    skipped = [clearing.clear_milp(package, bids, r) for r in (0.6, 1.2)]
    monkeypatch.setattr(clearing, "_screened_by_the_dso", lambda *_: False)
    screened = [clearing.clear_milp(package, bids, r) for r in (0.6, 1.2)]
    for a, b in zip(skipped, screened):
        assert a.ok and b.ok and a.stats["rows_screened"] == b.stats["rows_screened"] == 0
        assert a.cost_eur == pytest.approx(b.cost_eur, rel=1e-9) and a.chosen_point == b.chosen_point
        assert np.allclose(a.p_flex_mw, b.p_flex_mw, atol=1e-9)


def test_paper_rows_within_a_box_are_the_screened_full_rows_with_their_origins(frames) -> None:
    """paper_rows(box=...) forms only the rows that can bind: the same rows, in the same order and
    with the same elements and tags, as forming every row and screening them (what the hardening
    did before; bit for bit)."""
    from optim.package import rows_that_can_bind
    from optim.privacy.hardening import paper_rows

    for _, _, lin in frames:
        package = lin.package
        lo, hi = np.asarray(package.row_box_lower_mw), np.asarray(package.row_box_upper_mw)
        kept = 0
        for point in package.points:
            full = paper_rows(point, package, lin.key)
            box = (lo - point.p_flex_mw, hi - point.p_flex_mw)
            keep = np.flatnonzero(rows_that_can_bind(full.a, full.b, *box))
            fast = paper_rows(point, package, lin.key, box=box)
            assert np.array_equal(fast.a, full.a[keep]) and np.array_equal(fast.b, full.b[keep])
            assert fast.element == tuple(full.element[i] for i in keep) and fast.tag == tuple(full.tag[i] for i in keep)
            kept += len(keep)
        assert 0 < kept  # the case is not empty
