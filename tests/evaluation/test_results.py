"""The results store under reruns, resumes and concurrent runs (issue 20, section 2).

Reruns keep the run's provenance and timing; a resume after an interruption adds a timing segment; a second writer of a
run is refused at once, naming the holder; candidates are never written twice, and every reader refuses duplicates;
bad settings write nothing; runs without rows never block a store; a truncated chunk file is discarded and its
candidates evaluated again; files follow the umask and are fsynced before their rename; a failed leaderboard rebuild
leaves the old leaderboard as it was.

Evaluations use a tiny Stable Diffusion pipeline saved locally (2 prompts x 2 seeds x 2 steps, two scorers).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from noisyclip_metrics.cli import main
from noisyclip_metrics.errors import InputError, SchemaError
from noisyclip_metrics.evaluation.results import ROW_SCHEMA, ResultsStore, RunInfo, RunLockedError, timing_totals
from noisyclip_metrics.evaluation.runner import EvalConfig
from noisyclip_metrics.scoring.model import TINY_TEST_CONFIG, NoisyCLIPModel
from noisyclip_metrics.testing import tiny_pipeline

PROMPTS = ["a red circle", "two blue squares"]
CANDIDATES = len(PROMPTS) * 2


@pytest.fixture(scope="module")
def assets(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("store-assets")
    tiny_pipeline("sd", root / "pipe")
    NoisyCLIPModel.from_config(TINY_TEST_CONFIG, preview="sd1", seed=0).save_pretrained(root / "clip")
    NoisyCLIPModel.from_config(TINY_TEST_CONFIG, preview="sd1", seed=1).save_pretrained(root / "noisyclip")
    (root / "prompts.txt").write_text("\n".join(PROMPTS) + "\n")
    return root


def _args(root: Path, out: Path, **extra: object) -> list[str]:
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
        "--seeds",
        "0",
        "1",
        "--num-inference-steps",
        "2",
        "--height",
        "32",
        "--width",
        "32",
        "--batch-size",
        "1",
        "--out",
        str(out),
        "--no-progress",
    ]
    for k, v in extra.items():
        flag = f"--{k.replace('_', '-')}"
        if flag in argv:
            argv[argv.index(flag) + 1] = str(v)
        else:
            argv += [flag, str(v)]
    return argv


@pytest.fixture(scope="module")
def finished(assets: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A complete run (4 candidates, one chunk file each); tests work on copies (:func:`_copy`)."""
    out = tmp_path_factory.mktemp("finished") / "res"
    assert main(_args(assets, out)) == 0
    return out


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def _only_run(root: Path) -> RunInfo:
    (run,) = ResultsStore.open(root).runs()
    return run


def _record_path(root: Path) -> Path:
    return root / "runs" / f"{_only_run(root).run_id}.json"


def _snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _sorted_rows(root: Path) -> list[tuple]:
    t = ResultsStore.open(root).rows()
    cols = ["kind", "prompt_id", "seed", "step", "scorer", "judge", "score"]
    return sorted(zip(*(t[c].to_pylist() for c in cols), strict=True), key=lambda r: tuple(str(v) for v in r[:6]))


def _one_line_error(capsys: pytest.CaptureFixture[str], code: int) -> str:
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.count("\n") == 1 and "error:" in err, err
    return err


# ----------------------------------------------------------------------------------- 1. reruns and resumes: timing
def test_rerun_keeps_the_provenance_and_the_timing_totals(assets, finished, tmp_path, capsys):
    from noisyclip_metrics.bon import compute_bon

    out = _copy(finished, tmp_path / "res")
    path = _record_path(out)
    record = json.loads(path.read_text())
    record["created"] = "2000-01-01T00:00:00Z"  # a sentinel: the rerun must not rewrite the provenance
    path.write_text(json.dumps(record))
    before = _only_run(out)
    assert before.timing["candidates"] == CANDIDATES and before.timing["denoise_seconds"] > 0
    capsys.readouterr()
    assert main(_args(assets, out)) == 0
    assert "0 candidates evaluated" in capsys.readouterr().out  # nothing left to do
    after = _only_run(out)
    assert after.created == "2000-01-01T00:00:00Z"
    assert after.timing == before.timing
    costs = {r["scorer"]: r["scorer_cost_eq"] for r in compute_bon(out, write=False).to_pylist()}
    assert costs["noisyclip"] > 0 and costs["clip"] > 0  # BoN costs from the totals, not zeros
    assert len(after.segments) == 1 and after.segments == before.segments and after.segments[0]["finished"] is True


