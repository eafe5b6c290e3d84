"""Names taken from data never become paths outside their folder: prompt ids (every loader, ``--save-images``),
run ids of a results store, file names of benchmark specs and downloads, a checkpoint's tokenizer folder."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from noisyclip_metrics.cli import main
from noisyclip_metrics.errors import CheckpointError, DataFileError, InputError, SchemaError
from noisyclip_metrics.evaluation.benchmarks import (
    Prompt,
    download_benchmark,
    load_benchmark,
    parse_spec,
    register_benchmark,
)
from noisyclip_metrics.evaluation.benchmarks import adapters as spec_module
from noisyclip_metrics.evaluation.results import ResultsStore, RunInfo
from noisyclip_metrics.io.safepath import MAX_NAME_BYTES, UnsafePathError, check_name, check_relative, safe_join

HOSTILE = [
    "../../ESCAPED",
    "/abs/path/ESCAPED",
    "..",
    ".",
    "a/b",
    "a\\b",
    "nul\x00id",
    "tab\tid",
    "x" * 201,
    "é" * (MAX_NAME_BYTES // 2 + 1),
    "C:ESCAPED",
]
SAFE = ["00001", "coco_301091", "000864-0061", "w001", "p00000", "a photo: two cats?", "é" * (MAX_NAME_BYTES // 2)]


def _nothing_escaped(root: Path) -> None:
    """No file named ESCAPED was written anywhere near the test's folders (the hostile ids aim there)."""
    for base in {root, root.parent, root.parent.parent, Path("/abs")}:
        if base.is_dir():
            assert not list(base.glob("ESCAPED*")), base
    assert not Path("/abs/path/ESCAPED").exists()


# ------------------------------------------------------------------------------------------------------- helpers


@pytest.mark.parametrize("name", HOSTILE)
def test_check_name_refuses_what_is_not_one_file_name(name):
    with pytest.raises(UnsafePathError, match=r"prompt id .*cannot be used as a file name"):
        check_name(name, "prompt id")
    assert isinstance(UnsafePathError("x"), InputError)  # the CLI's one-line errors cover it


@pytest.mark.parametrize("name", SAFE)
def test_check_name_accepts_ordinary_ids(name):
    assert check_name(name, "prompt id") == name


def test_check_relative_and_safe_join(tmp_path):
    assert check_relative("annotations/clip.csv", "file") == "annotations/clip.csv"
    for bad in ("../x.csv", "/etc/passwd", "a//b", "a/../b"):
        with pytest.raises(UnsafePathError):
            check_relative(bad, "file")
    assert safe_join(tmp_path, "p1", "0.png") == tmp_path / "p1" / "0.png"
    with pytest.raises(UnsafePathError, match="cannot be used as a file name"):
        safe_join(tmp_path, "..", "ESCAPED")
    outside = tmp_path / "outside"
    outside.mkdir()
    (tmp_path / "folder").mkdir()
    os.symlink(outside, tmp_path / "folder" / "link")
    with pytest.raises(UnsafePathError, match="outside"):  # a safe name that leads out through a symbolic link
        safe_join(tmp_path / "folder", "link", "0.png")


# ------------------------------------------------------------------------------------------- prompt ids, loaders


@pytest.mark.parametrize("name", HOSTILE)
def test_prompt_refuses_an_id_that_is_not_a_file_name(name):
    with pytest.raises(UnsafePathError):
        Prompt(name, "a cat")


@pytest.fixture
def private_registry():
    """Specs registered by a test are removed afterwards."""
    spec_module.list_benchmarks()
    saved = dict(spec_module._SPECS._items)
    yield
    spec_module._SPECS._items.clear()
    spec_module._SPECS._items.update(saved)


def _hostile_files(folder: Path, bad: str) -> dict[str, tuple[str, Path]]:
    """One benchmark folder per loader whose ids come from the file, each with the id ``bad`` on a known line."""
    out = {}
    tifa = folder / "tifa"
    tifa.mkdir()
    (tifa / "tifa_v1.0_text_inputs.json").write_text(
        json.dumps([{"id": "coco_1", "caption": "a cat"}, {"id": bad, "caption": "a dog"}], indent=1)
    )
    out["tifa"] = ("tifa-v1", tifa)
    ir = folder / "imagereward"
    ir.mkdir()
    (ir / "benchmark-prompts.json").write_text(
        json.dumps([{"id": "000001-0001", "prompt": "a cat"}, {"id": bad, "prompt": "a dog"}], indent=1)
    )
    out["imagereward"] = ("imagereward-benchmark", ir)
    genai = folder / "genai"
    genai.mkdir()
    (genai / "genai_image.json").write_text(
        json.dumps({"00001": {"id": "00001", "prompt": "a cat"}, bad: {"prompt": "a dog"}}, indent=1)
    )
    out["genai"] = ("genai-bench-527", genai)
    return out


