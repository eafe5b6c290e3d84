"""Budget-matched search: plans and their cost, replay against brute force, the planner, curves, the CLI and the
live engine against its replay."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from noisyclip_metrics.bon import EarlyBestOfN, FunnelPolicy, build_policy, schedule_cost
from noisyclip_metrics.bon.offline import load_run, plan_scores
from noisyclip_metrics.bon.search import (
    FAMILIES,
    SEARCH_COLUMNS,
    SearchPlan,
    SearchSpace,
    crossfit_search,
    fit_search,
    search_curves,
    search_document,
    search_plans,
)
from noisyclip_metrics.cli import main
from noisyclip_metrics.errors import InputError, SchemaError
from noisyclip_metrics.leaderboard.build import read_search
from tests.bon.test_offline import T, evaluated, make_store  # noqa: F401 (evaluated: a fixture)

pytestmark = pytest.mark.usefixtures("one_thread")

STEPS, P, S = 8, 30, 12


@pytest.fixture()
def store(tmp_path):
    """30 prompts x 12 seeds: ``perfect`` ranks as the judge at every step, ``settling`` converges to it, ``noise``
    never does; ``clip-final`` (final image only) is the judge plus a little noise."""
    rng = np.random.default_rng(5)
    judge = rng.random((P, S))
    noise = rng.normal(size=(P, S, STEPS + 1))
    nan = np.full((P, S, STEPS + 1), np.nan)
    final = nan.copy()
    final[:, :, STEPS] = judge + 0.3 * rng.normal(size=(P, S))
    scores = {
        "perfect": np.repeat(judge[:, :, None], STEPS + 1, axis=2),
        "settling": judge[:, :, None] + noise * np.linspace(1.0, 0.0, STEPS + 1),
        "noise": rng.normal(size=(P, S, STEPS + 1)),
        "clip-final": final,
    }
    timing = {"denoise_seconds": 8.0, "candidates": P * S, "steps": STEPS}
    timing.update({f"score_seconds/{n}": 0.5 for n in ("perfect", "settling", "noise")})
    timing["score_seconds/clip-final"] = 0.05
    return make_store(tmp_path / "results", scores, judge, timing=timing, steps=STEPS)


@pytest.fixture()
def space(store):
    return SearchSpace(load_run(store, "run1"), max_n=S)


# ---------------------------------------------------------------------------------------------------------- plans
def test_plans_name_their_family_and_cost_what_schedule_cost_counts():
    assert SearchPlan(6, ((3, 1),)).family == "one-shot"
    assert SearchPlan(12, ((1, 6), (2, 3), (3, 2), (4, 1))).family == "halving"
    assert SearchPlan(12, ((1, 3), (4, 1))).family == "funnel"
    assert SearchPlan(12, ((1, 3),), cascade=True).family == "cascade"
    plan = SearchPlan(24, ((2, 6), (6, 1)))
    denoiser, scorings = schedule_cost(24, 20, plan.decisions, needs_model_output=True)
    assert (denoiser, scorings) == (24 * 3 + 6 * 4 + 1 * 13, 30)
    assert plan.spent(20, 0.5, reads_x0=True) == pytest.approx((denoiser + 30 * 0.5) / 20)
    cascade = SearchPlan(8, ((2, 3),), cascade=True)
    assert cascade.spent(10, 0.0, final_cost=2.0) == pytest.approx((8 * 2 + 3 * 8 + 3 * 2.0) / 10)
    assert cascade.label == "8→3@2+final" and cascade.policy() == build_policy("one-shot", k=2, m=3)
    assert plan.policy() == FunnelPolicy(schedule=(2, 6), survivors=(6, 1))


@pytest.mark.parametrize(
    ("n", "decisions", "cascade", "message"),
    [
        (1, ((0, 1),), False, "n: expected an integer >= 2"),
        (6, (), False, "decisions: expected at least one"),
        (6, ((3, 2), (2, 1)), False, "schedule: expected strictly increasing"),
        (6, ((1, 3), (2, 3)), False, "survivors: expected strictly decreasing"),
        (6, ((1, 6), (2, 1)), False, "survivors: the first count must be below n"),
        (6, ((1, 2),), False, "a plan needs one survivor at the end"),
        (6, ((1, 1),), True, "a cascade needs two or more survivors"),
    ],
)
def test_bad_plans_are_refused(n, decisions, cascade, message):
    with pytest.raises(InputError, match=message):
        SearchPlan(n, decisions, cascade=cascade)


def test_search_plans_cover_the_families_within_the_allowed_steps():
    plans = search_plans(STEPS, [6, 12], steps=range(0, STEPS, 2))
    assert {p.family for p in plans} == set(FAMILIES)
    assert all(k % 2 == 0 and k < STEPS for p in plans for k in p.steps)
    assert len({(p.n, p.decisions) for p in plans}) == len(plans)  # no plan twice
    halving = [p for p in plans if p.n == 12 and p.family == "halving"]
    assert halving and all([c for _, c in p.decisions] == [6, 3, 2, 1] for p in halving)


def test_funnel_policy_checks_and_keeps():
    with pytest.raises(InputError, match="one count per step"):
        FunnelPolicy(schedule=(1, 2), survivors=(3,))
    with pytest.raises(InputError, match="strictly increasing"):
        FunnelPolicy(schedule=(2, 2), survivors=(3, 1))
    policy = FunnelPolicy(schedule=(1, 3), survivors=(3, 1))
    with pytest.raises(InputError, match="one of the schedule's steps"):
        policy.keep(2, [0.1, 0.2], 4)
    with pytest.raises(InputError, match="below n"):
        policy.validate(3, 4)
    assert policy.keep(1, [0.1, 0.9, 0.5, 0.7], 4) == [1, 3, 2]


# ---------------------------------------------------------------------------------------------------------- replay
def _brute_pick(scores: np.ndarray, final: np.ndarray, plan: SearchPlan) -> int:
    """One prompt's pick, by hand: sort the alive candidates at each decision (ties: lower seed)."""
    alive = list(range(plan.n))
    for step, keep in plan.decisions:
        alive = sorted(alive, key=lambda j: (-scores[j, step], j))[:keep]
    if plan.cascade:
        return max(alive, key=lambda j: (final[j], -j))
    return alive[0]


