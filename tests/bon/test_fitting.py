"""Halving schedules fitted on recorded runs: enumeration, the fitted choice against brute force, cross-fitting."""

from __future__ import annotations

import itertools
import json
from math import comb

import numpy as np
import pytest

from noisyclip_metrics.bon import HalvingPolicy, compute_bon, crossfit_halving, fit_halving_schedule, schedule_cost
from noisyclip_metrics.bon.fitting import halving_schedules
from noisyclip_metrics.bon.offline import load_run, plan_scores
from noisyclip_metrics.errors import InputError
from tests.bon.test_offline import T, make_store

STEPS = 8  # longer trajectories than the offline toy so that many schedules fit a budget


@pytest.fixture()
def run(tmp_path):
    rng = np.random.default_rng(3)
    judge = rng.random((40, 6))
    noise = rng.normal(size=(40, 6, STEPS + 1))
    scores = {
        "settling": judge[:, :, None] + noise * np.linspace(1.5, 0.0, STEPS + 1),  # converges to the judge
        "perfect": np.repeat(judge[:, :, None], STEPS + 1, axis=2),
    }
    scores["settling"][0, 2, 5] = np.nan  # prompt 0 misses one score: it cannot be used
    timing = {"denoise_seconds": 8.0, "candidates": 240, "steps": STEPS, "score_seconds/settling": 0.9}
    store = make_store(tmp_path / "results", scores, judge, timing=timing, steps=STEPS)
    arrays = load_run(store, "run1")
    return store, arrays, judge, np.asarray(arrays.prompt_ids) != "p0"  # prompts with every score, in group order


def test_schedules_are_every_increasing_tuple_of_one_step_per_halving():
    assert list(halving_schedules(2, 2)) == [(0,), (1,), (2,)]
    six = list(halving_schedules(6, 20))  # 6 -> 3 -> 2 -> 1
    assert len(six) == comb(21, 3) == len(set(six)) and all(a < b < c for a, b, c in six)
    assert len(list(halving_schedules(8, T))) == comb(T + 1, 3)  # 8 -> 4 -> 2 -> 1
    for bad in ((1, 4), (6, 0), (True, 4)):
        with pytest.raises(InputError, match=r"n: expected|num_steps: expected"):
            halving_schedules(*bad)


def test_fitted_schedule_is_the_best_within_budget_and_beats_every_linear_row(run):
    store, arrays, judge, ok = run
    table = compute_bon(store, ns=[6], write=False).to_pylist()
    for budget in (0.35, 0.5, 0.7):
        fit = fit_halving_schedule(arrays, "settling", 6, budget)
        assert fit.cost_fraction <= budget and fit.prompts == 39 and fit.policy() == HalvingPolicy(fit.schedule)
        picks = plan_scores(arrays, "settling", 6, list(zip(fit.schedule, (3, 2, 1), strict=True)))
        assert fit.judge_score == pytest.approx(picks[ok].mean())
        for r in table:  # the linear family k, 2k, 3k is among the candidates
            if r["scorer"] == "settling" and r["policy"] == "halving" and r["cost_fraction"] <= budget:
                linear = plan_scores(arrays, "settling", 6, _decisions(r["schedule"]))
                assert fit.judge_score >= linear[ok].mean() - 1e-12
        brute = max(
            plan_scores(arrays, "settling", 6, list(zip(s, (3, 2, 1), strict=True)))[ok].mean()
            for s in itertools.combinations(range(STEPS + 1), 3)
            if _cost(fit, s, arrays) <= budget + 1e-9
        )
        assert fit.judge_score == pytest.approx(brute)
    perfect = fit_halving_schedule(arrays, "perfect", 6, 0.5)  # every schedule picks the best: the cheapest wins
    assert perfect.judge_score == pytest.approx(judge.max(axis=1).mean()) and perfect.schedule == (0, 1, 2)


def _decisions(schedule: str) -> list[tuple[int, int]]:
    steps = [int(x) for x in schedule.split(",")]
    return list(zip(steps, (*(3, 2, 1)[: len(steps) - 1], 1), strict=True))


def _cost(fit, schedule, arrays) -> float:
    from noisyclip_metrics.bon.offline import plan_cost, run_costs

    den, sc = schedule_cost(6, STEPS, list(zip(schedule, (3, 2, 1), strict=True)))
    return plan_cost(6, STEPS, den, sc * run_costs(arrays)["settling"])