def test_resume_after_an_interruption_appends_a_timing_segment(assets, tmp_path, monkeypatch, capsys):
    out = tmp_path / "res"
    real_append = ResultsStore.append
    calls = []

    def append_then_die(self: ResultsStore, *args: Any, **kwargs: Any) -> Path:
        if calls:
            raise KeyboardInterrupt  # killed while the second chunk was being written
        calls.append(1)
        return real_append(self, *args, **kwargs)

    monkeypatch.setattr(ResultsStore, "append", append_then_die)
    assert main(_args(assets, out)) == 130
    monkeypatch.setattr(ResultsStore, "append", real_append)
    killed = _only_run(out)
    assert killed.timing.get("candidates") == 1  # what the interrupted invocation did is recorded
    assert main(_args(assets, out)) == 0  # the lock went with the interrupted invocation
    resumed = _only_run(out)
    assert resumed.created == killed.created
    assert resumed.timing["candidates"] == CANDIDATES  # the totals cover both invocations
    assert len(killed.segments) == 1 and killed.segments[0]["finished"] is False
    assert [s["candidates"] for s in resumed.segments] == [1, CANDIDATES - 1]
    assert resumed.segments[0] == killed.segments[0] and resumed.segments[1]["finished"] is True
    assert resumed.timing == timing_totals(resumed.segments)
    assert resumed.timing["candidates"] == CANDIDATES and resumed.timing["steps"] == 2
    assert resumed.timing["denoise_seconds"] == pytest.approx(sum(s["denoise_seconds"] for s in resumed.segments))


def test_a_record_with_a_single_timing_dict_still_reads(tmp_path):
    from noisyclip_metrics.bon.offline import scorer_costs

    store = ResultsStore.create(tmp_path / "old")
    timing = {"denoise_seconds": 10.0, "score_seconds/clip": 1.0, "candidates": 4, "steps": 5}
    data = {**_info("r1").to_json(), "timing": timing}
    data.pop("segments", None)  # as written before segments existed
    (store.root / "runs").mkdir()
    (store.root / "runs" / "r1.json").write_text(json.dumps(data))
    run = store.run("r1")
    assert run.timing == timing and run.segments == (timing,)
    assert scorer_costs(run, {"clip": 6}) == {"clip": pytest.approx((1.0 / (4 * 6)) / (10.0 / (4 * 5)))}
    resumed = run.with_segment({"denoise_seconds": 5.0, "score_seconds/clip": 0.5, "candidates": 2, "steps": 5})
    assert resumed.timing == {"denoise_seconds": 15.0, "score_seconds/clip": 1.5, "candidates": 6, "steps": 5}


# ------------------------------------------------------------------------------ 2. concurrent writers and duplicates
_HOLDER = textwrap.dedent(
    """
    import sys
    from noisyclip_metrics.evaluation.results import ResultsStore
    lock = ResultsStore.open(sys.argv[1]).lock_run(sys.argv[2])
    print("locked", flush=True)
    sys.stdin.read()  # hold the lock until the test closes stdin
    lock.release()
    """
)


def test_a_second_writer_is_refused_at_once_naming_the_holder(assets, finished, tmp_path, capsys):
    out = _copy(finished, tmp_path / "res")
    run_id = _only_run(out).run_id
    ResultsStore.open(out).chunk_files(run_id)[0].unlink()  # work left: a second writer would evaluate it again
    before = _snapshot(out)
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(out), run_id], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        for batch_size in (1, 3):  # whatever the batch size: the same run, the same lock
            err = _one_line_error(capsys, main(_args(assets, out, batch_size=batch_size)))
            assert f"run {run_id} is being written by pid {holder.pid} on host {socket.gethostname()}" in err
        with pytest.raises(RunLockedError, match=f"pid {holder.pid}"):
            ResultsStore.open(out).lock_run(run_id)
        assert {k: v for k, v in _snapshot(out).items() if not k.startswith("locks/")} == {
            k: v for k, v in before.items() if not k.startswith("locks/")
        }
    finally:
        holder.stdin.close()
        holder.wait(timeout=60)
    assert main(_args(assets, out)) == 0  # released when the holder ended
    assert len(ResultsStore.open(out).chunk_files(run_id)) == CANDIDATES