@pytest.mark.parametrize("bad", ["../../ESCAPED", "/abs/path/ESCAPED", "nul\x00id", "x" * 300])
@pytest.mark.parametrize("loader", ["tifa", "imagereward", "genai"])
def test_loaders_refuse_hostile_ids_naming_file_and_line(tmp_path, bad, loader):
    name, folder = _hostile_files(tmp_path, bad)[loader]
    with pytest.raises(DataFileError) as caught:
        load_benchmark(name, folder)
    message = str(caught.value)
    assert ":" in message and ("prompt id" in message or "prompt index" in message), message
    assert "\n" not in " ".join(message.split())
    _nothing_escaped(tmp_path)


def test_spec_built_ids_are_checked_too(tmp_path, private_registry):
    """Loaders whose ids come from the spec (delimited id_format, T2I-CompBench categories) cannot make a path."""
    (tmp_path / "p.csv").write_text("text\na cat\n")
    base = "title: T\nformat: delimited\nlicense: x\ncitation: x\nobtain: x\nfiles: [{role: prompts, names: [p.csv]}]\n"
    register_benchmark(
        parse_spec("name: escaping\n" + base + "fields: {text: text, id_format: '../../ESCAPED{index}'}\n")
    )
    with pytest.raises(DataFileError, match=r"p.csv:2: field 'id': prompt id '../../ESCAPED0' contains a path sep"):
        load_benchmark("escaping", tmp_path)
    register_benchmark(parse_spec("name: broken-format\n" + base + "fields: {text: text, id_format: '{nope}'}\n"))
    with pytest.raises(DataFileError, match=r"id_format.*'\{nope\}' cannot format a record index"):
        load_benchmark("broken-format", tmp_path)
    t2i = "title: T\nformat: t2i_compbench\nlicense: x\ncitation: x\nobtain: x\nsplits: [val]\n"
    register_benchmark(parse_spec("name: t2i-slash\n" + t2i + "categories: ['../p']\n"))
    (tmp_path / "x").mkdir()
    (tmp_path / "p_val.txt").write_text("a cat\n")  # what '../p' would reach from the benchmark folder x/
    with pytest.raises(DataFileError, match=r"file name '../p_val.txt' contains a path separator"):
        load_benchmark("t2i-slash", tmp_path / "x")
    _nothing_escaped(tmp_path)


def test_spec_file_names_and_downloads_stay_in_their_folder(tmp_path, private_registry, monkeypatch):
    base = "name: s\ntitle: T\nformat: delimited\nlicense: x\ncitation: x\nobtain: x\n"
    with pytest.raises(DataFileError, match=r"field 'files': role 'prompts': file name '../p.csv' contains a path"):
        parse_spec(base + "files: [{role: prompts, names: ['../p.csv']}]\n")
    with pytest.raises(DataFileError, match=r"field 'download': file '/abs/path/ESCAPED' contains a path"):
        parse_spec(base + "download: [{url: 'https://example.invalid/x', file: /abs/path/ESCAPED}]\n")
    # a spec built in code skips parse_spec: the download itself refuses, before any request
    spec = parse_spec(base + "download: [{url: 'https://example.invalid/x', file: p.csv}]\n")
    hostile = spec_module.BenchmarkSpec(
        **{
            **spec.__dict__,
            "name": "hostile-download",
            "download": (spec_module.DownloadSpec("https://example.invalid/x", "../ESCAPED"),),
        }
    )
    register_benchmark(hostile)

    def no_network(*args, **kwargs):
        raise AssertionError("no request may be made")

    monkeypatch.setattr(download_module_urlopen(), "urlopen", no_network)
    with pytest.raises(UnsafePathError, match=r"download file name '../ESCAPED'"):
        download_benchmark("hostile-download", tmp_path / "dest")
    _nothing_escaped(tmp_path)


