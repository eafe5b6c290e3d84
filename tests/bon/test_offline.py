"""Best-of-N from recorded results (values, cost formula, files), threshold calibration, CLI and benchmark script."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from noisyclip_metrics.bon import (
    EarlyBestOfN,
    ThresholdCalibration,
    ThresholdPolicy,
    compute_bon,
    fit_threshold_calibration,
    read_bon,
    schedule_cost,
)
from noisyclip_metrics.bon.offline import load_run
from noisyclip_metrics.cli import main
from noisyclip_metrics.errors import DataFileError, InputError
from noisyclip_metrics.evaluation.results import ResultsStore, RunInfo

T = 4


pytestmark = pytest.mark.usefixtures("one_thread")


def make_store(
    root: Path,
    scores: dict[str, np.ndarray],
    judge: np.ndarray,
    aligned: np.ndarray | None = None,
    seeds: list[int] | None = None,
    timing: dict | None = None,
    run_id: str = "run1",
    steps: int = T,
    scorer_info: dict | None = None,
    skills: list | None = None,
) -> ResultsStore:
    """A results store with one run of ``steps`` denoising steps: ``scores[name]`` is (P, S, steps + 1) (NaN: no
    row), ``judge`` (P, S) (NaN: none)."""
    p, s = judge.shape
    seeds = seeds or list(range(s))
    store = ResultsStore.create(root)
    store.write_run(
        RunInfo(
            run_id=run_id,
            model="toy",
            benchmark="bench",
            sampler={"num_inference_steps": steps},
            seeds=tuple(seeds),
            scorers=scorer_info or {n: {} for n in scores},
            judge={"name": "oracle"},
            timing=timing or {},
        )
    )
    ids = [f"p{i}" for i in range(p)]
    store.write_prompts(run_id, ids, [f"prompt {i}" for i in ids], skills or [[] for _ in ids])
    cols: dict[str, list] = {
        k: []
        for k in (
            "kind",
            "run_id",
            "model",
            "benchmark",
            "prompt_id",
            "seed",
            "step",
            "num_steps",
            "timestep",
            "scorer",
            "judge",
            "score",
            "aligned",
        )
    }

    def add(*values):
        for key, v in zip(cols, values, strict=True):
            cols[key].append(v)

    for i in reversed(range(p)):  # rows in no particular order
        for j in reversed(range(s)):
            if not np.isnan(judge[i, j]):
                al = None if aligned is None else bool(aligned[i, j])
                add(
                    "judgment",
                    run_id,
                    "toy",
                    "bench",
                    ids[i],
                    seeds[j],
                    None,
                    None,
                    None,
                    None,
                    "oracle",
                    float(judge[i, j]),
                    al,
                )
            for name, a in scores.items():
                for k in range(steps + 1):
                    if not np.isnan(a[i, j, k]):
                        add(
                            "score",
                            run_id,
                            "toy",
                            "bench",
                            ids[i],
                            seeds[j],
                            k,
                            steps,
                            1000.0 - k,
                            name,
                            None,
                            float(a[i, j, k]),
                            None,
                        )
    store.append(run_id, cols, "chunk-0")
    return store


def _rows(table, **match):
    return [r for r in table.to_pylist() if all(r[k] == v for k, v in match.items())]


@pytest.fixture()
def toy(tmp_path):
    rng = np.random.default_rng(0)
    judge = rng.random((5, 8))
    aligned = judge > 0.5
    noise = rng.normal(size=(5, 8, T + 1))
    scores = {
        "perfect": np.repeat(judge[:, :, None], T + 1, axis=2),  # the judge itself at every step
        "noisy": judge[:, :, None] + noise * np.linspace(1.0, 0.0, T + 1),  # converges to the judge
        "clip-x0": judge[:, :, None] + noise,
        "clip-final": np.where(np.arange(T + 1) == T, judge[:, :, None], np.nan),
    }
    timing = {
        "denoise_seconds": 8.0,
        "candidates": 40,
        "steps": T,
        "score_seconds/noisy": 0.5,
        "score_seconds/clip-final": 0.2,
    }
    return make_store(tmp_path / "results", scores, judge, aligned, timing=timing), judge, aligned


def test_scorer_equal_to_the_judge_gives_the_oracle_and_random_is_the_mean(toy):
    store, judge, aligned = toy
    table = compute_bon(store)
    for n in (2, 4, 6, 8):
        oracle = _rows(table, policy="oracle", n=n)[0]
        random = _rows(table, policy="random", n=n)[0]
        assert oracle["judge_score"] == pytest.approx(judge[:, :n].max(axis=1).mean())
        assert random["judge_score"] == pytest.approx(judge[:, :n].mean())
        assert random["aligned_rate"] == pytest.approx(aligned[:, :n].mean())
        assert random["cost_fraction"] == pytest.approx(1 / n) and oracle["cost_fraction"] == pytest.approx(1.0)
        for r in _rows(table, scorer="perfect", n=n):
            assert r["judge_score"] == pytest.approx(oracle["judge_score"])
    final = _rows(table, scorer="clip-final", n=6)
    assert [(r["policy"], r["k"]) for r in final] == [("one-shot", T)]
    assert final[0]["judge_score"] == pytest.approx(judge[:, :6].max(axis=1).mean())


def test_cost_formula_with_scorer_cost_from_the_run_timing(toy):
    store, _, _ = toy
    table = compute_bon(store, ns=[6])
    per_call = 8.0 / (40 * T)
    c_noisy = (0.5 / (40 * (T + 1))) / per_call  # scored at T + 1 steps per candidate
    c_final = (0.2 / 40) / per_call  # scored once per candidate
    for k in range(T + 1):
        (r,) = _rows(table, scorer="noisy", policy="one-shot", k=k)
        assert r["denoiser_evals"] == 6 * k + (T - k) and r["scorer_evals"] == 6
        assert r["cost_fraction"] == pytest.approx((6 * k + (T - k) + 6 * c_noisy) / (6 * T))
        (x0,) = _rows(table, scorer="clip-x0", policy="one-shot", k=k)
        assert x0["denoiser_evals"] == (6 * (k + 1) + (T - k - 1) if k < T else 6 * T)
        assert x0["scorer_cost_eq"] == 0.0  # no timing recorded for it
    (f,) = _rows(table, scorer="clip-final")
    assert f["cost_fraction"] == pytest.approx(1 + c_final / T)
    (h,) = _rows(table, scorer="noisy", policy="halving", k=1)
    assert h["schedule"] == "1,2,3" and h["denoiser_evals"] == 6 + 3 + 2 + 1 * (T - 3) and h["scorer_evals"] == 11
    (h2,) = _rows(table, scorer="noisy", policy="halving", k=2)
    assert h2["schedule"] == "2,4"  # 4 and 6 collapse at T = 4: one final decision there
    assert h2["denoiser_evals"] == schedule_cost(6, T, [(2, 3), (4, 1)])[0] == 6 * 2 + 3 * 2
    override = compute_bon(store, ns=[6], costs={"noisy": 1.0}, write=False)
    (r,) = _rows(override, scorer="noisy", policy="one-shot", k=0)
    assert r["cost_fraction"] == pytest.approx((T + 6) / (6 * T))


def test_x0_cost_follows_the_recorded_requires_and_falls_back_to_the_name(tmp_path):
    judge = np.random.default_rng(1).random((3, 6))
    s = np.repeat(judge[:, :, None], T + 1, axis=2)
    info = {"custom": {"requires": ["x0"]}, "my-x0-like": {"requires": ["latents"]}, "old-x0": {}}
    store = make_store(tmp_path / "r", dict.fromkeys(info, s), judge, scorer_info=info)
    table = compute_bon(store, ns=[6], write=False)
    evals = {name: _rows(table, scorer=name, policy="one-shot", k=1)[0]["denoiser_evals"] for name in info}
    assert evals == {"custom": 6 * 2 + (T - 2), "my-x0-like": 6 * 1 + (T - 1), "old-x0": 6 * 2 + (T - 2)}


def test_picks_ties_first_seeds_and_incomplete_prompts(tmp_path):
    judge = np.array([[0.1, 0.9, 0.5, 0.7], [0.2, 0.4, np.nan, 0.8]])  # prompt 1 has only 3 judged seeds
    tied = np.zeros((2, 4, T + 1))
    best_late = np.zeros((2, 4, T + 1))
    best_late[:, 0, :] = 1.0  # seed 11 (the last in seed order) leads: only in play when N = 4
    store = make_store(tmp_path / "r", {"tied": tied, "late": best_late}, judge, seeds=[11, 3, 7, 5])
    table = compute_bon(store, ns=[2, 3, 4])
    # seeds in order 3, 5, 7, 11 -> columns 1, 3, 2, 0; ties pick the lowest seed (3)
    (r,) = _rows(table, scorer="tied", policy="one-shot", n=2, k=0)
    assert r["judge_score"] == pytest.approx((0.9 + 0.4) / 2) and r["prompts"] == 2
    (r,) = _rows(table, scorer="late", policy="one-shot", n=2, k=0)  # seed 11 is not among the first 2
    assert r["judge_score"] == pytest.approx((0.9 + 0.4) / 2)
    (r,) = _rows(table, scorer="late", policy="one-shot", n=4, k=0)
    assert r["judge_score"] == pytest.approx(0.1) and r["prompts"] == 1  # prompt 1 lacks a 4th judged seed
    (r,) = _rows(table, policy="random", n=3)
    assert r["judge_score"] == pytest.approx(np.mean([np.mean([0.9, 0.7, 0.5]), np.mean([0.4, 0.8, 0.2])]))
    assert r["aligned_rate"] is None  # the judge gave no verdicts


def test_bad_offline_input(toy, tmp_path):
    store, _, _ = toy
    with pytest.raises(InputError, match="values of N >= 1"):
        compute_bon(store, ns=[0])
    with pytest.raises(InputError, match="no run with score rows"):
        compute_bon(ResultsStore.create(tmp_path / "empty"))
    assert not _rows(compute_bon(store, ns=[9], write=False), n=9)  # only 8 seeds: no group of 9


def test_files_are_written_and_readable_by_the_leaderboard(toy):
    store, _, _ = toy
    table = compute_bon(store.root)
    path = store.root / "bon" / "run1.parquet"
    assert path.is_file() and read_bon(store.root).num_rows == table.num_rows
    needed = {
        "run_id",
        "model",
        "benchmark",
        "scorer",
        "policy",
        "n",
        "k",
        "cost_fraction",
        "judge_score",
        "aligned_rate",
        "prompts",
    }
    assert needed <= set(table.column_names)
    if importlib.util.find_spec("noisyclip_metrics.leaderboard.build") is not None:
        from noisyclip_metrics.leaderboard import build

        if hasattr(build, "read_bon"):
            assert build.read_bon(store.root).num_rows == table.num_rows


def test_threshold_calibration_fit_save_load(toy, tmp_path):
    store, _, _ = toy
    cal = fit_threshold_calibration(store, "perfect", n=6)
    assert cal.num_steps == T and cal.gaps == (0.0,) * (T + 1) and cal.groups == 5  # the best always leads
    noisy = fit_threshold_calibration(store, "noisy", n=6, quantile=0.2)
    assert len(noisy.gaps) == T + 1 and all(g <= 0 for g in noisy.gaps) and noisy.gaps[-1] == 0.0
    path = noisy.save(tmp_path / "cal.json")
    assert ThresholdCalibration.load(path) == noisy
    (tmp_path / "bad.json").write_text(json.dumps({"format": "other"}))
    with pytest.raises(DataFileError, match="not a threshold calibration"):
        ThresholdCalibration.load(tmp_path / "bad.json")
    with pytest.raises(InputError, match="no run"):
        fit_threshold_calibration(store, "missing-scorer")


def test_threshold_policy_keeps_candidates_above_the_bar():
    cal = ThresholdCalibration(scorer="x", n=4, quantile=0.1, num_steps=2, gaps=(-10.0, -1.0, 0.0))
    policy = ThresholdPolicy(cal, m=1)
    scores = [0.0, 1.0, 2.0, 3.0]  # std 1.118: the bar at step 1 of 2 is 1.88
    assert policy.keep(1, scores, 2) == [3, 2]
    assert policy.keep(0, scores, 2) == [3, 2, 1, 0] and policy.keep(2, scores, 2) == [3]
    assert policy.keep(2, scores, 4) == [3, 2]  # another T: mapped by fraction (step 2 of 4 -> 1 of 2)
    assert ThresholdPolicy(cal, m=2).keep(2, scores, 2) == [3, 2]
    assert policy.decision_steps(4) == (1, 2, 3)


def test_threshold_policy_live_account(tmp_path):
    from noisyclip_metrics.scoring.model import TINY_TEST_CONFIG, NoisyCLIPModel
    from noisyclip_metrics.scoring.scorers import build_scorer
    from noisyclip_metrics.testing import tiny_pipeline

    pipe = tiny_pipeline("sd", tmp_path / "pipe")
    scorer = build_scorer("clip", model=NoisyCLIPModel.from_config(TINY_TEST_CONFIG, preview="sd1", seed=0))
    cal = ThresholdCalibration(scorer="clip", n=4, quantile=0.1, num_steps=T, gaps=(-9.0, -0.5, -0.5, -0.5, 0.0))
    r = EarlyBestOfN(pipe, scorer, ThresholdPolicy(cal))(
        "a red circle", n=4, num_inference_steps=T, height=32, width=32
    )
    plan = [(d.step, len(d.kept)) for d in r.decisions]
    assert r.denoiser_evals == schedule_cost(4, T, plan)[0] and len(r.seeds) == 1
    assert all(len(d.kept) <= len(d.scores) for d in r.decisions) and r.decisions[0].step == 1


def test_load_run_arrays(toy):
    store, judge, _ = toy
    arrays = load_run(store, "run1")
    assert arrays.num_steps == T and arrays.seeds == tuple(range(8)) and arrays.judge_name == "oracle"
    np.testing.assert_allclose(arrays.judge[np.argsort(arrays.prompt_ids)], judge)


# ---------------------------------------------------------------------------------------------------------------- CLI
def test_cli_offline_and_calibrate(toy, tmp_path, capsys):
    store, _, _ = toy
    assert main(["bon", "offline", "--results", str(store.root), "--n", "2", "6"]) == 0
    assert "BoN rows" in capsys.readouterr().out and (store.root / "bon" / "run1.parquet").is_file()
    out = tmp_path / "cal.json"
    assert main(["bon", "calibrate", "--results", str(store.root), "--scorer", "noisy", "--out", str(out)]) == 0
    assert ThresholdCalibration.load(out).scorer == "noisy"
    assert main(["bon", "offline", "--results", str(tmp_path / "nowhere")]) == 2
    assert "results folder not found" in capsys.readouterr().err
    assert main(["bon", "offline", "--results", str(store.root), "--scorer-cost", "noisy"]) == 2
    assert "SCORER=NUMBER" in capsys.readouterr().err
    assert main(["bon", "offline", "--results", str(store.root), "--n", "6", "--final-scorer", "none"]) == 0
    capsys.readouterr()
    assert set(read_bon(store.root)["m"].to_pylist()) == {1}
    assert main(["bon", "offline", "--results", str(store.root), "--final-scorer", "clip-x1"]) == 2
    err = capsys.readouterr().err
    assert "final_scorer: no run scored 'clip-x1'" in err and len(err.strip().splitlines()) == 1


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    """A small store made by `noisyclip evaluate`: tiny SD pipeline, tiny CLIPs, judge clip-final, T = 4."""
    from noisyclip_metrics.evaluation.runner import EvalConfig, evaluate
    from noisyclip_metrics.scoring.model import TINY_TEST_CONFIG, NoisyCLIPModel
    from noisyclip_metrics.testing import tiny_pipeline

    d = tmp_path_factory.mktemp("evaluated")
    tiny_pipeline("sd", d / "pipe")
    NoisyCLIPModel.from_config(TINY_TEST_CONFIG, preview="sd1", seed=0).save_pretrained(d / "clip")
    NoisyCLIPModel.from_config(TINY_TEST_CONFIG, preview="sd1", seed=1).save_pretrained(d / "noisyclip")
    (d / "prompts.txt").write_text("a red circle\ntwo blue squares\na green triangle\n", encoding="utf-8")
    evaluate(
        EvalConfig(
            model=str(d / "pipe"),
            out=str(d / "results"),
            benchmark=str(d / "prompts.txt"),
            seeds=(0, 1, 2, 3, 4, 5),
            num_inference_steps=T,
            height=32,
            width=32,
            scorers=("noisyclip", "clip", "clip-x0", "clip-x0-decoded", "clip-final"),
            noisyclip=str(d / "noisyclip"),
            clip=str(d / "clip"),
            judge="clip-final",
            progress=False,
        )
    )
    return d


def test_cli_run_saves_images_and_account(evaluated, tmp_path, capsys):
    d, out = evaluated, tmp_path / "bon"
    code = main(
        [
            "bon",
            "run",
            "--pipeline",
            str(d / "pipe"),
            "--prompt",
            "a red circle",
            "--n",
            "3",
            "--k",
            "2",
            "--steps",
            str(T),
            "--height",
            "32",
            "--width",
            "32",
            "--scorer",
            "noisyclip",
            "--model",
            str(d / "noisyclip"),
            "--out",
            str(out),
        ]
    )
    assert code == 0, capsys.readouterr().err
    account = json.loads((out / "account.json").read_text())
    assert account["denoiser_evals"] == 3 * 2 + (T - 2) and len(account["images"]) == 1
    assert (out / account["images"][0]).is_file()
    cascade = tmp_path / "cascade"
    code = main(
        [
            "bon",
            "run",
            "--pipeline",
            str(d / "pipe"),
            "--prompt",
            "a red circle",
            "--n",
            "4",
            "--k",
            "1",
            "--m",
            "2",
            "--steps",
            str(T),
            "--height",
            "32",
            "--width",
            "32",
            "--scorer",
            "noisyclip",
            "--model",
            str(d / "noisyclip"),
            "--final-scorer",
            "clip-final",
            "--final-model",
            str(d / "noisyclip"),
            "--out",
            str(cascade),
        ]
    )
    assert code == 0, capsys.readouterr().err
    account = json.loads((cascade / "account.json").read_text())
    assert account["final_scorer"] == "clip-final" and account["final_scorer_evals"] == 2
    assert len(account["images"]) == 1 and account["denoiser_evals"] == 4 * 1 + 2 * (T - 1)
    assert "+ 2 by clip-final" in capsys.readouterr().out
    code = main(
        [
            "bon",
            "run",
            "--pipeline",
            str(d / "pipe"),
            "--prompt",
            "x",
            "--policy",
            "halving",
            "--model",
            str(d / "noisyclip"),
            "--out",
            str(out),
        ]
    )
    assert code == 2 and "--schedule" in capsys.readouterr().err
    # gap 0: only the leader survives the first decision (step 2), as one-shot at k = 2
    cal = ThresholdCalibration(scorer="noisyclip", n=3, quantile=0.1, num_steps=T, gaps=(0.0,) * (T + 1))
    cal = cal.save(tmp_path / "cal.json")
    code = main(
        [
            "bon",
            "run",
            "--pipeline",
            str(d / "pipe"),
            "--prompt",
            "a red circle",
            "--n",
            "3",
            "--policy",
            "threshold",
            "--calibration",
            str(cal),
            "--min-step",
            "2",
            "--every",
            "2",
            "--steps",
            str(T),
            "--height",
            "32",
            "--width",
            "32",
            "--model",
            str(d / "noisyclip"),
            "--out",
            str(tmp_path / "thr"),
        ]
    )
    assert code == 0, capsys.readouterr().err
    account = json.loads((tmp_path / "thr" / "account.json").read_text())
    assert account["policy"] == "threshold" and account["denoiser_evals"] == 3 * 2 + (T - 2)


def test_cli_run_batches_a_prompt_file_and_resumes(evaluated, tmp_path, capsys):
    d, out = evaluated, tmp_path / "many"
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red circle\ntwo blue squares\na green triangle\n", encoding="utf-8")
    args = [
        "bon",
        "run",
        "--pipeline",
        str(d / "pipe"),
        "--prompts-file",
        str(prompts),
        "--batch-prompts",
        "2",
        "--n",
        "3",
        "--k",
        "2",
        "--steps",
        str(T),
        "--height",
        "32",
        "--width",
        "32",
        "--scorer",
        "noisyclip",
        "--model",
        str(d / "noisyclip"),
        "--out",
        str(out),
    ]
    assert main(args) == 0
    printed = capsys.readouterr()
    assert "3 prompt(s) run: " in printed.out and "bon run: 100%" in printed.err  # a progress bar, 3/3 prompts
    accounts = [json.loads((out / f"{i:04d}" / "account.json").read_text()) for i in range(3)]
    assert [a["prompt"] for a in accounts] == ["a red circle", "two blue squares", "a green triangle"]
    assert [a["prompt_index"] for a in accounts] == [0, 1, 2]
    assert [a["denoiser_evals"] for a in accounts] == [3 * 2 + (T - 2)] * 3
    assert [a["settings"].get("batch_prompts") for a in accounts] == [2, 2, None]  # batches of 2, then of 1
    single = tmp_path / "single"
    assert main([*args[:4], "--prompt", "two blue squares", *args[8:-1], str(single)]) == 0
    alone = json.loads((single / "account.json").read_text())
    assert (
        alone["seeds"] == accounts[1]["seeds"] and alone["decisions"][0]["kept"] == accounts[1]["decisions"][0]["kept"]
    )
    capsys.readouterr()
    # a crash after prompt 0's images but before its account: the rerun redoes that prompt only, nothing twice
    (out / "0000" / "account.json").unlink()
    (out / "0000" / "chosen-0-seed99.png").write_bytes(b"stale")
    assert main(args) == 0
    assert "1 prompt(s) run, 2 already done" in capsys.readouterr().out
    assert sorted(p.name for p in (out / "0000").iterdir()) == [
        "account.json",
        f"chosen-0-seed{accounts[0]['seeds'][0]}.png",
    ]
    assert json.loads((out / "0000" / "account.json").read_text())["seeds"] == accounts[0]["seeds"]
    # another prompt file or other settings in the same --out are refused, in one line
    other = list(args)
    other[args.index("--n") + 1] = "4"
    assert main(other) == 2
    assert "was run with n = 3, this run has 4" in capsys.readouterr().err
    prompts.write_text("a dog\n", encoding="utf-8")
    assert main(args) == 2
    assert "is the result of prompt 'a red circle', not line 1" in capsys.readouterr().err
    assert main([*args[:4], "--prompt", "x", "--prompts-file", str(prompts), *args[6:]]) == 2
    assert "--prompt / --prompts-file: expected exactly one of them" in capsys.readouterr().err
    assert main([*args[:4], *args[6:]]) == 2
    assert "--prompt / --prompts-file: expected exactly one of them" in capsys.readouterr().err
    assert main([*args[:6], "--batch-prompts", "0", *args[8:]]) == 2
    assert "--batch-prompts: expected >= 1" in capsys.readouterr().err
    assert main([*args[:5], str(tmp_path / "missing.txt"), *args[6:]]) == 2
    assert "missing.txt: prompt file not found" in capsys.readouterr().err


@pytest.mark.slow
def test_benchmark_script_runs_on_an_evaluated_store(evaluated, script, capsys):
    script("bon_world").main(
        ["--results", str(evaluated / "results"), "--repeats", "1", "--fractions", "0.4", "0.6", "1.2"]
    )
    out = capsys.readouterr().out
    for heading in (
        "Best-of-6, one-shot",
        "Best-of-6, halving",
        "raw ratio of judge scores [95% CI]",
        "successive halving vs one-shot",
        "halving − one-shot [95% CI]",
        "Live overhead",
        "Summary: Best-of-6, one-shot",
        "Summary: Best-of-6, policies of the strongest scorers",
        "own ceiling",
        "denoiser-call equivalents measured here",
        "fitted on the recorded trajectories",
        "cross-fitted − one-shot [95% CI]",
        "threshold, fitted (cross-fitted)",
        "fitted policies minus one-shot",
    ):
        assert heading in out
    for scorer in ("noisyclip", "clip-x0-decoded", "random"):
        assert f"| {scorer} |" in out


def test_live_benchmark_reproduces_the_offline_picks(evaluated, script, capsys):
    """End to end: live EarlyBestOfN batches choose the seeds the offline BoN picks, whose images the run judged."""
    script("bon_live").main(
        [
            "--results",
            str(evaluated / "results"),
            "--prompts",
            "3",
            "--batch-prompts",
            "2",
            "--scorer",
            "noisyclip",
            "--budget",
            "0.6",
        ]
    )
    rows = [line.split(" | ") for line in capsys.readouterr().out.splitlines() if line.startswith("| ")][1:]
    assert [r[1].split(" (")[0] for r in rows] == [
        "noisyclip one-shot 2",
        "noisyclip halving 1,2,3",
        "clip-final full-cost BoN",
    ]
    for row in rows:
        assert row[2] == "3 / 3" and float(row[3]) < 1e-4  # same picks; a pick's image is the run's image
        live, offline = row[4].split(" / ")
        calls, planned = row[5].split(" / ")
        assert live == offline and float(calls) == float(planned)


def test_cascade_rows_pick_the_final_scorers_best_of_the_top_m(toy):
    store, _, _ = toy
    table = compute_bon(store, ns=[6])
    arrays = load_run(store, "run1")
    judge = arrays.judge  # rows in the store's prompt order
    noisy, final = arrays.scores["noisy"][:, :6], arrays.scores["clip-final"][:, :6, T]
    per_call = 8.0 / (40 * T)
    c_noisy, c_final = (0.5 / (40 * (T + 1))) / per_call, (0.2 / 40) / per_call
    for k in range(T):
        for m in (2, 3):
            (r,) = _rows(table, scorer="noisy", policy=f"one-shot top-{m} + clip-final", k=k)
            top = np.argsort(-noisy[:, :, k], axis=1, kind="stable")[:, :m]
            picks = [top[p][np.argmax(final[p, top[p]])] for p in range(len(top))]
            assert r["judge_score"] == pytest.approx(np.mean([judge[p, c] for p, c in enumerate(picks)]))
            assert (r["m"], r["final_scorer"], r["final_evals"]) == (m, "clip-final", m)
            assert r["denoiser_evals"] == 6 * k + m * (T - k) and r["scorer_evals"] == 6
            assert r["cost_fraction"] == pytest.approx((6 * k + m * (T - k) + 6 * c_noisy + m * c_final) / (6 * T))
            (one,) = _rows(table, scorer="noisy", policy="one-shot", k=k)
            assert r["judge_score"] >= one["judge_score"] - 1e-12  # the final scorer here is the judge itself
    (h,) = _rows(table, scorer="noisy", policy="halving top-2 + clip-final", k=1)
    assert h["schedule"] == "1,2" and h["denoiser_evals"] == schedule_cost(6, T, [(1, 3), (2, 2)])[0]
    assert not _rows(table, policy="one-shot top-4 + clip-final")  # m <= N/2
    assert {r["m"] for r in _rows(table, policy="one-shot")} == {1}
    assert all(r["final_scorer"] is None for r in _rows(table, policy="one-shot"))
    assert not _rows(table, scorer="clip-final", m=2)
    plain = compute_bon(store, ns=[6], final_scorer=None, write=False)
    assert set(plain["m"].to_pylist()) == {1}
    with pytest.raises(InputError, match="final_scorer: no run scored 'clip-x1'"):
        compute_bon(store, ns=[6], final_scorer="clip-x1", write=False)
    other = compute_bon(store, ns=[4], final_scorer="perfect", write=False)
    assert _rows(other, scorer="noisy", policy="one-shot top-2 + perfect", k=0)


def test_bon_files_from_before_cascades_still_read(toy):
    import pyarrow.parquet as pq

    store, _, _ = toy
    table = compute_bon(store, ns=[4], final_scorer=None)
    old = table.drop_columns(["m", "final_scorer", "final_evals", "final_cost_eq"])
    pq.write_table(old, store.root / "bon" / "run1.parquet")
    back = read_bon(store.root)
    assert back.num_rows == table.num_rows and set(back["m"].to_pylist()) == {1}
    assert back["final_scorer"].null_count == back.num_rows and set(back["final_evals"].to_pylist()) == {0}


def test_pick_scores_give_back_every_rows_per_prompt_picks(toy, tmp_path):
    from noisyclip_metrics.bon import pick_scores

    store, _, _ = toy
    table = compute_bon(store, ns=[4, 6], write=False)
    arrays = load_run(store, "run1")
    rows = table.to_pylist()
    assert {r["policy"] for r in rows} >= {
        "random",
        "oracle",
        "one-shot",
        "halving",
        "one-shot top-2 + clip-final",
        "halving top-2 + clip-final",
    }
    for r in rows:
        per = pick_scores(arrays, r)
        assert per.shape == (len(arrays.groups(r["n"])[0]),)
        assert np.nanmean(per) == pytest.approx(r["judge_score"]) and int((~np.isnan(per)).sum()) == r["prompts"]
    (h,) = _rows(table, scorer="noisy", policy="halving", n=6, k=1)  # 6 -> 3 -> 2 -> 1 at steps 1, 2, 3
    s = arrays.scores["noisy"][:, :6]
    alive = np.arange(6)[None].repeat(len(s), 0)
    for step, keep in ((1, 3), (2, 2), (3, 1)):
        order = np.argsort(-np.take_along_axis(s[:, :, step], alive, 1), axis=1, kind="stable")
        alive = np.take_along_axis(alive, order[:, :keep], 1)
    np.testing.assert_allclose(pick_scores(arrays, h), arrays.judge[np.arange(len(s)), alive[:, 0]])
    other = make_store(tmp_path / "other", {"noisy": np.zeros((2, 6, T + 1))}, np.zeros((2, 6)), run_id="run2")
    with pytest.raises(InputError, match="expected a row of run run2, got run run1"):
        pick_scores(load_run(other, "run2"), h)
    with pytest.raises(InputError, match="no scores of 'clip-x0'"):
        pick_scores(load_run(other, "run2"), {**h, "run_id": "run2", "scorer": "clip-x0"})
    with pytest.raises(InputError, match="cannot reproduce policy 'threshold'"):
        pick_scores(arrays, {**h, "policy": "threshold"})