def test_without_the_lock_a_second_writer_would_do_the_same_work(assets, finished, tmp_path, monkeypatch):
    """Negative control of the test above: with the lock off, the second writer goes ahead and evaluates the candidate
    that the holder, a writer of the same run, also has to do."""
    out = _copy(finished, tmp_path / "res")
    run_id = _only_run(out).run_id
    ResultsStore.open(out).chunk_files(run_id)[0].unlink()
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(out), run_id], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        monkeypatch.setattr(ResultsStore, "lock_run", lambda self, run_id: SimpleNamespace(release=lambda: None))
        assert main(_args(assets, out)) == 0
        assert len(ResultsStore.open(out).chunk_files(run_id)) == CANDIDATES
    finally:
        holder.stdin.close()
        holder.wait(timeout=60)


def _info(run_id: str, model: str = "m", seeds: tuple[int, ...] = (0, 1, 2)) -> RunInfo:
    return RunInfo(
        run_id=run_id,
        model=model,
        benchmark="bench",
        sampler={"num_inference_steps": 2},
        seeds=seeds,
        scorers={"noisyclip": {"weights": "w"}},
        judge={"name": "oracle"},
    )


def _rows(run_id: str, items: list[tuple[str, int]], model: str = "m", offset: float = 0.0) -> dict[str, list[Any]]:
    """Rows of candidates ``items``: a judgment and scores at steps 0..2 of scorer ``noisyclip`` each."""
    cols: dict[str, list[Any]] = {f.name: [] for f in ROW_SCHEMA}
    for p, s in items:
        gold = (s + 1) / 4 + (0.1 if p == "p1" else 0.0)
        rows = [("judgment", None, None, None, "oracle", gold, gold > 0.5)]
        rows += [("score", k, 1.0 - k / 2, "noisyclip", None, gold * k / 2 + offset, None) for k in range(3)]
        for kind, step, t, scorer, judge, score, aligned in rows:
            for key, v in zip(
                cols, (kind, run_id, model, "bench", p, s, step, 2, t, scorer, judge, score, aligned), strict=True
            ):
                cols[key].append(v)
    return cols


def _synthetic_store(root: Path, run_id: str = "r1", model: str = "m") -> ResultsStore:
    store = ResultsStore.create(root)
    store.write_run(_info(run_id, model))
    store.write_prompts(run_id, ["p0", "p1"], ["a red circle", "two blue squares"], [["color"], ["counting"]])
    store.append(run_id, _rows(run_id, [("p0", 0), ("p0", 1), ("p0", 2)], model), "chunk-a")
    store.append(run_id, _rows(run_id, [("p1", 0), ("p1", 1), ("p1", 2)], model), "chunk-b")
    return store


def test_a_chunk_of_candidates_already_written_is_refused_whatever_the_batch_size(tmp_path, monkeypatch):
    store = _synthetic_store(tmp_path / "res")
    overlapping = _rows("r1", [("p0", 2), ("p1", 0)], offset=0.5)  # cut differently: another batch size
    for writer in (store, ResultsStore.open(store.root)):  # this writer, or one that never saw chunk-a being written
        with pytest.raises(InputError, match=r"2 candidate\(s\) of this chunk already have rows .* prompt 'p0' seed 2"):
            writer.append("r1", overlapping, "chunk-c")
    assert len(store.chunk_files("r1")) == 2
    # negative control: without the guard the duplicate chunk is written (and only the readers would notice)
    monkeypatch.setattr(ResultsStore, "_known_items", lambda self, run_id: set())
    store.append("r1", overlapping, "chunk-c")
    assert len(store.chunk_files("r1")) == 3


@pytest.fixture()
def duplicated(tmp_path: Path) -> ResultsStore:
    """A store whose run holds candidates written twice, as two writers with different batch sizes left it."""
    store = _synthetic_store(tmp_path / "res")
    table = pa.table(_rows("r1", [("p0", 2), ("p1", 0)], offset=0.5), schema=ROW_SCHEMA)
    pq.write_table(table, store.root / "rows" / "r1" / "chunk-c.parquet")  # behind append's back
    return store


