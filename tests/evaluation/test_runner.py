"""The evaluation runner on a small diffusers pipeline saved locally (the bring-your-own-model path): rows, resume after
a real kill, torchrun sharding, bad input."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.compute as pc
import pytest
import torch

from noisyclip_metrics.cli import main
from noisyclip_metrics.errors import InputError, SchemaError
from noisyclip_metrics.evaluation.results import ResultsStore
from noisyclip_metrics.evaluation.runner import EvalConfig
from noisyclip_metrics.scoring.model import TINY_TEST_CONFIG, NoisyCLIPModel
from noisyclip_metrics.testing import tiny_pipeline

PROMPTS = ["a red circle", "two blue squares", "a green triangle above a red circle", "no circles"]


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    root = tmp_path_factory.mktemp("byom")
    tiny_pipeline("sd", root / "pipe")
    NoisyCLIPModel.from_config(TINY_TEST_CONFIG, preview="sd1", seed=0).save_pretrained(root / "clip")
    NoisyCLIPModel.from_config(TINY_TEST_CONFIG, preview="sd1", seed=1).save_pretrained(root / "noisyclip")
    (root / "prompts.txt").write_text("\n".join(PROMPTS) + "\n")
    return root


def _args(root: Path, out: Path, benchmark: Path | None = None, **extra: object) -> list[str]:
    argv = [
        "evaluate",
        "--model",
        str(root / "pipe"),
        "--benchmark",
        str(benchmark or root / "prompts.txt"),
        "--noisyclip",
        str(root / "noisyclip"),
        "--clip",
        str(root / "clip"),
        "--judge",
        "clip-final",
        "--seeds",
        "0",
        "1",
        "2",
        "--num-inference-steps",
        "3",
        "--height",
        "32",
        "--width",
        "32",
        "--out",
        str(out),
        "--no-progress",
    ]
    for k, v in extra.items():
        argv += [f"--{k.replace('_', '-')}", str(v)]
    return argv


def _sorted_rows(out: Path) -> list[tuple]:
    t = ResultsStore.open(out).rows()
    cols = ["kind", "prompt_id", "seed", "step", "scorer", "judge", "score"]
    return sorted(
        zip(*(t[c].to_pylist() for c in cols), strict=True),
        key=lambda r: tuple("" if v is None else str(v) for v in r[:6]),
    )


def _same(a: list[tuple], b: list[tuple]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert x[:6] == y[:6]
        assert abs(x[6] - y[6]) < 1e-5


def test_rows_of_every_step_scorer_and_judgment(assets, tmp_path):
    assert main(_args(assets, tmp_path / "res", batch_size=5)) == 0
    store = ResultsStore.open(tmp_path / "res")
    (run,) = store.runs()
    assert run.model_info["weights"] and run.scorers["noisyclip"]["weights"] and run.git_revision
    assert run.scorers["noisyclip"]["requires"] == ["latents"]  # recorded for the BoN cost model, not in the run id
    assert run.sampler["num_inference_steps"] == 3 and run.timing["candidates"] == 12
    scores = store.rows(kind="score")
    # 4 prompts x 3 seeds x 4 steps x 3 scorers
    assert scores.num_rows == 4 * 3 * 4 * 3
    assert set(pc.unique(scores["scorer"]).to_pylist()) == {"noisyclip", "clip", "clip-x0"}
    judgments = store.rows(kind="judgment")
    assert judgments.num_rows == 12 and set(pc.unique(judgments["judge"]).to_pylist()) == {"clip-final"}
    assert store.prompts(run.run_id).num_rows == 4
    # the same command again is a no-op: nothing to do, no duplicate rows
    assert main(_args(assets, tmp_path / "res", batch_size=5)) == 0
    assert ResultsStore.open(tmp_path / "res").rows().num_rows == scores.num_rows + 12
    store.validate()


def test_save_previews_writes_each_candidates_decoded_x0_beside_its_final_image(assets, tmp_path, capsys):
    from PIL import Image

    from noisyclip_metrics.diffusion.trajectory import capture_trajectories
    from noisyclip_metrics.evaluation.runner import _save_images
    from noisyclip_metrics.scoring.scorers import decode_latents

    images = tmp_path / "images"
    argv = [*_args(assets, tmp_path / "res", batch_size=12, scorers="clip"), "--save-images", str(images)]
    assert main([*argv, "--save-previews", "0.34", "0.7"]) == 0
    (run,) = ResultsStore.open(tmp_path / "res").runs()
    pid = ResultsStore.open(tmp_path / "res").prompts(run.run_id)["prompt_id"].to_pylist()[0]
    assert sorted(p.name for p in (images / pid).iterdir()) == [
        f"{s}{suffix}.png" for s in (0, 1, 2) for suffix in ("", ".step1", ".step2")
    ]
    # step 2's file is the VAE decode of the candidate's x̂0 after 2 of 3 steps, saved as the final images are
    pipe = tiny_pipeline("sd", tmp_path / "pipe")
    batch = capture_trajectories(pipe, [PROMPTS[0]], [1], num_inference_steps=3, height=32, width=32)
    expected = tmp_path / "expected"
    with torch.no_grad():
        _save_images(expected, [(type("P", (), {"id": pid})(), 1)], decode_latents(pipe.vae, batch.x0[:, 2]))
    saved = torch.tensor(list(Image.open(images / pid / "1.step2.png").getdata()), dtype=torch.float32)
    reference = torch.tensor(list(Image.open(expected / pid / "1.png").getdata()), dtype=torch.float32)
    assert (saved - reference).abs().max() <= 1  # another batch composition: at most a rounding step of 1/255
    # previews without save_images, or outside (0, 1): one line, exit 2, nothing written
    capsys.readouterr()
    for extra, message in (
        (["--save-previews", "0.5"], "give save_images too"),
        (["--save-images", str(tmp_path / "i2"), "--save-previews", "1.0"], "fractions of the trajectory in (0, 1)"),
    ):
        assert main([*_args(assets, tmp_path / "res2"), *extra]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message in err
        assert not (tmp_path / "res2").exists() and not (tmp_path / "i2").exists()


@pytest.mark.slow
def test_killed_run_resumes_to_exactly_the_uninterrupted_rows(assets, tmp_path):
    assert main(_args(assets, tmp_path / "full", batch_size=1)) == 0
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "noisyclip_metrics.cli", *_args(assets, tmp_path / "killed", batch_size=1)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    rows_dir = tmp_path / "killed" / "rows"
    deadline = time.time() + 240
    while time.time() < deadline and len(list(rows_dir.glob("*/*.parquet"))) < 3:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    written = len(list(rows_dir.glob("*/*.parquet")))
    assert 3 <= written < 12, "the run must be killed part-way"
    killed = ResultsStore.open(tmp_path / "killed").runs()[0]
    assert main(_args(assets, tmp_path / "killed", batch_size=1)) == 0  # the kill released the run's lock
    _same(_sorted_rows(tmp_path / "killed"), _sorted_rows(tmp_path / "full"))
    # the killed invocation's timing segment stays (up to its last recorded chunk), the resume adds its own
    (run,) = ResultsStore.open(tmp_path / "killed").runs()
    assert run.created == killed.created and len(run.segments) == 2
    assert written - 1 <= run.segments[0]["candidates"] <= written and not run.segments[0]["finished"]
    assert run.segments[1]["candidates"] == 12 - written and run.segments[1]["finished"]
    assert run.timing["candidates"] == sum(s["candidates"] for s in run.segments) >= 11


@pytest.mark.slow
def test_torchrun_two_processes_equal_one(assets, tmp_path):
    assert main(_args(assets, tmp_path / "single", batch_size=2)) == 0
    port = str(29700 + os.getpid() % 1000)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc-per-node=2",
            f"--master-port={port}",
            "-m",
            "noisyclip_metrics.cli",
            *_args(assets, tmp_path / "ddp", batch_size=2),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = {f.parent.name for f in (tmp_path / "ddp" / "rows").glob("*/*.parquet")}
    assert len(ranks) == 1
    _same(_sorted_rows(tmp_path / "ddp"), _sorted_rows(tmp_path / "single"))


def test_bad_input(assets, tmp_path, capsys):
    def err(argv: list[str]) -> str:
        assert main(argv) == 2
        out = capsys.readouterr().err
        assert out.count("\n") == 1
        return out

    assert "unknown world id" in err(
        [*_args(assets, tmp_path / "a")[:1], "--model", "world:sd-bse", "--out", str(tmp_path / "a")]
    )
    assert "neither a registered model id nor a local pipeline folder" in err(
        [
            "evaluate",
            "--model",
            str(tmp_path / "nope"),
            "--out",
            str(tmp_path / "b"),
            "--judge",
            "clip-final",
            "--clip",
            str(assets / "clip"),
        ]
    )
    assert "did you mean" in err([*_args(assets, tmp_path / "c"), "--scorers", "noisyclp"])
    assert "unknown judge" in err([*_args(assets, tmp_path / "d"), "--judge", "oracel"])
    bad = tmp_path / "bad.txt"
    bad.write_text("a red circle\na red circle\n")
    assert "duplicate" in err(_args(assets, tmp_path / "e", benchmark=bad))
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("x")
    assert "not a results store" in err(_args(assets, other))
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        if not os.access(ro, os.W_OK):  # root can write anyway
            assert "permission" in err(_args(assets, ro / "res"))
    finally:
        ro.chmod(0o700)
    judgments = tmp_path / "j.csv"
    judgments.write_text("prompt_id,candidate_id,judge,score\np99999,0,human,3\n")
    assert "j.csv: 12 of 12 candidates have no judgment" in err(
        [*_args(assets, tmp_path / "f"), "--judge", str(judgments)]
    )


def test_device_and_dtype_join_the_run_identity_only_off_the_defaults(assets, tmp_path, capsys):
    assert main(_args(assets, tmp_path / "res")) == 0
    assert main(_args(assets, tmp_path / "res", device="cpu", dtype="float32")) == 0  # the same run: nothing to do
    assert main(_args(assets, tmp_path / "res", dtype="bfloat16")) == 0
    runs = {r.run_id: r for r in ResultsStore.open(tmp_path / "res").runs()}
    assert len(runs) == 2
    (half,) = [r for r in runs.values() if "dtype" in r.sampler]
    assert (half.sampler["device"], half.sampler["dtype"]) == ("cpu", "bfloat16")
    assert ResultsStore.open(tmp_path / "res").rows(half.run_id).num_rows == 4 * 3 * (4 * 3 + 1)
    capsys.readouterr()
    bad = [
        ("dtype", "float8", "dtype: expected one of float32, float16, bfloat16"),
        ("device", "gpu0", "device: expected a torch device"),
    ]
    if not torch.cuda.is_available():
        bad.append(("device", "cuda:0", "torch sees no CUDA device here"))
    for flag, value, message in bad:
        assert main(_args(assets, tmp_path / "bad", **{flag: value})) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1


def test_score_every_scores_fewer_steps_and_is_part_of_the_identity(assets, tmp_path, capsys):
    from noisyclip_metrics.bon import compute_bon
    from noisyclip_metrics.evaluation.curves import CurveConfig, compute_curves, pivot_rows

    assert main(_args(assets, tmp_path / "res")) == 0
    assert main(_args(assets, tmp_path / "res", score_every=2)) == 0  # T = 3: steps 0, 2 and the last, 3
    store = ResultsStore.open(tmp_path / "res")
    (sparse,) = [r for r in store.runs() if r.sampler.get("score_every") == 2]
    (full,) = [r for r in store.runs() if "score_every" not in r.sampler]
    rows = store.rows(sparse.run_id, kind="score")
    assert sorted(set(rows["step"].to_pylist())) == [0, 2, 3]
    assert rows.num_rows == 4 * 3 * 3 * 3  # prompts x seeds x scored steps x scorers
    every = {
        (p, s, k, n): v
        for p, s, k, n, v in zip(
            *(
                store.rows(full.run_id, kind="score")[c].to_pylist()
                for c in ("prompt_id", "seed", "step", "scorer", "score")
            ),
            strict=True,
        )
    }
    for p, s, k, n, v in zip(
        *(rows[c].to_pylist() for c in ("prompt_id", "seed", "step", "scorer", "score")), strict=True
    ):
        assert abs(every[(p, s, k, n)] - v) < 1e-6  # the same scores, at fewer steps
    ids = store.prompts(sparse.run_id)["prompt_id"].to_pylist()
    data = pivot_rows(store.rows(sparse.run_id), ids, sparse.seeds, 3, ["noisyclip", "clip", "clip-x0"])
    curves = compute_curves(data, CurveConfig(n_resamples=20)).overall.curves
    assert all(c.steps.tolist() == [0, 2, 3] for c in curves.values())  # the curves have the scored steps
    assert {
        r["k"] for r in compute_bon(store, sparse.run_id, write=False).to_pylist() if r["policy"] == "one-shot"
    } <= {0, 2, 3}
    assert main(_args(assets, tmp_path / "res", score_every=0)) == 2
    assert "score_every: expected an int >= 1" in capsys.readouterr().err


def test_schema_errors(tmp_path):
    with pytest.raises(SchemaError, match="not a results store"):
        ResultsStore.open(tmp_path)
    (tmp_path / "store.json").write_text('{"schema": "noisyclip-results", "schema_version": 7}')
    with pytest.raises(SchemaError, match="schema_version 7"):
        ResultsStore.open(tmp_path)
    with pytest.raises(InputError, match="seeds"):
        EvalConfig(model="m", out=str(tmp_path), seeds=(1, 1))


def test_a_partial_judgments_file_is_refused_unless_allowed(assets, tmp_path, capsys):
    from noisyclip_metrics.evaluation.judges.records import PartialJudgmentsWarning

    judged = [f"p{i:05d},{s},human,{i + s}" for i in range(4) for s in range(3) if (i, s) != (3, 2)]
    judgments = tmp_path / "j.csv"
    judgments.write_text("prompt_id,candidate_id,judge,score\n" + "\n".join(judged) + "\n")
    argv = [*_args(assets, tmp_path / "res"), "--judge", str(judgments), "--num-inference-steps", "2"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "1 of 12 candidates have no judgment (e.g. p00003/2)" in err[0]
    assert not (tmp_path / "res").exists()
    with pytest.warns(PartialJudgmentsWarning, match="1 of 12 candidates have no judgment"):
        assert main([*argv, "--allow-partial"]) == 0
    rows = ResultsStore.open(tmp_path / "res").rows(kind="judgment")
    scores = dict(
        zip(
            zip(rows["prompt_id"].to_pylist(), rows["seed"].to_pylist(), strict=True),
            rows["score"].to_pylist(),
            strict=True,
        )
    )
    assert len(scores) == 12 and scores[("p00001", 2)] == 3.0
    missing = scores[("p00003", 2)]
    assert missing is None or missing != missing  # NaN or null: no judgment, left out of curves and BoN
