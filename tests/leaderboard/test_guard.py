"""The leakage guard (issue 21, item 3): a scorer trained on the evaluation seeds is caught by a fresh-seed
replicate, an honest one passes, controls never gate, and the CLI writes its report and exits 2 on failure."""

from __future__ import annotations

import json

import numpy as np
import pytest

from noisyclip_metrics.cli import main
from noisyclip_metrics.errors import InputError, LeakageError
from noisyclip_metrics.evaluation.curves import ScoreArrays
from noisyclip_metrics.leaderboard.guard import GuardConfig, Replicate, run_guard
from noisyclip_metrics.scoring.model import TINY_TEST_CONFIG, NoisyCLIPModel
from noisyclip_metrics.testing import tiny_pipeline

T = 4
CONFIG = GuardConfig(fractions=(0.25, 0.5, 1.0), n_resamples=400)


def _world(seeds: tuple[int, ...], trained_seeds: set[int], prompts: int = 150, start: int = 0) -> ScoreArrays:
    """Judge scores of ``prompts`` x ``seeds`` candidates and three scorers, every step k = 0..T.

    ``leaky`` reads the latent as weakly as ``honest`` does, but on the seeds it was trained on it also knows what
    the noise becomes (the judge's score, up to small noise): what fine-tuning on the evaluation seeds lets a scorer
    learn. ``frozen`` is a control whose signal grows along the trajectory.
    """
    rng = np.random.default_rng(start + 17 * len(trained_seeds) + seeds[0])
    judge = rng.random((prompts, len(seeds)))
    known = np.array([s in trained_seeds for s in seeds])[None, :]
    frac = (np.arange(T + 1) / T)[:, None, None]
    weak = judge + rng.normal(0, 0.6, (T + 1, prompts, len(seeds)))
    leaky = np.where(known, judge + rng.normal(0, 0.05, (T + 1, prompts, len(seeds))), weak)
    frozen = judge * frac + rng.normal(0, 0.3, (T + 1, prompts, len(seeds)))
    ids = tuple(f"p{start + i:04d}" for i in range(prompts))
    return ScoreArrays(ids, seeds, T, judge, (judge > 0.5) * 1.0, {"leaky": leaky, "honest": weak, "frozen": frozen})


def test_guard_fires_on_a_scorer_trained_on_the_evaluation_seeds():
    train = {0, 1, 2, 3, 4, 5}
    rep = Replicate(
        "m", "fresh-seeds", _world((0, 1, 2, 3, 4, 5), train), _world((100, 101, 102, 103, 104, 105), train)
    )
    report = run_guard([rep], ["leaky", "honest"], controls=["frozen"], config=CONFIG)
    fired = {(c.scorer, c.fraction) for c in report.failed}
    assert fired == {("leaky", 0.25), ("leaky", 0.5), ("leaky", 1.0)}
    assert not report.passed and all(c.difference > 0.2 for c in report.failed)
    with pytest.raises(LeakageError, match=r"3 check\(s\) differ.*m/leaky @ 0.25"):
        report.raise_on_failure()
    # the same scorer trained on other seeds is caught by nothing: the guard is what tells the two apart
    clean = Replicate("m", "fresh-seeds", _world((0, 1, 2, 3, 4, 5), {7}), _world((100, 101, 102, 103, 104, 105), {7}))
    assert run_guard([clean], ["leaky", "honest"], controls=["frozen"], config=CONFIG).passed


def test_controls_never_gate_and_fresh_prompts_are_unpaired():
    a = _world((0, 1, 2), set(), prompts=120)
    b = _world((0, 1, 2), set(), prompts=120, start=5000)
    shifted = ScoreArrays(b.prompt_ids, b.seeds, T, b.judge, b.aligned, {**b.scores, "frozen": -b.scores["frozen"]})
    report = run_guard([Replicate("m", "fresh-prompts", a, shifted, paired=False)], ["honest"], ["frozen"], CONFIG)
    assert report.passed and any(c.fired and not c.gating for c in report.checks)
    with pytest.raises(InputError, match="shares prompt ids"):
        Replicate("m", "fresh-prompts", a, a, paired=False)
    with pytest.raises(InputError, match="shares seeds"):
        Replicate("m", "fresh-seeds", a, a)