def test_replay_equals_a_hand_simulation_and_the_offline_engine(store, space):
    arrays = load_run(store, "run1")
    rng = np.random.default_rng(0)
    plans = search_plans(STEPS, [6, 9, 12])
    for index in rng.choice(len(plans), size=40, replace=False):
        plan = plans[index]
        for scorer in ("settling", "noise"):
            values = space.values(scorer, plan)
            raw, final = arrays.scores[scorer], arrays.scores["clip-final"][:, :, STEPS]
            picks = [_brute_pick(raw[p], final[p], plan) for p in range(P)]
            np.testing.assert_array_equal(values, arrays.judge[np.arange(P), picks])
    # the offline BoN engine replays the same plan to the same picks
    plan = SearchPlan(6, ((2, 3), (4, 1)))
    np.testing.assert_array_equal(space.values("settling", plan), plan_scores(arrays, "settling", 6, plan.decisions))


def test_best_of_and_oracle(store, space):
    arrays = load_run(store, "run1")
    final = arrays.scores["clip-final"][:, :, STEPS]
    np.testing.assert_array_equal(space.best_of(4), arrays.judge[np.arange(P), final[:, :4].argmax(axis=1)])
    np.testing.assert_array_equal(space.oracle(S), arrays.judge.max(axis=1))
    assert space.best_of_spent(1) == 1 and space.best_of_spent(4) > 4
    with pytest.raises(InputError, match=r"b: expected 1\.\.12"):
        space.best_of(13)


# ---------------------------------------------------------------------------------------------------------- planner
def test_fit_is_the_best_plan_within_the_budget(space):
    budget = 3.0
    found = space.candidates(budget, ["settling"])
    assert found and all(spent <= budget + 1e-9 and plan.n >= budget for _, plan, spent in found)
    fit = fit_search(space, budget, ["settling"])
    best = max(np.mean(space.values("settling", plan)) for _, plan, _ in found)
    assert fit.judge_score == pytest.approx(best) and fit.spent <= budget
    assert fit.prompts == P and fit.plan.n >= budget
    only = fit_search(space, budget, ["settling"], families=["one-shot"])
    assert only.plan.family == "one-shot" and only.judge_score <= fit.judge_score + 1e-12
    with pytest.raises(InputError, match="families: expected some of"):
        space.candidates(budget, families=["beam"])
    with pytest.raises(InputError, match="no plan of"):
        fit_search(space, 0.05)


