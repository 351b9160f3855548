"""Paper B OPFs: the surrogate OPF and the full AC-OPF solve, the feasibility check, the benchmark, the CLI."""

from __future__ import annotations

import argparse
from dataclasses import replace

import numpy as np
import pytest

from optim._errors import InputError
from optim.mlopf.benchmark import BenchmarkConfig, BenchmarkResult, benchmark_from_surrogates
from optim.mlopf.model_store import TrainConfig, TrainedModels, load_models, models_from_training, save_models
from optim.mlopf.opf import (CostSet, OpfStatus, base_cost_set, cost_sets_from_seed, feasibility_from_dispatch, full_opf_from_system,
                             surrogate_opf_from_system)
from optim.mlopf.polytope import PolytopeConfig
from optim.mlopf.systems import integrated_system_from_cases


@pytest.fixture(scope="module")
def system():
    return integrated_system_from_cases()


@pytest.fixture(scope="module")
def models(system) -> TrainedModels:
    small = PolytopeConfig(n_hidden=8, max_iter=80, max_iter_final=80, taus=(0.1,))
    config = TrainConfig(samples=1500, seed=0, polytope_ds1=small, polytope_ds2=replace(small, weight_infeasible=2.0))
    trained, _ = models_from_training(config, system=system, progress=False)
    return trained


@pytest.fixture(scope="module")
def opfs(system, models):
    return surrogate_opf_from_system(system, models.surrogates), full_opf_from_system(system)


def test_training_reports_metrics(models):
    assert set(models.classifier) == {"DS1", "DS2", "DS3"}
    assert models.classifier["DS1"].accuracy > 0.97
    assert models.classifier["DS2"].specificity > 0.8
    assert models.regression["DS1"].rmse < 5e-4 and models.regression["DS2"].rmse < 5e-4
    assert models.surrogate("DS2").regression.coef.shape == (91, 4)


def test_both_opfs_solve_and_agree(system, opfs):
    proposed, full = opfs
    costs = base_cost_set(system)
    rp, rf = proposed.solve(costs), full.solve(costs)
    assert rp.status is OpfStatus.OPTIMAL and rf.status is OpfStatus.OPTIMAL
    assert rp.p_dg_mw.shape == (11,) and rf.p_dg_mw.shape == (11,)
    # the surrogate OPF is a conservative approximation: close to, and not much below, the full OPF
    assert abs(rp.cost_eur_per_h - rf.cost_eur_per_h) / rf.cost_eur_per_h < 0.02
    # re-solve with other costs on the same built NLP
    other = cost_sets_from_seed(system, 1, random_state=4)[0]
    assert proposed.solve(other).status is OpfStatus.OPTIMAL
    # the full OPF's own dispatch passes the full-system check
    chk = feasibility_from_dispatch(system, rf, costs, merged=full.merged)
    assert chk.converged and chk.feasible
    assert np.isclose(chk.cost_eur_per_h, rf.cost_eur_per_h, rtol=1e-5)


def test_feasibility_check_catches_an_infeasible_dispatch(system, opfs):
    _, full = opfs
    costs = base_cost_set(system)
    rf = full.solve(costs)
    # DS1's DG at full P and Q with a high PCC voltage: over-voltage inside DS1
    p_dg, q_dg = rf.p_dg_mw.copy(), rf.q_dg_mvar.copy()
    p_dg[0], q_dg[0] = 2.0, 2.0
    vm = rf.vm_pu.copy()
    vm[[g.bus for g in system.generators]] = 1.05
    bad = replace(rf, p_dg_mw=p_dg, q_dg_mvar=q_dg, vm_pu=vm)
    chk = feasibility_from_dispatch(system, bad, costs, merged=full.merged)
    assert not chk.feasible
    assert chk.violations["vm_pu"] > 1e-3
    # a DG outside its PQ chart (DS3's polygons) is caught too
    p3 = rf.p_dg_mw.copy()
    q3 = rf.q_dg_mvar.copy()
    chart = system.ds_by_name("DS3").charts[0]
    corner = [(p, q) for p in (0.0, 2.0) for q in (0.0, 2.0) if not chart.contains(p, q)][0]
    p3[6], q3[6] = corner
    chk3 = feasibility_from_dispatch(system, replace(rf, p_dg_mw=p3, q_dg_mvar=q3), costs, merged=full.merged)
    assert not chk3.feasible and chk3.violations["pq_chart"] > 0


def test_benchmark_and_roundtrips(system, models, tmp_path):
    result = benchmark_from_surrogates(system, models.surrogates, config=BenchmarkConfig(n_cost_sets=2, random_state=1), progress=False)
    s = result.summary()
    assert s["cost_sets"] == 2 and s["full_solved_ratio"] == 1.0 and s["proposed_solved_ratio"] == 1.0
    assert np.all(np.isfinite(result.cost_diff_percent))
    assert 0.0 <= s["feasible_ratio"] <= 1.0
    back = BenchmarkResult.load(result.save(tmp_path / "b.json"))
    assert np.allclose(back.cost_diff_percent, result.cost_diff_percent)
    save_models(models, tmp_path)
    again = load_models(tmp_path)
    assert again.summary() == models.summary()
    assert CostSet.from_dict(base_cost_set(system).to_dict()).vector().size == 2 * 6 + 2 * 11


def test_bad_input(system, models):
    with pytest.raises(InputError):
        cost_sets_from_seed(system, 0)
    with pytest.raises(InputError):
        surrogate_opf_from_system(system, models.surrogates[:1])
    with pytest.raises(InputError):
        models_from_training(TrainConfig(samples=10))


def test_cli_rejects_bad_input(tmp_path):
    from app.commands import mlopf

    parser = argparse.ArgumentParser()
    mlopf.register(parser.add_subparsers())
    for argv in (["mlopf", "train", "--samples", "-5"], ["mlopf", "benchmark", "--cost-sets", "0", "--json"]):
        with pytest.raises(SystemExit):  # refused by the parser, before any work (tests/unit/test_cli_mlopf.py)
            parser.parse_args(argv)
    args = parser.parse_args(["mlopf", "benchmark", "--cost-sets", "2", "--models", str(tmp_path)])
    with pytest.raises(FileNotFoundError):
        args.func(args)
