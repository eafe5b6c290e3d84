"""Leaderboard build: outputs, JSON schema, merging and checks of runs, BoN, escaping, bad input, a real browser."""

from __future__ import annotations

import base64
import csv
import hashlib
import json
import os
import shutil
import socket
import subprocess
import time
import urllib.parse
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from noisyclip_metrics.cli import main
from noisyclip_metrics.errors import SchemaError
from noisyclip_metrics.evaluation.results import ResultsStore, RunInfo
from noisyclip_metrics.leaderboard import BuildConfig, build_leaderboard, load_entries, read_bon

FAST = BuildConfig(n_resamples=50)
XSS = '<script>alert(1)</script> &amp; &lt;b&gt; Tom & Jerry\'s "pen"'
SCORERS: dict[str, Callable[[np.ndarray, int, int], np.ndarray]] = {
    "noisyclip": lambda j, k, t: j * k / t,  # uninformative at k = 0, exact afterwards
    "negated": lambda j, k, t: -j,
    "constant": lambda j, k, t: np.full_like(j, 0.3),
}


def write_run(
    root: Path,
    model: str,
    *,
    benchmark: str = "bench",
    prompts: Sequence[str] | None = None,
    seeds: Sequence[int] = (0, 1, 2, 3),
    steps: int = 4,
    offset: float = 0.0,
    seed: int = 0,
    sampler: dict[str, Any] | None = None,
    run_id: str | None = None,
) -> str:
    """A synthetic run: judge scores random (distinct per prompt) + ``offset``; scorers of :data:`SCORERS`."""
    store = ResultsStore.create(root)
    texts = list(prompts) if prompts is not None else [f"prompt {i}" for i in range(8)]
    ids = [hashlib.sha256(t.encode()).hexdigest()[:10] for t in texts]
    run_id = run_id or hashlib.sha256(f"{model}|{benchmark}|{seed}".encode()).hexdigest()[:16]
    store.write_run(
        RunInfo(
            run_id=run_id,
            model=model,
            benchmark=benchmark,
            seeds=tuple(seeds),
            sampler=sampler or {"num_inference_steps": steps, "scheduler": "DDIM"},
            scorers={s: {"weights": f"w-{s}"} for s in SCORERS},
            judge={"name": "oracle"},
            package_version="0.1.0",
            created="2026-01-01T00:00:00Z",
        )
    )
    store.write_prompts(run_id, ids, texts, [["counting"] if i % 2 else ["object", "spatial"] for i in range(len(ids))])
    rng = np.random.default_rng(seed)
    cols: dict[str, list[Any]] = {
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
    for pid in ids:
        judge = rng.permutation(len(seeds)) / len(seeds) + offset
        for j, s in enumerate(seeds):
            row = [
                "judgment",
                run_id,
                model,
                benchmark,
                pid,
                s,
                None,
                None,
                None,
                None,
                "oracle",
                judge[j],
                judge[j] > 0.5,
            ]
            for k, v in zip(cols, row, strict=True):
                cols[k].append(v)
            for step in range(steps + 1):
                for name, f in SCORERS.items():
                    row = [
                        "score",
                        run_id,
                        model,
                        benchmark,
                        pid,
                        s,
                        step,
                        steps,
                        1.0 - step / steps,
                        name,
                        None,
                        float(f(judge, step, steps)[j]),
                        None,
                    ]
                    for k, v in zip(cols, row, strict=True):
                        cols[k].append(v)
    store.append(run_id, cols, f"chunk-{len(store.chunk_files(run_id))}")
    return run_id


def cli(*args: Any, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture()
def results(tmp_path: Path) -> Path:
    root = tmp_path / "results"
    write_run(root, "model-a", seed=1, offset=0.2, prompts=[XSS] + [f"prompt {i}" for i in range(1, 8)])
    write_run(root, "<b>model-b</b>", seed=2)
    return root


# ----------------------------------------------------------------------------------------------------------- outputs
def test_build_writes_every_output_with_the_json_schema(results, tmp_path, capsys):
    out = tmp_path / "lb"
    code, stdout, _ = cli("leaderboard", "build", results, "--out", out, "--n-resamples", 50, capsys=capsys)
    assert code == 0 and "2 model(s)" in stdout
    assert {p.name for p in out.iterdir()} == {
        "index.html",
        "README.md",
        "leaderboard.json",
        "leaderboard.csv",
        "curves.csv",
        "charts",
    }
    doc = json.loads((out / "leaderboard.json").read_text())
    assert doc["schema"] == "noisyclip-leaderboard" and doc["schema_version"] == 1
    names = [m["name"] for m in doc["models"]]
    assert names == ["model-a", "<b>model-b</b>"]  # ranked by mean judge score (model-a has +0.2)
    a = doc["models"][0]
    assert a["final_judge_score"] == pytest.approx(np.mean(np.arange(4) / 4) + 0.2)
    assert a["final_judge_score_low"] <= a["final_judge_score"] <= a["final_judge_score_high"]
    assert set(a["curves"]) == set(SCORERS)
    for point in a["curves"]["noisyclip"]:
        assert {"step", "fraction", "pairwise_accuracy", "top1_agreement", "spearman"} <= set(point)
    pw = [p["pairwise_accuracy"] for p in a["curves"]["noisyclip"]]
    assert pw == [0.5, 1.0, 1.0, 1.0, 1.0]
    assert [p["pairwise_accuracy"] for p in a["curves"]["negated"]] == [0.0] * 5
    assert [p["pairwise_accuracy"] for p in a["curves"]["constant"]] == [0.5] * 5
    assert [p["fraction"] for p in a["curves"]["noisyclip"]] == [0, 0.25, 0.5, 0.75, 1]
    assert a["earliest_fraction"] == {"noisyclip": 0.25, "negated": None, "constant": None}
    assert set(a["skills"]) == {"counting", "object", "spatial", "advanced", "basic"}
    assert a["skills"]["counting"]["num_prompts"] == a["skills"]["advanced"]["num_prompts"] == 4
    assert a["skills"]["basic"]["num_prompts"] == 4  # the "object" prompts: GenAI-Bench's group, derived
    assert "bon" not in doc and a["bon"] == []
    assert len(doc["provenance"]) == 2 and doc["provenance"][0]["source"] == results.name  # no folder of the machine
    with open(out / "leaderboard.csv", newline="") as f:
        ranking = list(csv.DictReader(f))
    assert len(ranking) == 2 * 3 and ranking[0]["name"] == "model-a" and ranking[0]["reference_step"] == "2"
    with open(out / "curves.csv", newline="") as f:
        curves = list(csv.DictReader(f))
    assert len(curves) == 2 * (1 + 5) * 3 * 5  # models x (all + skills and their groups) x scorers x steps
    readme = (out / "README.md").read_text()
    assert "| Rank | Model |" in readme and "## Per skill" in readme and "## Provenance" in readme
    for link in [line.split("](")[1].rstrip(")") for line in readme.splitlines() if line.startswith("![")]:
        assert (out / link).is_file()
    html = (out / "index.html").read_text()
    assert html.count('<svg xmlns="http://www.w3.org/2000/svg" class="chart"') == 2 * 3 + 3
    assert 'id="ranking"' in html and "http://" not in html.replace("http://www.w3.org/2000/svg", "")


def test_user_strings_are_escaped(results, tmp_path):
    build_leaderboard([results], tmp_path / "lb", FAST)
    html = (tmp_path / "lb" / "index.html").read_text()
    assert "<script>alert" not in html and html.count("<script") == 2  # the JSON block and the page script
    assert "<b>model-b" not in html and "&lt;b&gt;model-b&lt;/b&gt;" in html
    drill = html.split('id="drill-data">')[1].split("</script>")[0]
    assert "<" not in drill and XSS in [p["text"] for p in json.loads(drill)["models"][0]["prompts"]]
    readme = (tmp_path / "lb" / "README.md").read_text()
    assert "<b>" not in readme and "&lt;b&gt;model-b" in readme
    doc = json.loads((tmp_path / "lb" / "leaderboard.json").read_text())
    assert doc["models"][1]["name"] == "<b>model-b</b>"


def test_models_are_compared_pairwise_on_their_shared_prompts(results, tmp_path):
    """Compare models: A minus B on the prompts both have, with paired intervals; models on another benchmark are
    not compared. model-a's judge scores are model-b's permutation + 0.2 on every prompt, so the difference is
    exactly +0.2 whatever the resample; the scorers rank both perfectly (or equally badly): no difference."""
    write_run(results, "model-c", benchmark="other", seed=3)
    write_run(results, "model-d", seed=4, offset=0.2)
    build_leaderboard([results], tmp_path / "lb", FAST)
    doc = json.loads((tmp_path / "lb" / "leaderboard.json").read_text())
    pairs = {(p["a"], p["b"]): p for p in doc["compare"]["pairs"]}
    assert list(pairs) == [("model-a", "model-d"), ("model-a", "<b>model-b</b>"), ("model-d", "<b>model-b</b>")]
    ab = pairs["model-a", "<b>model-b</b>"]
    assert ab["prompts"] == 7  # model-a's first prompt is another text
    assert ab["judge_score"] == pytest.approx({"difference": 0.2, "low": 0.2, "high": 0.2})
    assert set(ab["pairwise_accuracy"]) == set(SCORERS)
    assert ab["pairwise_accuracy"]["noisyclip"] == {"difference": 0.0, "low": 0.0, "high": 0.0}
    db = pairs["model-d", "<b>model-b</b>"]  # the higher-ranked model first
    assert db["prompts"] == 8 and db["judge_score"]["difference"] == pytest.approx(0.2)
    html = (tmp_path / "lb" / "index.html").read_text()
    table = html.split('<table class="compare">')[1].split("</table>")[0]  # the judge-score matrix
    assert table.count('class="better"') == table.count('class="worse"') == 2  # a and d ahead of b, b behind
    assert table.count('class="self"') == 4 and table.count('class="none"') == 2 * 3  # model-c: no shared prompts
    assert "+0.200 [+0.200, +0.200]" in table and "-0.200 [-0.200, -0.200]" in table
    assert "&lt;b&gt;model-b&lt;/b&gt;" in table
    readme = (tmp_path / "lb" / "README.md").read_text()
    row = "| model-d | +0.000 \\[+0.000, +0.000\\] | – | +0.200 \\[+0.200, +0.200\\] | – |"  # Markdown-escaped
    assert "## Compare models" in readme and row in readme


def save_images(
    folder: Path, prompts: Sequence[str], seeds: Sequence[int], size: int = 32, previews: Sequence[int] = ()
) -> None:
    """Images as ``noisyclip evaluate --save-images`` writes them: ``<prompt_id>/<seed>.png``, and with
    ``--save-previews`` each seed's x̂0 after ``k`` steps as ``<prompt_id>/<seed>.step<k>.png``."""
    from PIL import Image

    for text in prompts:
        pid = hashlib.sha256(text.encode()).hexdigest()[:10]
        (folder / pid).mkdir(parents=True, exist_ok=True)
        for s in seeds:
            Image.new("RGB", (size, size), (40 * s % 256, 100, 200)).save(folder / pid / f"{s}.png")
            for k in previews:
                Image.new("RGB", (size, size), (40 * s % 256, 10 * k, 0)).save(folder / pid / f"{s}.step{k}.png")


def test_drill_down_shows_the_saved_images_as_embedded_thumbnails(results, tmp_path, capsys):
    import base64
    import io

    from PIL import Image

    save_images(tmp_path / "imgs", ["prompt 1", "prompt 2"], seeds=(0, 1, 2), size=200)  # seed 3: not saved
    save_images(tmp_path / "imgs", ["prompt 1"], seeds=(0, 1), size=200, previews=(3, 1))  # and x̂0 previews
    (tmp_path / "imgs" / "junk").mkdir()
    config = BuildConfig(n_resamples=50, images=(f"model-a={tmp_path / 'imgs'}",), thumbnail=64)
    build_leaderboard([results], tmp_path / "lb", config)
    html = (tmp_path / "lb" / "index.html").read_text()
    drill = json.loads(html.split('id="drill-data">')[1].split("</script>")[0])
    a, b = drill["models"]
    shown = {p["text"]: p["images"] for p in a["prompts"]}
    assert "images" not in b["prompts"][0]  # no folder for model-b
    assert shown[XSS] == [None] * 4 and shown["prompt 3"] == [None] * 4
    uris = shown["prompt 1"]
    assert uris[3] is None and all(u.startswith("data:image/png;base64,") for u in uris[:3])
    thumb = Image.open(io.BytesIO(base64.b64decode(uris[1].split(",", 1)[1])))
    assert thumb.size == (64, 64) and thumb.getpixel((5, 5)) == (40, 100, 200)
    # the x̂0 previews, in step order, one column per step; a seed without them shows none
    (p1,) = [p for p in a["prompts"] if p["text"] == "prompt 1"]
    assert p1["preview_columns"] == ["x̂0 at 0.25 (k=1)", "x̂0 at 0.75 (k=3)"]
    assert [[u is not None for u in row] for row in p1["previews"]] == [
        [True, True],
        [True, True],
        [False] * 2,
        [False] * 2,
    ]
    late = Image.open(io.BytesIO(base64.b64decode(p1["previews"][1][1].split(",", 1)[1])))
    assert late.getpixel((5, 5)) == (40, 30, 0)
    assert all("previews" not in p for p in a["prompts"] if p["text"] != "prompt 1")
    doc = json.loads((tmp_path / "lb" / "leaderboard.json").read_text())
    assert "images" not in doc["settings"] and str(tmp_path) not in json.dumps(doc)
    # a model not on the leaderboard, a missing folder, a malformed item: one line, exit 2, nothing written
    for item, message in (
        (f"model-z={tmp_path / 'imgs'}", "images: no model 'model-z' on the leaderboard"),
        (f"model-a={tmp_path / 'none'}", "is not a folder (the --save-images folder of model-a)"),
        ("model-a", "images: expected MODEL=DIR"),
    ):
        code, _, err = cli("leaderboard", "build", results, "--out", tmp_path / "lb2", "--images", item, capsys=capsys)
        assert code == 2 and err.count("\n") == 1 and message in err
        assert not (tmp_path / "lb2").exists()


def test_same_model_on_two_benchmarks_and_merged_folders(tmp_path):
    prompts = [f"prompt {i}" for i in range(8)]
    write_run(tmp_path / "r1", "m", benchmark="world", prompts=prompts[:4], seed=3)
    write_run(tmp_path / "r2", "m", benchmark="world", prompts=prompts[4:], seed=4)  # same model, other prompts
    write_run(tmp_path / "r2", "m", benchmark="drawbench", seed=5)
    entries = load_entries([tmp_path / "r1", tmp_path / "r2"])
    assert [e.name for e in entries] == ["m @ world", "m @ drawbench"]
    assert len(entries[0].runs) == 2 and len(entries[0].data.prompt_ids) == 8
    shutil.copytree(tmp_path / "r1", tmp_path / "copy")  # the same run in two folders counts once
    entries = load_entries([tmp_path / "r1", tmp_path / "copy"])
    assert len(entries) == 1 and len(entries[0].data.prompt_ids) == 4


def test_incompatible_runs_are_refused(tmp_path, capsys):
    write_run(tmp_path / "r1", "m", seeds=(0, 1, 2, 3))
    write_run(tmp_path / "r2", "m", seeds=(0, 1, 2), seed=9)
    with pytest.raises(SchemaError, match="incompatible: seeds differ"):
        load_entries([tmp_path / "r1", tmp_path / "r2"])
    write_run(tmp_path / "r3", "m", sampler={"num_inference_steps": 4, "scheduler": "Euler"}, seed=8)
    code, _, err = cli("leaderboard", "build", tmp_path / "r1", tmp_path / "r3", "--out", tmp_path / "o", capsys=capsys)
    assert code == 2 and err.count("\n") == 1 and "incompatible: sampler differ" in err
    assert not (tmp_path / "o").exists()


# --------------------------------------------------------------------------------------------------------- bad input
def _other_version(root: Path) -> None:
    write_run(root, "m")
    (root / "store.json").write_text(json.dumps({"schema": "noisyclip-results", "schema_version": 99}))


def _bad_rows(root: Path) -> None:
    run_id = write_run(root, "m")
    pq.write_table(pa.table({"x": [1]}), root / "rows" / run_id / "zz.parquet")


def _corrupt_rows(root: Path) -> None:
    run_id = write_run(root, "m")
    (root / "rows" / run_id / "zz.parquet").write_bytes(b"PAR1 not really")


def _steps_mismatch(root: Path) -> None:
    write_run(root, "m", steps=4, sampler={"num_inference_steps": 5})


def _orphan_rows(root: Path) -> None:
    run_id = write_run(root, "m")
    (root / "runs" / f"{run_id}.json").unlink()


def _no_rows(root: Path) -> None:
    run_id = write_run(root, "m")
    shutil.rmtree(root / "rows" / run_id)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda r: r.mkdir(), "not a results store"),
        (lambda r: None, "results folder not found"),
        (_other_version, "schema_version 99, this library reads 1"),
        (_bad_rows, "unreadable chunk file"),
        (_corrupt_rows, "unreadable chunk file"),
        (_steps_mismatch, "have num_steps [4], the run record says 5"),
        (_orphan_rows, "rows of runs without provenance"),
        (_no_rows, "has no rows"),
    ],
    ids=[
        "empty-folder",
        "missing",
        "other-version",
        "malformed-rows",
        "corrupt-rows",
        "steps",
        "orphan-rows",
        "no-rows",
    ],
)
def test_bad_results_are_one_line_errors(tmp_path, capsys, make, message):
    make(tmp_path / "res")
    code, _, err = cli("leaderboard", "build", tmp_path / "res", "--out", tmp_path / "lb", capsys=capsys)
    assert code == 2 and err.count("\n") == 1 and err.startswith("noisyclip leaderboard build: error:")
    assert message in err