def test_a_scorer_that_ranks_early_beats_full_cost_best_of_b_and_noise_does_not(space):
    """The point of the search: with the budget of Best-of-3, a scorer that ranks well at step 0 finishes the best
    of 12 candidates; a scorer of noise picks at random among them."""
    perfect = crossfit_search(space, 3.0, ["perfect"], repeats=4)
    noise = crossfit_search(space, 3.0, ["noise"], repeats=4)
    reference = space.best_of(3).mean()
    assert perfect.judge_score > reference + 0.1
    assert perfect.judge_score == pytest.approx(space.oracle(S).mean(), abs=0.02)
    assert noise.judge_score < reference
    again = crossfit_search(space, 3.0, ["perfect"], repeats=4)
    np.testing.assert_array_equal(perfect.values, again.values)  # deterministic
    assert sum(perfect.choices.values()) == 4 * 2


def test_curves_have_every_row_and_honest_references(space):
    rows = search_curves(space, budgets=(1, 3, 4.5), reference_n=6, repeats=3)
    assert all(set(r) == set(SEARCH_COLUMNS) for r in rows)
    kinds = {(r["budget"], r["row"], r["scorer"], r["family"]) for r in rows}
    assert (3.0, "best-of-b", "clip-final", None) in kinds and (4.5, "best-of-b", "clip-final", None) not in kinds
    assert (3.0, "search", "*", "*") in kinds and (3.0, "search", "perfect", "*") in kinds
    assert (1.0, "search", "*", "*") not in kinds  # nothing with N >= 2 fits one trajectory
    assert (float(S), "oracle", None, None) in kinds
    reference = next(r for r in rows if r["row"] == "best-of-b" and r["budget"] == 3.0)
    assert reference["vs_best_of_b"] == 0 and reference["spent"] > 3
    top = next(r for r in rows if r["row"] == "search" and r["budget"] == 3.0 and r["scorer"] == "*")
    assert top["plan"].startswith("perfect: ") and top["vs_best_of_b_low"] > 0 and top["spent"] <= 3
    assert math.isnan(next(r for r in rows if r["budget"] == 4.5)["vs_best_of_b"])  # no Best-of-4.5
    ceiling = max(r["judge_score"] for r in rows if r["row"] == "oracle")
    assert all(r["judge_score"] <= ceiling + 1e-12 for r in rows)


def test_search_document_is_written_and_read_back(store):
    doc = search_document(store, "run1", budgets=(2, 3), repeats=2)
    assert doc["max_n"] == S and doc["seeds"] == list(range(S)) and doc["prompts"] == P
    path = store.root / "search" / "run1.json"
    assert json.loads(path.read_text()) == doc and "NaN" not in path.read_text()
    assert read_search(store.root) == [doc]
    path.write_text(json.dumps({**doc, "schema_version": 99}))
    with pytest.raises(SchemaError, match="schema_version 99"):
        read_search(store.root)
    with pytest.raises(InputError, match="max_n: expected at least 2 and reference_n = 6"):
        search_document(store, "run1", max_n=4, write=False)