def test_more_checks_widen_every_interval():
    rep = Replicate("m", "fresh-seeds", _world((0, 1), set()), _world((5, 6), set()))
    few = run_guard([rep], ["honest"], config=GuardConfig(fractions=(0.5,), n_resamples=200))
    many = run_guard([rep], ["honest", "leaky"], config=GuardConfig(fractions=(0.25, 0.5, 1.0), n_resamples=200))
    assert many.z > few.z == pytest.approx(1.96, abs=1e-3)  # one check: the plain 95% interval


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    root = tmp_path_factory.mktemp("guard")
    tiny_pipeline("sd", root / "pipe")
    NoisyCLIPModel.from_config(TINY_TEST_CONFIG, preview="sd1", seed=0).save_pretrained(root / "clip")
    NoisyCLIPModel.from_config(TINY_TEST_CONFIG, preview="sd1", seed=1).save_pretrained(root / "noisyclip")
    (root / "prompts.txt").write_text("a red circle\ntwo blue squares\na green triangle\nno circles\n")
    for name, seeds in (("main", ["0", "1", "2"]), ("fresh", ["10", "11", "12"])):
        argv = [
            "evaluate",
            "--model",
            str(root / "pipe"),
            "--benchmark",
            str(root / "prompts.txt"),
            "--noisyclip",
            str(root / "noisyclip"),
            "--clip",
            str(root / "clip"),
            "--judge",
            "clip-final",
            "--scorers",
            "noisyclip",
            "clip",
            "--num-inference-steps",
            "2",
            "--height",
            "32",
            "--width",
            "32",
            "--out",
            str(root / name),
            "--no-progress",
            "--seeds",
            *seeds,
        ]
        assert main(argv) == 0
    return root


def test_cli_writes_the_report_beside_the_leaderboard(stores, tmp_path, capsys):
    argv = [
        "leaderboard",
        "guard",
        str(stores / "main"),
        "--fresh-seeds",
        str(stores / "fresh"),
        "--scorers",
        "noisyclip",
        "--controls",
        "clip",
        "--n-resamples",
        "200",
        "--out",
        str(tmp_path / "board"),
    ]
    code = main(argv)
    out, err = capsys.readouterr()
    doc = json.loads((tmp_path / "board" / "guard.json").read_text())
    assert code == (0 if doc["passed"] else 2)
    assert {c["scorer"] for c in doc["checks"]} == {"noisyclip", "clip"}
    model = doc["checks"][0]["model"]
    assert doc["replicates"]["fresh-seeds"][model]["seeds"] == [10, 11, 12]
    assert "noisyclip" in doc["replicates"]["fresh-seeds"][model]["curves"]
    assert "| fresh-seeds |" in (tmp_path / "board" / "guard.md").read_text()
    assert "leakage guard:" in out and (code == 0 or len(err.strip().splitlines()) == 1)


def test_cli_refuses_bad_guard_arguments_in_one_line(stores, tmp_path, capsys):
    base = ["leaderboard", "guard", str(stores / "main"), "--out", str(tmp_path / "g")]
    for extra, message in (
        (["--scorers", "noisyclip"], "expected at least one replicate"),
        (["--fresh-seeds", str(stores / "fresh"), "--scorers", "noisyclip-x0"], "scorer 'noisyclip-x0' is not in"),
        (["--fresh-seeds", str(stores / "main"), "--scorers", "noisyclip"], "shares seeds"),
    ):
        assert main(base + extra) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], err
    assert not (tmp_path / "g").exists()