def test_fit_on_a_subset_of_prompts(run):
    _, arrays, _, ok = run
    first = np.flatnonzero(ok)[:20]
    half = fit_halving_schedule(arrays, "settling", 6, 0.5, prompts=[*first, int(np.flatnonzero(~ok)[0])])
    assert half.prompts == 20  # the incomplete prompt does not count
    full = fit_halving_schedule(arrays, "settling", 6, 0.5)
    on_first = {
        f.schedule: plan_scores(arrays, "settling", 6, list(zip(f.schedule, (3, 2, 1), strict=True)))[first].mean()
        for f in (half, full)
    }
    assert half.judge_score == pytest.approx(on_first[half.schedule])
    assert on_first[half.schedule] >= on_first[full.schedule] - 1e-12
    free = fit_halving_schedule(arrays, "settling", 6, 0.5, costs={"settling": 0.0})  # overrides the run's timing
    assert free.cost_fraction == pytest.approx(
        schedule_cost(6, STEPS, list(zip(free.schedule, (3, 2, 1), strict=True)))[0] / 48
    )


def test_crossfit_is_deterministic_and_leaves_out_incomplete_prompts(run):
    _, arrays, judge, ok = run
    a = crossfit_halving(arrays, "settling", 6, 0.5, folds=2, repeats=5, seed=1)
    b = crossfit_halving(arrays, "settling", 6, 0.5, folds=2, repeats=5, seed=1)
    assert np.array_equal(a.values, b.values, equal_nan=True) and a.choices == b.choices
    assert np.isnan(a.values[~ok]).all() and not np.isnan(a.values[ok]).any()
    assert sum(a.choices.values()) == 10 and list(a.choices.values()) == sorted(a.choices.values(), reverse=True)
    assert a.judge_score <= judge.max(axis=1).mean() + 1e-12
    perfect = crossfit_halving(arrays, "perfect", 6, 0.5, repeats=3)  # the best schedule everywhere
    assert perfect.judge_score == pytest.approx(judge.max(axis=1).mean()) and list(perfect.choices) == [(0, 1, 2)]


def test_bad_schedule_fitting_input(run):
    _, arrays, _, ok = run
    with pytest.raises(InputError, match="scorer: run run1 has no scores of 'nope'"):
        fit_halving_schedule(arrays, "nope", 6, 0.5)
    with pytest.raises(InputError, match=r"no halving schedule of 'settling' for N = 6 costs at most 0.1"):
        fit_halving_schedule(arrays, "settling", 6, 0.1)
    for budget in (0.0, float("nan"), True):
        with pytest.raises(InputError, match="budget: expected a cost fraction > 0"):
            fit_halving_schedule(arrays, "settling", 6, budget)
    with pytest.raises(InputError, match=r"prompts: expected indices in 0..39"):
        fit_halving_schedule(arrays, "settling", 6, 0.5, prompts=[40])
    with pytest.raises(InputError, match="prompts: none of them"):
        fit_halving_schedule(arrays, "settling", 6, 0.5, prompts=np.flatnonzero(~ok))
    with pytest.raises(InputError, match="n: no prompt of run run1 has 7 judged seeds"):
        fit_halving_schedule(arrays, "settling", 7, 0.5)
    with pytest.raises(InputError, match="folds: expected an int >= 2"):
        crossfit_halving(arrays, "settling", 6, 0.5, folds=1)
    with pytest.raises(InputError, match="repeats: expected an int >= 1"):
        crossfit_halving(arrays, "settling", 6, 0.5, repeats=0)
    with pytest.raises(InputError, match="folds: expected at most 39"):
        crossfit_halving(arrays, "settling", 6, 0.5, folds=40)