def _readers(store: ResultsStore, tmp_path: Path) -> dict[str, Any]:
    from noisyclip_metrics.bon import compute_bon
    from noisyclip_metrics.evaluation.correlate import correlate
    from noisyclip_metrics.evaluation.curves import pivot_rows
    from noisyclip_metrics.leaderboard import BuildConfig, build_leaderboard

    return {
        "leaderboard build": lambda: build_leaderboard(
            [store.root], tmp_path / "lb", BuildConfig(n_resamples=20, charts=False)
        ),
        "bon offline": lambda: compute_bon(store, write=False),
        "correlate": lambda: correlate(store, per_skill=False),
        "curves": lambda: pivot_rows(store.rows("r1"), ["p0", "p1"], [0, 1, 2], 2),
    }


def test_every_reader_command_refuses_duplicate_keys_in_one_line(duplicated, tmp_path, capsys):
    root = str(duplicated.root)
    for argv in (
        ["leaderboard", "build", root, "--out", str(tmp_path / "lb"), "--n-resamples", "20", "--no-charts"],
        ["bon", "offline", "--results", root],
        ["correlate", "--results", root, "--no-skills"],
    ):
        err = _one_line_error(capsys, main(argv))
        assert f"{root}: run r1: 8 duplicate rows (e.g. " in err, err
    assert not (tmp_path / "lb").exists() and not (duplicated.root / "bon").exists()


READERS = ("leaderboard build", "bon offline", "correlate", "curves")


@pytest.mark.parametrize("reader", READERS)
def test_every_reader_refuses_duplicate_keys(duplicated, tmp_path, reader):
    with pytest.raises(SchemaError, match="8 duplicate rows"):
        _readers(duplicated, tmp_path)[reader]()


@pytest.mark.parametrize("reader", READERS)
def test_readers_without_the_duplicate_check_would_use_the_duplicates(duplicated, tmp_path, monkeypatch, reader):
    """Negative control of the test above: with the check off, every reader silently uses the duplicated rows."""
    import noisyclip_metrics.bon.offline
    import noisyclip_metrics.evaluation.correlate
    import noisyclip_metrics.evaluation.results
    import noisyclip_metrics.leaderboard.build

    for module in (
        noisyclip_metrics.evaluation.results,
        noisyclip_metrics.bon.offline,
        noisyclip_metrics.evaluation.correlate,
        noisyclip_metrics.leaderboard.build,
    ):
        monkeypatch.setattr(module, "check_unique_rows", lambda table, where: None)
    assert _readers(duplicated, tmp_path)[reader]() is not None


# ------------------------------------------------------------------------------- 3 and 4. bad settings write nothing
@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("num_inference_steps", "-3", "num_inference_steps: expected an int >= 1"),
        ("num_inference_steps", "0", "num_inference_steps: expected an int >= 1"),
        ("guidance_scale", "nan", "guidance_scale: expected a finite number >= 0"),
        ("guidance_scale", "inf", "guidance_scale: expected a finite number >= 0"),
        ("guidance_scale", "-1", "guidance_scale: expected a finite number >= 0"),
        ("height", "7", "height: expected a multiple of 8"),
        ("width", "36", "width: expected a multiple of 8"),
        ("height", "0", "height: expected an int >= 1"),
        ("batch_size", "0", "batch_size: expected an int >= 1"),
        ("prompts", "0", "prompts: expected an int >= 1"),
        ("name", "", "name: expected a non-empty string"),
    ],
)
def test_bad_settings_are_one_line_errors_that_write_nothing(assets, tmp_path, capsys, flag, value, message):
    out = tmp_path / "res"
    code = main(_args(assets, out, **{flag: value}))
    assert not out.exists()
    assert message in _one_line_error(capsys, code)


def test_bad_settings_leave_an_existing_store_unchanged(assets, finished, tmp_path, capsys):
    out = _copy(finished, tmp_path / "res")
    before = _snapshot(out)
    for flag, value in (("num_inference_steps", "-3"), ("height", "7"), ("guidance_scale", "nan")):
        _one_line_error(capsys, main(_args(assets, out, **{flag: value})))
    assert _snapshot(out) == before