def test_output_folder_with_other_content(results, tmp_path, capsys):
    out = tmp_path / "lb"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    code, _, err = cli("leaderboard", "build", results, "--out", out, capsys=capsys)
    assert code == 2 and err.count("\n") == 1 and "not empty" in err and "--overwrite" in err
    code, _, _ = cli("leaderboard", "build", results, "--out", out, "--overwrite", "--n-resamples", 20, capsys=capsys)
    assert code == 0 and (out / "notes.txt").read_text() == "mine" and (out / "index.html").is_file()
    code, _, err = cli("leaderboard", "build", results, "--out", results, "--overwrite", capsys=capsys)
    assert code == 2 and "is a results store" in err
    code, _, err = cli("leaderboard", "build", results, "--out", out / "notes.txt", capsys=capsys)
    assert code == 2 and "is a file" in err


# --------------------------------------------------------------------------------------------------------------- BoN
def test_bon_results_are_rendered(results, tmp_path):
    run_a = next(r.run_id for r in ResultsStore.open(results).runs() if r.model == "model-a")
    (results / "bon").mkdir()
    rows = {
        "run_id": [run_a] * 4,
        "scorer": ["noisyclip", "noisyclip", "clip-final", "noisyclip"],
        "policy": ["one-shot"] * 4,
        "n": [6] * 4,
        "k": [10, 10, 50, 25],
        "cost_fraction": [0.3, 0.3, 1.0, 0.6],
        "judge_score": [0.7, 0.8, 0.8, 0.79],
        "prompt_id": ["a", "b", "a", "a"],
    }
    pq.write_table(pa.table(rows), results / "bon" / "part-0.parquet")
    assert read_bon(results).num_rows == 4
    build_leaderboard([results], tmp_path / "lb", FAST)
    doc = json.loads((tmp_path / "lb" / "leaderboard.json").read_text())
    assert len(doc["bon"]) == 3  # per-prompt rows averaged per (run, scorer, policy, n, k)
    first = doc["bon"][0]
    assert {"scorer", "n", "k", "cost_fraction", "judge_score"} <= set(first) and first["model"] == "model-a"
    noisy = next(r for r in doc["bon"] if r["scorer"] == "noisyclip" and r["k"] == 10)
    assert noisy["judge_score"] == pytest.approx(0.75) and noisy["prompts"] == 2
    assert len(doc["models"][0]["bon"]) == 3 and doc["models"][1]["bon"] == []
    assert 'id="bon"' in (tmp_path / "lb" / "index.html").read_text()
    assert "## Best-of-N" in (tmp_path / "lb" / "README.md").read_text()
    assert all(r["m"] == 1 for r in doc["bon"])  # files without the cascade columns read as m = 1
    pq.write_table(pa.table({"run_id": [run_a], "scorer": ["x"]}), results / "bon" / "part-1.parquet")
    with pytest.raises(SchemaError, match="lacks columns"):
        read_bon(results)