def test_cli_fit_prints_the_fit_and_its_crossfit(run, tmp_path, capsys):
    from noisyclip_metrics.bon import ThresholdCalibration, crossfit_threshold, fit_threshold_policy
    from noisyclip_metrics.cli import main

    store, arrays, _, _ = run
    assert (
        main(["bon", "fit", "--results", str(store.root), "--scorer", "settling", "--budget", "0.5", "--crossfit", "3"])
        == 0
    )
    out = json.loads(capsys.readouterr().out)
    fit = fit_halving_schedule(arrays, "settling", 6, 0.5)
    assert out["schedule"] == list(fit.schedule) and out["judge_score"] == round(fit.judge_score, 4)
    assert out["crossfit_judge_score"] == round(crossfit_halving(arrays, "settling", 6, 0.5, repeats=3).judge_score, 4)
    cal = tmp_path / "cal.json"
    assert (
        main(
            [
                "bon",
                "fit",
                "--results",
                str(store.root),
                "--policy",
                "threshold",
                "--scorer",
                "settling",
                "--budget",
                "0.6",
                "--crossfit",
                "2",
                "--out",
                str(cal),
            ]
        )
        == 0
    )
    out = json.loads(capsys.readouterr().out)
    fit = fit_threshold_policy(arrays, "settling", 6, 0.6)
    assert (out["quantile"], out["min_step"], out["every"]) == (fit.calibration.quantile, fit.min_step, fit.every)
    assert ThresholdCalibration.load(cal) == fit.calibration and out["calibration"] == str(cal)
    cross = crossfit_threshold(arrays, "settling", 6, 0.6, repeats=2)
    assert out["crossfit_cost_fraction"] == round(cross.cost_fraction, 4)
    assert main(["bon", "fit", "--results", str(store.root), "--scorer", "settling", "--budget", "0.05"]) == 2
    err = capsys.readouterr().err
    assert "no halving schedule of 'settling'" in err and len(err.strip().splitlines()) == 1
    assert main(["bon", "fit", "--results", str(store.root), "--budget", "0.5", "--out", str(cal)]) == 2
    assert "--out: writes one threshold calibration" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------------------- threshold
LIVE_T, LIVE_N = 6, 6


@pytest.fixture(scope="module")
def live():
    """A tiny SD pipeline, a tiny CLIP and every step's scores of 6 seeds' full trajectories, per scorer."""
    import tempfile

    import torch

    from noisyclip_metrics.diffusion.trajectory import capture_trajectories
    from noisyclip_metrics.scoring.model import TINY_TEST_CONFIG, NoisyCLIPModel
    from noisyclip_metrics.scoring.scorers import ScoreInputs, build_scorer
    from noisyclip_metrics.testing import tiny_pipeline

    torch.set_num_threads(1)
    pipe = tiny_pipeline("sd", tempfile.mkdtemp())
    model = NoisyCLIPModel.from_config(TINY_TEST_CONFIG, preview="sd1", seed=0)
    prompt, seeds = "two red circles above a blue square", list(range(LIVE_N))
    batch = capture_trajectories(pipe, [prompt] * LIVE_N, seeds, num_inference_steps=LIVE_T, height=32, width=32)
    scorers, recorded = {}, {}
    for name in ("clip", "clip-x0"):
        scorers[name] = build_scorer(name, model=model)
        recorded[name] = (
            torch.stack(
                [
                    scorers[name].score(
                        ScoreInputs(
                            prompts=[prompt] * LIVE_N,
                            latents=batch.latents[:, k],
                            x0=batch.x0[:, k],
                            latent_scale=batch.latent_scale[k].expand(LIVE_N),
                        )
                    )
                    for k in range(LIVE_T + 1)
                ],
                dim=1,
            )
            .double()
            .numpy()
        )
    return pipe, scorers, recorded, prompt, seeds


@pytest.mark.parametrize("name", ["clip", "clip-x0"])
@pytest.mark.parametrize(("gap", "min_step", "every", "m"), [(-0.6, 1, 1, 1), (-1.2, 2, 2, 1), (-0.3, 0, 1, 2)])
def test_replayed_threshold_runs_match_the_live_policy(live, name, gap, min_step, every, m):
    from noisyclip_metrics.bon import EarlyBestOfN, ThresholdCalibration, ThresholdPolicy
    from noisyclip_metrics.bon.calibration import simulate_threshold

    pipe, scorers, recorded, prompt, seeds = live
    gaps = (gap,) * LIVE_T + (0.0,)
    cal = ThresholdCalibration(scorer=name, n=LIVE_N, quantile=0.1, num_steps=LIVE_T, gaps=gaps)
    result = EarlyBestOfN(pipe, scorers[name], ThresholdPolicy(cal, m=m, min_step=min_step, every=every))(
        prompt, n=LIVE_N, seeds=seeds, num_inference_steps=LIVE_T, height=32, width=32
    )
    pick, den, sc = simulate_threshold(recorded[name][None], gaps, min_step, every, m, name == "clip-x0")
    assert (int(den[0]), int(sc[0])) == (result.denoiser_evals, result.scorer_evals)
    assert seeds[int(pick[0])] == result.seeds[0]
    assert result.denoiser_evals < LIVE_N * LIVE_T  # something was dropped: the replay was put to the test