# ---------------------------------------------------------------------------------------------------------- CLI
def test_cli_search_prints_the_table_and_refuses_bad_budgets(store, capsys):
    code = main(["bon", "search", "--results", str(store.root), "--budgets", "2", "3", "--repeats", "2"])
    out = capsys.readouterr().out
    assert code == 0 and "| 3 | clip-final Best-of-3 |" in out and "search * / *" in out
    assert (store.root / "search" / "run1.json").is_file()
    assert main(["bon", "search", "--results", str(store.root), "--budgets", "0"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--budgets: expected numbers of full trajectories > 0" in err


def test_run_budget_checks_the_policy_and_plan_from_needs_a_budget(evaluated, tmp_path, capsys):  # noqa: F811
    d = evaluated
    base = ["bon", "run", "--pipeline", str(d / "pipe"), "--prompt", "a red circle", "--steps", str(T)]
    base += ["--height", "32", "--width", "32", "--model", str(d / "noisyclip"), "--out", str(tmp_path / "o")]
    assert main([*base, "--n", "6", "--k", "3", "--budget", "2"]) == 2
    assert "--budget: the one-shot policy on 6 candidates spends 4.75 > 2" in capsys.readouterr().err
    assert main([*base, "--plan-from", str(d / "results")]) == 2
    assert "--plan-from: a plan is chosen for a budget" in capsys.readouterr().err
    assert main([*base, "--n", "6", "--k", "1", "--budget", "2.5"]) == 0
    account = json.loads((tmp_path / "o" / "account.json").read_text())
    assert account["budget"] == 2.5 and account["planned_spent"] == account["trajectories"] == 2.25


def test_live_plan_equals_its_replay(evaluated, tmp_path, capsys):  # noqa: F811
    """``bon run --budget --plan-from`` runs the plan the planner chose on the recorded run, and on the recorded
    prompts and seeds it picks the seed the replay picks, with the denoiser calls the plan counts."""
    from noisyclip_metrics.evaluation.results import ResultsStore

    d = evaluated
    store = ResultsStore.open(d / "results")
    arrays = load_run(store, store.runs()[0].run_id)
    space = SearchSpace(arrays, max_n=6)
    fit = fit_search(space, 2.0)
    texts = store.prompts(arrays.info.run_id).to_pydict()
    text_of = dict(zip(texts["prompt_id"], texts["prompt"], strict=True))
    assert fit.plan.n > 2  # more candidates started than Best-of-2 finishes
    for row, prompt_id in enumerate(arrays.prompt_ids):
        prompt, out = text_of[prompt_id], tmp_path / prompt_id
        code = main(
            [
                "bon",
                "run",
                "--pipeline",
                str(d / "pipe"),
                "--prompt",
                prompt,
                "--steps",
                str(T),
                "--height",
                "32",
                "--width",
                "32",
                "--budget",
                "2",
                "--plan-from",
                str(d / "results"),
                "--max-batch",
                "4",
                "--out",
                str(out),
            ]
        )
        assert code == 0, capsys.readouterr().err
        account = json.loads((out / "account.json").read_text())
        assert account["plan"] == fit.plan.label and account["scorer"] == fit.scorer
        picked = np.flatnonzero(arrays.judge[row] == space.values(fit.scorer, fit.plan)[row])
        assert account["seeds"][0] in [arrays.seeds[j] for j in picked]
        reads_x0 = "x0" in fit.scorer
        denoiser, _ = schedule_cost(fit.plan.n, T, fit.plan.decisions, needs_model_output=reads_x0)
        assert account["denoiser_evals"] == denoiser and account["budget"] == 2


def test_chunked_denoiser_calls_give_the_same_run(evaluated):  # noqa: F811
    """``max_batch`` splits each denoiser call; the picks and images are those of one call (float tolerance)."""
    import torch

    from noisyclip_metrics.diffusion.pipelines import load_pipeline
    from noisyclip_metrics.scoring.factory import resolve_model
    from noisyclip_metrics.scoring.scorers import build_scorer

    pipe = load_pipeline(str(evaluated / "pipe"))
    scorer = build_scorer("clip-x0", model=resolve_model(str(evaluated / "clip")))
    policy = FunnelPolicy(schedule=(1, 2), survivors=(3, 1))
    kwargs = {"n": 7, "num_inference_steps": T, "height": 32, "width": 32}
    whole = EarlyBestOfN(pipe, scorer, policy)("two blue squares", **kwargs)
    parts = EarlyBestOfN(pipe, scorer, policy, max_batch=2)("two blue squares", **kwargs)
    assert parts.seeds == whole.seeds and parts.denoiser_evals == whole.denoiser_evals
    torch.testing.assert_close(parts.images, whole.images, atol=1e-5, rtol=1e-4)
    with pytest.raises(InputError, match="max_batch: expected an integer >= 1"):
        EarlyBestOfN(pipe, scorer, policy, max_batch=0)


def test_live_search_script_reproduces_the_replayed_picks(evaluated, script, tmp_path, capsys):  # noqa: F811
    """experiments/search_live.py: the plans chosen for each budget, run live in batches, pick the replay's seeds,
    whose images the run judged, with the plan's denoiser calls."""
    out = tmp_path / "live.json"
    script("search_live").main(
        ["--results", str(evaluated / "results"), "--budgets", "2", "3", "--prompts", "3", "--out", str(out)]
    )
    rows = json.loads(out.read_text())["rows"]
    assert [r["budget"] for r in rows] == [2.0, 3.0] and "| 2 |" in capsys.readouterr().out
    for r in rows:
        assert r["same_picks"] == r["prompts"] == 3 and r["max_judge_difference"] < 1e-4
        assert r["judge_live"] == pytest.approx(r["judge_replay"], abs=1e-4)
        assert r["calls_per_prompt_live"] == r["calls_per_prompt_plan"]