def test_search_documents_are_published_beside_the_curves(results, tmp_path, capsys):
    """`noisyclip bon search` documents of another store (more seeds) go to the JSON's `search` key and to a table
    per model in README.md and index.html, escaped; a document of a model the leaderboard lacks is refused."""
    from noisyclip_metrics.bon.search import search_document
    from tests.bon.test_offline import make_store

    rng = np.random.default_rng(0)
    judge = rng.random((12, 8))
    final = np.full((12, 8, 5), np.nan)
    final[:, :, 4] = judge
    scores = {"early": judge[:, :, None] + rng.normal(size=(12, 8, 5)) * 0.2, "clip-final": final}
    timing = {"denoise_seconds": 4.0, "candidates": 96, "steps": 4, "score_seconds/early": 0.1}
    store = make_store(tmp_path / "more-seeds", scores, judge, timing=timing, steps=4)
    doc = search_document(store, "run1", budgets=(2, 4), max_n=8, reference_n=4, repeats=2)
    path = store.root / "search" / "run1.json"
    path.write_text(json.dumps(dict(doc, model="<b>model-b</b>")))
    code, _, err = cli(
        "leaderboard",
        "build",
        results,
        "--search",
        store.root,
        "--out",
        tmp_path / "lb",
        "--n-resamples",
        50,
        "--no-charts",
        capsys=capsys,
    )
    assert code == 0, err
    board = json.loads((tmp_path / "lb" / "leaderboard.json").read_text())
    (published,) = board["search"]
    assert published["model"] == "<b>model-b</b>" and published["source"] == "more-seeds"
    assert [r["budget"] for r in published["rows"] if r["row"] == "best-of-b"] == [2.0, 4.0]
    readme = (tmp_path / "lb" / "README.md").read_text()
    assert "## Budget-matched search" in readme and "### &lt;b&gt;model-b&lt;/b&gt;" in readme
    assert "| 4 | " in readme and "Search / Best-of-4" in readme
    page = (tmp_path / "lb" / "index.html").read_text()
    assert "<h3>&lt;b&gt;model-b&lt;/b&gt;</h3>" in page and 'class="search"' in page
    path.write_text(json.dumps(dict(doc, model="model-c")))
    code, _, err = cli(
        "leaderboard", "build", results, "--search", store.root, "--out", tmp_path / "lb2", capsys=capsys
    )
    assert code == 2 and "search documents of models that are not on the leaderboard: ['model-c']" in err