def test_threshold_replay_bad_input():
    from noisyclip_metrics.bon.calibration import simulate_threshold

    with pytest.raises(InputError, match=r"scores: expected a \(G, N, T \+ 1\) array"):
        simulate_threshold(np.zeros((2, 3)), (0.0, 0.0))
    with pytest.raises(InputError, match=r"scores: expected a \(G, N, T \+ 1\) array"):
        simulate_threshold(np.full((1, 2, 3), np.nan), (0.0,) * 3)
    with pytest.raises(InputError, match=r"gaps: expected T \+ 1 = 3 values, got 2"):
        simulate_threshold(np.zeros((1, 2, 3)), (0.0, 0.0))
    with pytest.raises(InputError, match="min_step, every, m: expected"):
        simulate_threshold(np.zeros((1, 2, 3)), (0.0,) * 3, every=0)


def test_fitted_threshold_is_the_best_grid_setting_within_budget(run):
    from noisyclip_metrics.bon import ThresholdPolicy, crossfit_threshold, fit_threshold_policy
    from noisyclip_metrics.bon.calibration import gap_quantiles, normalised_gaps, simulate_threshold
    from noisyclip_metrics.bon.fitting import ThresholdGrid

    _, arrays, _judge, ok = run
    grid = ThresholdGrid(quantiles=(0.05, 0.2, 0.4), min_steps=(1, 3, 9), every=(1, 2))  # 9 >= T is skipped
    fit = fit_threshold_policy(arrays, "settling", 6, 0.6, grid)
    c = 0.9 / (240 * (STEPS + 1)) / (8.0 / (240 * STEPS))  # the run's timing
    s, j = arrays.scores["settling"][ok], judge_in_group_order(arrays)[ok]
    brute = []
    for q in grid.quantiles:
        gaps = gap_quantiles(normalised_gaps(s, j), q)
        for k in (1, 3):
            for e in (1, 2):
                pick, den, sc = simulate_threshold(s, gaps, k, e)
                cost = ((den + sc * c) / (6 * STEPS)).mean()
                if cost <= 0.6:
                    brute.append((j[np.arange(len(j)), pick].mean(), -cost, (q, k, e)))
    best = max(brute)
    assert fit.judge_score == pytest.approx(best[0]) and fit.cost_fraction == pytest.approx(-best[1])
    assert (fit.calibration.quantile, fit.min_step, fit.every) == best[2] and fit.prompts == 39
    assert fit.policy() == ThresholdPolicy(fit.calibration, min_step=fit.min_step, every=fit.every)
    cross = crossfit_threshold(arrays, "settling", 6, 0.6, grid, repeats=4)
    assert np.isnan(cross.values[~ok]).all() and np.isnan(cross.costs[~ok]).all()
    assert 0 < cross.cost_fraction < 1 and sum(cross.choices.values()) == 8
    with pytest.raises(InputError, match=r"no threshold setting of 'settling' has a mean cost at most 0.05"):
        fit_threshold_policy(arrays, "settling", 6, 0.05, grid)


def test_threshold_needs_scores_at_every_step(tmp_path):
    from noisyclip_metrics.bon import fit_threshold_policy

    judge = np.random.default_rng(2).random((4, 6))
    every_other = np.where(np.arange(STEPS + 1) % 2 == 0, judge[:, :, None], np.nan)  # scored at even steps only
    store = make_store(tmp_path / "r", {"even": every_other}, judge, steps=STEPS)
    arrays = load_run(store, "run1")
    with pytest.raises(InputError, match="the threshold policy needs scores at every step"):
        fit_threshold_policy(arrays, "even", 6, 0.9)
    assert set(fit_halving_schedule(arrays, "even", 6, 0.9).schedule) <= {0, 2, 4, 6, 8}  # halving uses what exists


def judge_in_group_order(arrays):
    prow, pcol = arrays.groups(6)
    return arrays.judge[prow[:, None], pcol]