def test_a_prompt_the_world_oracle_cannot_read_writes_nothing(tmp_path, capsys):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red circle\na photograph of an astronaut riding a horse\n")
    out = tmp_path / "res"
    code = main(
        [
            "evaluate",
            "--model",
            "world:sd-small",
            "--benchmark",
            str(prompts),
            "--seeds",
            "0",
            "--num-inference-steps",
            "2",
            "--scorers",
            "clip",
            "--out",
            str(out),
            "--no-progress",
        ]
    )
    assert not out.exists()
    err = _one_line_error(capsys, code)
    assert "prompt p00001 cannot be judged by the world oracle" in err and "'astronaut'" in err


def test_settings_are_checked_when_the_config_is_built(tmp_path):
    for bad, match in (
        ({"num_inference_steps": 0}, "num_inference_steps: expected an int >= 1"),
        ({"num_inference_steps": True}, "num_inference_steps: expected an int >= 1"),
        ({"guidance_scale": float("nan")}, "guidance_scale: expected a finite number"),
        ({"score_every": 0}, "score_every: expected an int >= 1"),
        ({"noisyclip": ""}, "noisyclip: expected a non-empty string"),
        ({"judge": " "}, "judge: expected a non-empty string"),
    ):
        with pytest.raises(InputError, match=match):
            EvalConfig(model="m", out=str(tmp_path), **bad)


def test_other_commands_refuse_zero_negative_and_non_finite_settings(tmp_path, capsys):
    root = str(_synthetic_store(tmp_path / "res").root)
    lb = ["leaderboard", "build", root, "--out", str(tmp_path / "lb"), "--no-charts"]
    for argv, message in (
        ([*lb, "--seed", "-1"], "seed: expected an int >= 0"),
        ([*lb, "--n-resamples", "0"], "n_resamples: expected an int >= 2"),
        ([*lb, "--confidence-level", "nan"], "confidence_level: expected a"),
        ([*lb, "--within", "nan"], "within: expected a"),
        ([*lb, "--reference-fraction", "nan"], "expected fractions in [0, 1]"),
        (["bon", "offline", "--results", root, "--scorer-cost", "noisyclip=nan"], "costs: expected finite costs >= 0"),
        (["bon", "offline", "--results", root, "--scorer-cost", "noisyclip=-1"], "costs: expected finite costs >= 0"),
        (["bon", "offline", "--results", root, "--n", "0"], "ns: expected values of N >= 1"),
    ):
        assert message in _one_line_error(capsys, main(argv)), argv
    assert not (tmp_path / "lb").exists() and not (Path(root) / "bon").exists()


def test_a_run_without_rows_never_blocks_the_rest_of_the_store(tmp_path, capsys):
    store = _synthetic_store(tmp_path / "res")
    store.write_run(_info("r2", model="failed"))  # stopped by an error before its first chunk
    store.write_prompts("r2", ["p0"], ["a red circle"], [[]])
    store.write_run(_info("r3", model="starting"))  # record only
    root = str(store.root)
    assert (
        main(["leaderboard", "build", root, "--out", str(tmp_path / "lb"), "--n-resamples", "20", "--no-charts"]) == 0
    )
    out, err = capsys.readouterr()
    assert "leaderboard of 1 model(s)" in out
    assert "run r2 (failed on bench) has no rows yet; skipped" in err and "run r3" in err
    assert main(["correlate", "--results", root, "--no-skills"]) == 0
    out, err = capsys.readouterr()
    assert "noisyclip" in out and "run r2" in err
    assert main(["bon", "offline", "--results", root]) == 0
    assert "for 1 run(s)" in capsys.readouterr().out