def test_bon_charts_are_small_multiples_with_the_references_in_each(results, tmp_path):
    """No Best-of-N chart carries more than six lines: one chart per policy (split when it has many scorers), and the
    random and oracle references are drawn in every one."""
    import re

    run_a = next(r.run_id for r in ResultsStore.open(results).runs() if r.model == "model-a")
    (results / "bon").mkdir()
    kinds = [(f"scorer-{i}", policy) for policy in ("one-shot", "halving") for i in range(7)]
    kinds += [("random", "random"), ("oracle", "oracle")]
    rows = {
        "run_id": [run_a] * len(kinds),
        "scorer": [s for s, _ in kinds],
        "policy": [p for _, p in kinds],
        "n": [6] * len(kinds),
        "k": [2] * len(kinds),
        "cost_fraction": [0.5] * len(kinds),
        "judge_score": [0.7] * len(kinds),
        "prompts": [8] * len(kinds),
    }
    pq.write_table(pa.table(rows), results / "bon" / "part-0.parquet")
    build_leaderboard([results], tmp_path / "lb", FAST)
    html = (tmp_path / "lb" / "index.html").read_text()
    section = html.split("<h2>Best-of-N cost and quality</h2>")[1].split("</details>")[0]
    charts = re.findall(r"<svg .*?</svg>", section, flags=re.S)
    titles = [re.search(r'class="chart-title">(.*?)</text>', c).group(1) for c in charts]
    assert sorted(titles) == [f"model-a: Best-of-6, {p} ({j}/2)" for p in ("halving", "one-shot") for j in (1, 2)]
    for chart in charts:
        legend = re.findall(r'class="legend">([^<]*)', chart)
        assert len(legend) <= 6 and sorted(legend[-2:]) == ["oracle", "random"]
    assert len({label for c in charts for label in re.findall(r'class="legend">([^<]*)', c)}) == 14 + 2  # all drawn