def download_module_urlopen():
    from noisyclip_metrics.evaluation.benchmarks import download as download_module

    return download_module.urllib.request


# ------------------------------------------------------------------------------------------------ --save-images


def test_save_images_refuses_ids_that_leave_the_folder(tmp_path):
    from noisyclip_metrics.evaluation.runner import _save_images

    folder = tmp_path / "images"
    images = torch.rand(2, 3, 8, 8)
    # ids that bypass Prompt's own check (an object with an id attribute is all _save_images needs)
    chunk = [(SimpleNamespace(id="p1"), 0), (SimpleNamespace(id="../../ESCAPED"), 0)]
    with pytest.raises(UnsafePathError, match=r"prompt id '../../ESCAPED'"):
        _save_images(folder, chunk, images)
    assert not folder.exists()  # every path is checked before the first image is written
    chunk = [(SimpleNamespace(id="/abs/path/ESCAPED"), 1)]
    with pytest.raises(UnsafePathError):
        _save_images(folder, chunk, images[:1])
    folder.mkdir()
    (tmp_path / "elsewhere").mkdir()
    os.symlink(tmp_path / "elsewhere", folder / "p2")
    with pytest.raises(UnsafePathError, match="outside"):
        _save_images(folder, [(SimpleNamespace(id="p2"), 0)], images[:1])
    assert not list((tmp_path / "elsewhere").iterdir())
    _save_images(folder, [(SimpleNamespace(id="p1"), 3)], images[:1])
    assert (folder / "p1" / "3.png").is_file()
    _nothing_escaped(tmp_path)


@pytest.mark.parametrize("bad", ["../../ESCAPED", "/abs/path/ESCAPED"])
def test_evaluate_save_images_with_hostile_benchmark_ids(tmp_path, capsys, bad):
    """End to end: the CLI fails with one line before any model is loaded; nothing is written anywhere."""
    folder = _hostile_files(tmp_path, bad)["tifa"][1]
    out, images = tmp_path / "res", tmp_path / "images"
    code = main(
        [
            "evaluate",
            "--model",
            str(tmp_path / "no-pipeline-needed"),
            "--benchmark",
            "tifa-v1",
            "--benchmark-path",
            str(folder),
            "--judge",
            "clip-final",
            "--save-images",
            str(images),
            "--out",
            str(out),
            "--no-progress",
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    assert "noisyclip evaluate: error:" in err and "tifa_v1.0_text_inputs.json:" in err and "prompt id" in err
    assert not out.exists() and not images.exists()
    _nothing_escaped(tmp_path)


# --------------------------------------------------------------------------------------------------- run ids


def _store_with_run(root: Path, run_id: str = "run1") -> ResultsStore:
    store = ResultsStore.create(root)
    store.write_run(
        RunInfo(run_id, "model-a", "bench", {"num_inference_steps": 2}, (0, 1), {"clip": {}}, {"name": "oracle"})
    )
    return store


@pytest.mark.parametrize("bad", ["../../ESCAPED", "/abs/path/ESCAPED", "other-run"])
def test_run_ids_read_from_a_store_must_be_the_file_name(tmp_path, capsys, bad):
    store = _store_with_run(tmp_path / "results")
    path = store.root / "runs" / "run1.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "run_id": bad}))
    with pytest.raises(SchemaError, match=r"run1.json: run record field 'run_id'"):
        store.runs()
    code = main(["leaderboard", "build", str(store.root), "--out", str(tmp_path / "lb"), "--no-charts"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "run record field 'run_id'" in err
    assert not (tmp_path / "lb").exists()
    _nothing_escaped(tmp_path)


# ----------------------------------------------------------------------------------------------- checkpoints


def test_checkpoint_tokenizer_folder_stays_inside(tmp_path, tiny_model):
    folder = tiny_model.save_pretrained(tmp_path / "ckpt")
    meta = json.loads((folder / "config.json").read_text())
    meta["config"]["tokenizer"] = {"type": "bpe", "subdir": "../../ESCAPED"}
    (folder / "config.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match=r"config.tokenizer.subdir '../../ESCAPED': contains a path separator"):
        type(tiny_model).from_pretrained(folder)
    shutil.rmtree(folder)