# --------------------------------------------------------------------------------------- 5. truncated chunk files
def test_a_truncated_chunk_file_is_discarded_and_evaluated_again(assets, finished, tmp_path, capsys):
    out = _copy(finished, tmp_path / "res")
    expected = _sorted_rows(out)
    run_id = _only_run(out).run_id
    chunk = ResultsStore.open(out).chunk_files(run_id)[1]
    chunk.write_bytes(chunk.read_bytes()[: chunk.stat().st_size // 2])  # a crash before the data reached the disk
    err = _one_line_error(capsys, main(["correlate", "--results", str(out)]))  # readers refuse it
    assert "unreadable chunk file" in err
    assert main(_args(assets, out)) == 0
    captured = capsys.readouterr()
    assert "1 candidates evaluated" in captured.out
    (line,) = captured.err.splitlines()
    assert f"{chunk}: unreadable chunk file (truncated by a crash?) discarded" in line
    got = _sorted_rows(out)
    assert [r[:6] for r in got] == [r[:6] for r in expected]
    np.testing.assert_allclose([r[6] for r in got], [r[6] for r in expected], atol=1e-5)
    assert [s["candidates"] for s in _only_run(out).segments] == [CANDIDATES, 1]


# ----------------------------------------------------------------------------------- 6. file modes, fsync, swaps
def _batch() -> Any:
    from noisyclip_metrics.diffusion.trajectory import TrajectoryBatch

    return TrajectoryBatch(
        ("a red circle",),
        (0,),
        torch.zeros(1, 3, 4, 2, 2),
        torch.zeros(1, 3, 4, 2, 2),
        torch.arange(3.0),
        torch.ones(3),
        torch.zeros(1, 3, 8, 8),
    )


def _write_everything(root: Path) -> list[Path]:
    from noisyclip_metrics.diffusion.trajectory_store import TrajectoryStore
    from noisyclip_metrics.io.files import atomic_write_text

    store = _synthetic_store(root / "res")
    files = [p for p in store.root.rglob("*") if p.is_file()]
    shard = TrajectoryStore.create(root / "traj", {"num_inference_steps": 2}).append(_batch(), ["p0"])
    return [*files, shard, atomic_write_text(root / "note.txt", "x")]


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_store_files_get_the_mode_the_umask_gives(tmp_path, umask):
    old = os.umask(umask)
    want = oct(0o666 & ~umask)
    try:
        files = _write_everything(tmp_path)
        modes = {str(p.relative_to(tmp_path)): oct(p.stat().st_mode & 0o777) for p in files}
        assert len(modes) == 7 and set(modes.values()) == {want}, modes
        with ResultsStore.open(tmp_path / "res").lock_run("r1"):
            locks = {p.name: oct(p.stat().st_mode & 0o777) for p in (tmp_path / "res" / "locks").iterdir()}
    finally:
        os.umask(old)
    assert locks == {"r1.lock": want, "r1.holder.json": want}


def test_chunks_and_shards_are_fsynced_before_their_rename(tmp_path, monkeypatch):
    events: list[tuple[str, str]] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        events.append(("fsync", os.path.realpath(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    def replace(src: Any, dst: Any) -> None:
        events.append(("replace", os.path.realpath(src)))
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    _write_everything(tmp_path)
    renamed = [path for kind, path in events if kind == "replace"]
    assert any(p.endswith(".tmp") and "/rows/r1/" in p for p in renamed)  # the chunks
    assert any("/shards/" in p for p in renamed)  # the trajectory shard
    for i, (kind, path) in enumerate(events):
        if kind == "replace":
            assert ("fsync", path) in events[:i], f"{path} renamed without fsync"


def test_a_failed_leaderboard_rebuild_leaves_the_old_one(tmp_path, monkeypatch):
    from noisyclip_metrics.io.files import atomic_write_text
    from noisyclip_metrics.leaderboard import BuildConfig, build_leaderboard, render

    store = _synthetic_store(tmp_path / "res")
    out = tmp_path / "lb"
    old = os.umask(0o022)
    try:
        build_leaderboard([store.root], out, BuildConfig(n_resamples=20, charts=False))
    finally:
        os.umask(old)
    assert oct(out.stat().st_mode & 0o777) == oct(0o755)  # a page to publish, not a private temporary folder
    (out / "notes.txt").write_text("mine")
    before = _snapshot(out)
    real = render.write_outputs

    def write_then_fail(doc: Any, entries: Any, folder: Path, config: Any, images: Any = None) -> list[Path]:
        atomic_write_text(folder / "index.html", "<p>half a page")  # the disk fills up during the build
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(render, "write_outputs", write_then_fail)
    with pytest.raises(OSError, match="No space left"):
        build_leaderboard([store.root], out, BuildConfig(n_resamples=20, charts=False, overwrite=True))
    assert _snapshot(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lb", "res"]  # no temporary folder left behind
    monkeypatch.setattr(render, "write_outputs", real)
    result = build_leaderboard(
        [store.root], out, BuildConfig(n_resamples=20, charts=False, overwrite=True, title="New")
    )
    assert "New" in (out / "index.html").read_text() and (out / "notes.txt").read_text() == "mine"
    assert all(f.parent == out and f.is_file() for f in result.files)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lb", "res"]