def test_bon_cascades_are_listed_but_not_drawn(results, tmp_path):
    from noisyclip_metrics.leaderboard.render import _bon_series, bon_summary

    run_a = next(r.run_id for r in ResultsStore.open(results).runs() if r.model == "model-a")
    (results / "bon").mkdir()
    rows = {
        "run_id": [run_a] * 3,
        "scorer": ["noisyclip"] * 3,
        "policy": ["one-shot", "one-shot top-2 + clip-final", "one-shot top-3 + clip-final"],
        "n": [6] * 3,
        "k": [10] * 3,
        "m": [1, 2, 3],
        "cost_fraction": [0.3, 0.4, 0.5],
        "judge_score": [0.7, 0.75, 0.8],
        "prompts": [10] * 3,
    }
    pq.write_table(pa.table(rows), results / "bon" / "part-0.parquet")
    build_leaderboard([results], tmp_path / "lb", FAST)
    doc = json.loads((tmp_path / "lb" / "leaderboard.json").read_text())
    assert sorted(r["m"] for r in doc["bon"]) == [1, 2, 3]
    labels = [s.label for s in _bon_series(doc["bon"], 6)]
    assert labels == ["noisyclip (one-shot)"]  # a legend of 4 policies x every scorer would not fit
    assert [r["m"] for r in bon_summary(doc["bon"])] == [1]
    assert "one-shot top-3 + clip-final" in (tmp_path / "lb" / "index.html").read_text()


