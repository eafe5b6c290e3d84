"""Training data as provenance: seeds drawn per (prompt, candidate) from a range no evaluation uses, checkpoints that
record what they were trained on, and the evaluation's overlap warning and refusal (issue 21, items 1-2)."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import warnings

import pytest

from noisyclip_metrics.cli import main
from noisyclip_metrics.errors import InputError, LeakageError, LeakageWarning
from noisyclip_metrics.provenance import (
    TRAINING_SEEDS,
    check_disjoint,
    describe_training_data,
    prompt_overlap,
    seed_overlap,
    training_seeds,
)
from noisyclip_metrics.scoring.model import TINY_TEST_CONFIG, NoisyCLIPConfig, NoisyCLIPModel
from noisyclip_metrics.testing import tiny_pipeline

PROMPTS = ["a red circle", "two blue squares", "no circles"]


def test_training_seeds_are_per_prompt_reproducible_and_outside_evaluation_seeds():
    seeds = [training_seeds(p, 6) for p in PROMPTS]
    assert seeds == [training_seeds(p, 6) for p in PROMPTS]
    flat = [s for own in seeds for s in own]
    assert len(set(flat)) == len(flat) == 18  # no noise recurs across prompts
    assert all(s in TRAINING_SEEDS and s >= 10**9 for s in flat)
    assert training_seeds("a red circle", 6, salt=1) != seeds[0]
    assert training_seeds("a red circle", 3) == seeds[0][:3]  # more candidates extend, never reshuffle
    with pytest.raises(InputError, match="n: expected an int >= 0"):
        training_seeds("a red circle", -1)


def test_training_record_and_overlaps():
    rec = describe_training_data([3, 4, 5, 0, 1, 2, 9], PROMPTS + PROMPTS)
    assert rec["seeds"] == {**rec["seeds"], "count": 7, "min": 0, "max": 9, "intervals": [[0, 5], [9, 9]]}
    assert rec["prompts"]["count"] == 3 and len(rec["prompts"]["digests"]) == 3
    assert seed_overlap(rec, [5, 6, 7, 8, 9]) == [5, 9]
    assert prompt_overlap(rec, ["no circles", "a green star"]) == ["no circles"]
    # many scattered seeds keep only their range: any seed inside it counts as overlapping (conservative)
    wide = describe_training_data([training_seeds(p, 50)[0] for p in map(str, range(100))], PROMPTS)
    assert wide["seeds"]["intervals"] is None
    assert seed_overlap(wide, [0, 1, 2, 5, 100]) == []
    assert seed_overlap(wide, [wide["seeds"]["min"]]) == [wide["seeds"]["min"]]
    with pytest.raises(InputError, match="at least one seed"):
        describe_training_data([], PROMPTS)


def _model(trained_on: dict | None) -> NoisyCLIPModel:
    model = NoisyCLIPModel.from_config(TINY_TEST_CONFIG, preview="sd1", seed=0)
    model.config = dataclasses.replace(model.config, trained_on=trained_on)
    return model


def test_check_disjoint_warns_refuses_and_passes_disjoint_data():
    leaky = _model(describe_training_data(range(6), ["a red circle"]))
    clean = _model(describe_training_data([training_seeds(p, 6)[0] for p in ["a green star"]], ["a green star"]))
    with pytest.warns(LeakageWarning, match=r"seeds \[0, 1\].*2 of 2 seeds"):
        problems = check_disjoint({"leaky": leaky}, [0, 1], ["two blue squares"])
    assert len(problems) == 1
    with pytest.warns(LeakageWarning, match="trained on 1 of this run's 2 prompts"):
        check_disjoint({"leaky": leaky}, [100], ["a red circle", "no circles"])
    with pytest.raises(LeakageError, match="require_disjoint: leaky"):
        check_disjoint({"leaky": leaky}, [0, 1], PROMPTS, require=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the disjoint model and a frozen one (no record) pass silently
        assert check_disjoint({"clean": clean, "frozen": _model(None)}, range(6), PROMPTS, require=True) == []
    # a fine-tuned scorer without a record cannot show it is disjoint: refused only when disjointness is required
    assert check_disjoint({"old": _model(None)}, [0], PROMPTS, fine_tuned={"old"}) == []
    with pytest.raises(LeakageError, match="records no training seeds"):
        check_disjoint({"old": _model(None)}, [0], PROMPTS, require=True, fine_tuned={"old"})


def test_trained_on_round_trips_through_a_checkpoint_and_is_validated(tmp_path):
    rec = describe_training_data(range(3), PROMPTS)
    _model(rec).save_pretrained(tmp_path / "m")
    assert NoisyCLIPModel.from_pretrained(tmp_path / "m").config.trained_on == rec
    with pytest.raises(InputError, match="trained_on: expected null or a record"):
        NoisyCLIPConfig(model_cfg=TINY_TEST_CONFIG, trained_on={"seeds": {}})


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    root = tmp_path_factory.mktemp("leak")
    tiny_pipeline("sd", root / "pipe")
    NoisyCLIPModel.from_config(TINY_TEST_CONFIG, preview="sd1", seed=0).save_pretrained(root / "clip")
    _model(describe_training_data([0, 1], ["a red circle"])).save_pretrained(root / "noisyclip")
    (root / "prompts.txt").write_text("a red circle\nno circles\n")
    return root


def _argv(root, out, *seeds: int, require: bool = False) -> list[str]:
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
        "--num-inference-steps",
        "2",
        "--height",
        "32",
        "--width",
        "32",
        "--out",
        str(out),
        "--no-progress",
        "--seeds",
        *map(str, seeds),
    ]
    return argv + (["--require-disjoint"] if require else [])


def test_evaluate_warns_on_training_seeds_and_refuses_them_for_publishing(assets, tmp_path, capsys):
    with pytest.warns(LeakageWarning) as caught:
        assert main(_argv(assets, tmp_path / "a", 1, 7)) == 0
    messages = [str(w.message) for w in caught]
    assert any("seeds [1]" in m for m in messages) and any("1 of this run's 2 prompts" in m for m in messages)
    # how the CLI prints it: one line, named by the command (a separate process: here pytest records warnings)
    done = subprocess.run(
        [sys.executable, "-m", "noisyclip_metrics.cli", *_argv(assets, tmp_path / "a2", 1, 7)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    lines = [line for line in done.stderr.splitlines() if "seeds [1]" in line]
    assert done.returncode == 0 and lines, done.stderr[-2000:]
    assert all(line.startswith("noisyclip evaluate: warning: ") for line in lines), lines
    capsys.readouterr()
    assert main(_argv(assets, tmp_path / "b", 1, 7, require=True)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "require_disjoint" in err[0] and "seeds [1]" in err[0]
    assert not (tmp_path / "b").exists()  # refused before anything was written
    # fresh seeds: refused for the shared prompt alone
    assert main(_argv(assets, tmp_path / "c", 7, 8, require=True)) == 2
    err = capsys.readouterr().err
    assert "1 of this run's 2 prompts" in err and "seeds [" not in err


def test_trajectories_record_each_prompts_own_seeds(assets, tmp_path):
    from noisyclip_metrics.diffusion.pipelines import load_pipeline
    from noisyclip_metrics.diffusion.trajectory_store import record_trajectories

    pipe = load_pipeline(str(assets / "pipe"))
    seeds = [training_seeds(p, 2) for p in PROMPTS[:2]]
    kwargs = {"num_inference_steps": 2, "height": 32, "width": 32, "batch_size": 3, "progress": False}
    store = record_trajectories(pipe, tmp_path / "t", PROMPTS[:2], seeds, **kwargs)
    assert sorted((r.prompt, r.seed) for r in store.records()) == sorted(
        (p, s) for p, own in zip(PROMPTS[:2], seeds, strict=True) for s in own
    )
    with pytest.raises(InputError, match="one list of seeds per prompt"):
        record_trajectories(pipe, tmp_path / "t", PROMPTS[:2], seeds[:1], **kwargs)
    with pytest.raises(InputError, match="distinct seeds for every prompt"):
        record_trajectories(pipe, tmp_path / "t", PROMPTS[:2], [[1, 1], [2, 3]], **kwargs)