def test_bon_rows_tied_on_cost_are_listed_by_k_whatever_the_file_order(results, tmp_path):
    run_a = next(r.run_id for r in ResultsStore.open(results).runs() if r.model == "model-a")
    (results / "bon").mkdir()
    orders = []
    for ks in ([20, 19, 18], [18, 20, 19]):
        rows = {
            "run_id": [run_a] * 3,
            "scorer": ["noisyclip"] * 3,
            "policy": ["one-shot"] * 3,
            "n": [6] * 3,
            "k": ks,
            "cost_fraction": [1.0] * 3,
            "judge_score": [0.8] * 3,
            "prompts": [10] * 3,
        }
        pq.write_table(pa.table(rows), results / "bon" / "part-0.parquet")
        build_leaderboard([results], tmp_path / f"lb-{ks[0]}", FAST)
        orders.append([r["k"] for r in json.loads((tmp_path / f"lb-{ks[0]}" / "leaderboard.json").read_text())["bon"]])
    assert orders == [[18, 19, 20]] * 2


# -------------------------------------------------------------------------------------------------------- end to end
@pytest.mark.slow
def test_end_to_end_from_evaluate(tmp_path):
    from noisyclip_metrics.evaluation.runner import EvalConfig, evaluate
    from noisyclip_metrics.scoring.model import TINY_TEST_CONFIG, NoisyCLIPModel
    from noisyclip_metrics.testing import tiny_pipeline

    tiny_pipeline("sd", tmp_path / "pipe")
    NoisyCLIPModel.from_config(TINY_TEST_CONFIG, preview="sd1", seed=0).save_pretrained(tmp_path / "clip")
    (tmp_path / "prompts.txt").write_text(f"a red circle\ntwo blue squares\n{XSS}\n", encoding="utf-8")
    evaluate(
        EvalConfig(
            model=str(tmp_path / "pipe"),
            out=str(tmp_path / "res"),
            benchmark=str(tmp_path / "prompts.txt"),
            seeds=(0, 1, 2),
            num_inference_steps=2,
            scorers=("noisyclip", "clip", "clip-final"),
            noisyclip=str(tmp_path / "clip"),
            clip=str(tmp_path / "clip"),
            judge="clip-final",
            name="tiny-sd",
            height=32,
            width=32,
            progress=False,
        )
    )
    result = build_leaderboard([tmp_path / "res"], tmp_path / "lb", FAST)
    assert result.entries == 1 and result.rows == 3 * 3 * (2 * 3 + 1 + 1)
    doc = json.loads((tmp_path / "lb" / "leaderboard.json").read_text())
    (m,) = doc["models"]
    assert m["name"] == "tiny-sd" and m["benchmark"] == "prompts" and m["num_steps"] == 2
    assert [p["step"] for p in m["curves"]["noisyclip"]] == [0, 1, 2]
    assert [p["step"] for p in m["curves"]["clip-final"]] == [2]
    assert m["curves"]["clip-final"][0]["pairwise_accuracy"] == 1.0  # the judge is clip-final itself
    assert m["earliest_fraction"]["clip-final"] == 1.0


# ----------------------------------------------------------------------------------------------------------- browser
class CDP:
    """A minimal Chrome DevTools Protocol client over a stdlib websocket (text frames, client-side masking)."""

    def __init__(self, url: str) -> None:
        u = urllib.parse.urlparse(url)
        self.sock = socket.create_connection((u.hostname, u.port), timeout=30)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            (
                f"GET {u.path} HTTP/1.1\r\nHost: {u.hostname}:{u.port}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        self.buf = bytearray()
        while b"\r\n\r\n" not in self.buf:
            self.buf += self.sock.recv(4096)
        head, _, rest = bytes(self.buf).partition(b"\r\n\r\n")
        assert b" 101 " in head.split(b"\r\n")[0], head
        self.buf = bytearray(rest)
        self.next_id = 0
        self.events: list[dict[str, Any]] = []

    def _send(self, payload: bytes, opcode: int = 0x1) -> None:
        n = len(payload)
        head = bytearray([0x80 | opcode])
        head += (
            bytes([0x80 | n])
            if n < 126
            else bytes([0x80 | 126]) + n.to_bytes(2, "big")
            if n < 65536
            else bytes([0x80 | 127]) + n.to_bytes(8, "big")
        )
        mask = os.urandom(4)
        masked = (np.frombuffer(payload, np.uint8) ^ np.resize(np.frombuffer(mask, np.uint8), n)).tobytes()
        self.sock.sendall(bytes(head) + mask + masked)

    def _exact(self, n: int) -> bytes:
        while len(self.buf) < n:
            chunk = self.sock.recv(1 << 16)
            if not chunk:
                raise ConnectionError("devtools connection closed")
            self.buf += chunk
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def _receive(self) -> dict[str, Any]:
        message = b""
        while True:
            b0, b1 = self._exact(2)
            n = b1 & 0x7F
            n = int.from_bytes(self._exact(2 if n == 126 else 8), "big") if n >= 126 else n
            mask = self._exact(4) if b1 & 0x80 else b""
            payload = self._exact(n)
            if mask:
                payload = bytes(c ^ mask[i % 4] for i, c in enumerate(payload))
            if b0 & 0x0F == 0x9:  # ping
                self._send(payload, 0xA)
                continue
            if b0 & 0x0F == 0x8:
                raise ConnectionError("devtools connection closed")
            message += payload
            if b0 & 0x80:
                return json.loads(message)

    def call(self, method: str, session: str | None = None, **params: Any) -> dict[str, Any]:
        self.next_id += 1
        msg: dict[str, Any] = {"id": self.next_id, "method": method, "params": params}
        if session:
            msg["sessionId"] = session
        self._send(json.dumps(msg).encode())
        while True:
            reply = self._receive()
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait(self, method: str, timeout: float = 30) -> dict[str, Any]:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            for e in self.events:
                if e.get("method") == method:
                    return e
            self.events.append(self._receive())
        raise TimeoutError(method)


def _chromium(paths: Sequence[str] = ("/usr/bin/chromium",)) -> str:
    """Debian's chromium; when missing, fail under NOISYCLIP_REQUIRE_BROWSER=1 (scripts/run.sh test), else skip."""
    found = shutil.which("chromium") or next((p for p in paths if os.path.exists(p)), None)
    if found is None:
        if os.environ.get("NOISYCLIP_REQUIRE_BROWSER") == "1":
            pytest.fail("chromium is not installed but NOISYCLIP_REQUIRE_BROWSER=1 (scripts/run.sh test installs it)")
        pytest.skip("chromium not installed (set NOISYCLIP_REQUIRE_BROWSER=1 to make this a failure)")
    return found


def test_missing_browser_fails_only_when_required(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    monkeypatch.setenv("NOISYCLIP_REQUIRE_BROWSER", "1")
    with pytest.raises(pytest.fail.Exception, match="NOISYCLIP_REQUIRE_BROWSER=1"):
        _chromium(paths=())
    monkeypatch.delenv("NOISYCLIP_REQUIRE_BROWSER")
    with pytest.raises(pytest.skip.Exception):
        _chromium(paths=())


@pytest.mark.slow
def test_page_in_headless_chromium(results, tmp_path):
    binary = _chromium()
    write_run(results, "model-c", seed=3, offset=-0.2)
    save_images(tmp_path / "imgs", [XSS], seeds=(0, 1, 2, 3), previews=(2,))
    build_leaderboard([results], tmp_path / "lb", BuildConfig(n_resamples=50, images=(f"model-a={tmp_path / 'imgs'}",)))
    profile = tmp_path / "profile"
    proc = subprocess.Popen(
        [
            binary,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={profile}",
            "--remote-debugging-port=0",
            "--window-size=1366,1600",  # a laptop screen: the ranking must fit it
            "about:blank",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        port_file = profile / "DevToolsActivePort"
        for _ in range(300):
            if port_file.is_file() and len(port_file.read_text().split()) == 2:
                break
            time.sleep(0.1)
        port, path = port_file.read_text().split()
        cdp = CDP(f"ws://127.0.0.1:{port}{path}")
        target = cdp.call("Target.createTarget", url="about:blank")["targetId"]
        s = cdp.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            cdp.call(f"{domain}.enable", s)
        cdp.call("Page.navigate", s, url=(tmp_path / "lb" / "index.html").as_uri())
        cdp.wait("Page.loadEventFired")

        def js(expression: str) -> Any:
            result = cdp.call("Runtime.evaluate", s, expression=expression, returnByValue=True, awaitPromise=True)
            assert "exceptionDetails" not in result, result
            return result["result"].get("value")

        def click(selector: str) -> None:
            x, y = js(
                f"(() => {{ const e = document.querySelector({json.dumps(selector)}); e.scrollIntoView();"
                " const r = e.getBoundingClientRect(); return [r.x + r.width / 2, r.y + r.height / 2]; })()"
            )
            for kind in ("mousePressed", "mouseReleased"):
                cdp.call("Input.dispatchMouseEvent", s, type=kind, x=x, y=y, button="left", clickCount=1)

        # table and charts are shown
        assert js("document.querySelectorAll('#ranking tbody tr').length") == 3
        assert js("document.querySelectorAll('svg.chart').length") == 3 * 3 + 3
        assert js("document.querySelector('svg.chart').getBoundingClientRect().width") > 300
        # the ranking fits the screen without scrolling sideways; every column is in the folded full table
        assert js("document.querySelector('#ranking').scrollWidth") <= js(
            "document.querySelector('#ranking').parentElement.clientWidth"
        )
        assert js("document.querySelectorAll('#ranking-full thead th').length") == 9 + 2 * len(SCORERS)
        assert js("document.querySelector('#ranking-full').closest('details').open") is False
        # compare models: the judge-score matrix shown, the scorers' in a closed <details>
        assert js("document.querySelectorAll('table.compare').length") == 1 + len(SCORERS)
        assert js("document.querySelector('table.compare').getBoundingClientRect().height") > 50
        assert js("document.querySelectorAll('table.compare')[1].closest('details').open") is False
        assert js("document.querySelector('table.compare').closest('details')") is None
        assert js("document.querySelectorAll('table.compare td.better').length") == 3  # a > b > c, a > c
        ranks = "Array.from(document.querySelectorAll('#ranking tbody tr'), r => r.cells[0].textContent)"
        names = "Array.from(document.querySelectorAll('#ranking tbody tr'), r => r.cells[1].textContent)"
        assert js(ranks) == ["1", "2", "3"]
        assert js(names)[0] == "model-a" and "<b>model-b</b>" in js(names)
        assert js("document.querySelectorAll('#ranking b').length") == 0  # the model name is text, not markup
        # sorting: judge score ascending, then descending
        click("#ranking thead th:nth-child(5)")
        assert js(ranks) == ["3", "2", "1"]
        click("#ranking thead th:nth-child(5)")
        assert js(ranks) == ["1", "2", "3"]
        click("#ranking thead th:nth-child(2)")
        assert js(names) == js(f"{names}.sort((a, b) => a.toLowerCase().localeCompare(b.toLowerCase()))")
        assert js("document.querySelector('#ranking thead th:nth-child(2)').getAttribute('aria-sort')") == "ascending"
        # drill-down: the hostile prompt renders as text
        click("#drill-filter")
        cdp.call("Input.insertText", s, text="alert")
        assert js("document.querySelectorAll('#drill-list tbody tr').length") == 1
        click("#drill-list tbody tr")
        assert js("document.querySelector('#drill-detail h3').textContent") == XSS
        assert XSS in js("document.body.innerText")
        assert js("document.querySelectorAll('#drill-detail tbody tr').length") == 4  # one row per seed
        # each seed's x̂0 preview and final image, embedded: decoded and drawn
        assert js("Array.from(document.querySelectorAll('#drill-detail img.thumb'), i => i.naturalWidth)") == [32] * 8
        heads = js("Array.from(document.querySelectorAll('#drill-detail thead th'), h => h.textContent)")
        assert heads[:4] == ["Seed", "x̂0 at 0.50 (k=2)", "Final image", "Judge score"]
        assert js("document.querySelector('#drill-detail img.thumb').getBoundingClientRect().width") >= 64
        assert js("document.querySelectorAll('script').length") == 2
        shot = tmp_path / "leaderboard.png"
        shot.write_bytes(
            base64.b64decode(cdp.call("Page.captureScreenshot", s, format="png", captureBeyondViewport=True)["data"])
        )
        if os.environ.get("NOISYCLIP_TEST_ARTIFACTS"):
            Path(os.environ["NOISYCLIP_TEST_ARTIFACTS"]).mkdir(parents=True, exist_ok=True)
            shutil.copy(shot, Path(os.environ["NOISYCLIP_TEST_ARTIFACTS"]) / shot.name)
        print(f"screenshot: {shot}")
        events = cdp.events
        assert not [e for e in events if e.get("method") == "Page.javascriptDialogOpening"]
        errors = [
            e
            for e in events
            if e.get("method") == "Runtime.exceptionThrown"
            or (e.get("method") == "Runtime.consoleAPICalled" and e["params"]["type"] in ("error", "assert"))
            or (e.get("method") == "Log.entryAdded" and e["params"]["entry"]["level"] == "error")
        ]
        assert not errors, errors
        urls = [e["params"]["request"]["url"] for e in events if e.get("method") == "Network.requestWillBeSent"]
        assert all(u.startswith(("file:", "data:", "about:")) for u in urls), urls
        assert shot.stat().st_size > 10_000
        cdp.call("Browser.close")
    finally:
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_no_published_file_names_a_folder_of_the_machine(tmp_path, monkeypatch):
    """A results folder given as an absolute path outside the working directory is recorded by its name only; one
    inside it, relative to it (the provenance showed `source: /.../runs/world-full/results`)."""
    import numpy as np

    from noisyclip_metrics.leaderboard.build import BuildConfig, build_leaderboard
    from tests.bon.test_offline import make_store

    rng = np.random.default_rng(0)
    judge = rng.random((4, 3))
    store = make_store(tmp_path / "machine" / "private" / "results", {"s": rng.random((4, 3, 5))}, judge)
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    out = elsewhere / "board"
    build_leaderboard([store.root.resolve()], out, BuildConfig(n_resamples=20, charts=False))
    doc = json.loads((out / "leaderboard.json").read_text(encoding="utf-8"))
    assert [p["source"] for p in doc["provenance"]] == ["results"]
    for path in out.rglob("*"):
        if path.is_file():
            assert str(tmp_path) not in path.read_text(encoding="utf-8", errors="replace"), path.name
    monkeypatch.chdir(tmp_path / "machine")
    build_leaderboard([store.root.resolve()], out, BuildConfig(n_resamples=20, charts=False, overwrite=True))
    doc = json.loads((out / "leaderboard.json").read_text(encoding="utf-8"))
    assert [p["source"] for p in doc["provenance"]] == ["private/results"]
