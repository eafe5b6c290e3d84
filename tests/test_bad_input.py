"""Bad user input gives one line on stderr and exit status 2, never a traceback, and writes nothing.

First the cases once seen as tracebacks, one test each; then property-based tests that feed malformed checkpoint
configs, judgments files, prompt files and results-store files to the CLI (in process); then partial judgments.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shutil
import string
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st
from safetensors.torch import load_file

from noisyclip_metrics.cli import main
from noisyclip_metrics.evaluation.judges import Judgment, PartialJudgmentsWarning, check_coverage, write_judgments
from noisyclip_metrics.evaluation.results import ROW_SCHEMA, ResultsStore, RunInfo
from noisyclip_metrics.scoring.model import TINY_TEST_CONFIG, NoisyCLIPModel
from noisyclip_metrics.testing import tiny_pipeline

# NOISYCLIP_FUZZ_EXAMPLES=500 explores further (the default keeps the suite fast)
SETTINGS = settings(
    max_examples=int(os.environ.get("NOISYCLIP_FUZZ_EXAMPLES", "25")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)


def run_cli(argv: list[str]) -> tuple[int, str, str]:
    """``noisyclip ARGV`` in this process: (exit status, stdout, stderr). An exception escaping ``main`` is a
    traceback the user would see, and fails the test as it is."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), warnings.catch_warnings():
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


def assert_one_line_error(code: int, err: str, command: str) -> None:
    assert code == 2, err
    assert err.count("\n") == 1 and err.endswith("\n"), err
    assert err.startswith(f"noisyclip {command}: error: "), err
    assert "Traceback" not in err, err


def tree(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` with its content (to show nothing was written)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# ------------------------------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def assets(tmp_path_factory) -> Path:
    """A tiny checkpoint, a tiny SD pipeline, a prompt file and a results store with two complete runs."""
    root = tmp_path_factory.mktemp("bad-input")
    NoisyCLIPModel.from_config(TINY_TEST_CONFIG, preview="sd1", seed=0).save_pretrained(root / "clip")
    (root / "prompts.txt").write_text("a red circle\ntwo blue squares\n")
    store = ResultsStore.create(root / "results")
    for run_id, model in (("run1", "model-a"), ("run2", "model-b")):
        store.write_run(
            RunInfo(
                run_id,
                model,
                "bench",
                {"num_inference_steps": 2},
                (0, 1),
                {"clip": {}},
                {"name": "oracle"},
                num_prompts=2,
            )
        )
        store.write_prompts(run_id, ["p0", "p1"], ["a red cube", "two cats"], [["attribute"], ["counting"]])
        cols: dict[str, list] = {name: [] for name in ROW_SCHEMA.names}
        for pid in ("p0", "p1"):
            for seed in (0, 1):
                rows = [("judgment", None, None, None, None, "oracle", float(seed), seed == 1)]
                rows += [("score", k, 2, 10.0 * (2 - k), "clip", None, 0.1 * (seed + k), None) for k in range(3)]
                for kind, step, steps, t, scorer, judge, score, aligned in rows:
                    for key, value in zip(
                        cols,
                        (kind, run_id, model, "bench", pid, seed, step, steps, t, scorer, judge, score, aligned),
                        strict=True,
                    ):
                        cols[key].append(value)
        store.append(run_id, cols, "chunk-0")
    return root


@pytest.fixture(scope="module")
def pipe(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("pipe")
    tiny_pipeline("sd", root / "pipe")
    return root / "pipe"


def _checkpoint(assets: Path, where: Path, mutate: Callable[[dict], object]) -> Path:
    folder = where / "ckpt"
    shutil.copytree(assets / "clip", folder)
    meta = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps(mutate(meta)))
    return folder


def _wise_ft(assets: Path, folder: Path, out: Path) -> tuple[int, str]:
    code, _, err = run_cli(
        ["wise-ft", "--finetuned", str(folder), "--base", str(assets / "clip"), "--alpha", "0.5", "--out", str(out)]
    )
    return code, err


# ---------------------------------------------------------------------------------------- tracebacks once seen


def _set(path: str, value: object) -> Callable[[dict], dict]:
    def mutate(meta: dict) -> dict:
        keys = path.split(".")
        node = meta
        for key in keys[:-1]:
            node = node[key]
        node[keys[-1]] = value
        return meta

    return mutate


SEEN = {
    "config.json is a list": (lambda m: [m], r"config.json: expected a JSON object .*found array"),
    "unknown arch, model_cfg null": (
        lambda m: _set("config.arch", "NoSuchArch")(_set("config.model_cfg", None)(m)),
        r"config.model_cfg: expected an object with embed_dim, vision_cfg and text_cfg, found null",
    ),
    "embed_dim does not match": (
        _set("config.model_cfg.embed_dim", 16),
        (
            r"model.safetensors: weights do not match config.json: 'text_projection' has shape \(64, 32\) in the "
            r"file, the config's model expects \(64, 16\)"
        ),
    ),
    "image_size big": (
        _set("config.model_cfg.vision_cfg.image_size", "big"),
        r"config.model_cfg.vision_cfg.image_size: expected a positive integer or a pair of them, found string 'big'",
    ),
    "config is a string": (
        _set("config", "hello"),
        r"config: expected a JSON object \(the model config\), found string",
    ),
}


@pytest.mark.parametrize("case", sorted(SEEN))
def test_checkpoint_configs_once_seen_as_tracebacks(assets, tmp_path, case):
    mutate, expected = SEEN[case]
    code, err = _wise_ft(assets, _checkpoint(assets, tmp_path, mutate), tmp_path / "out")
    assert_one_line_error(code, err, "wise-ft")
    assert pytest.importorskip("re").search(expected, err), err
    assert "unknown keys ['e'" not in err
    assert not (tmp_path / "out").exists()


def test_diffusers_folder_with_only_pickle_weights(assets, pipe, tmp_path):
    folder = tmp_path / "pipe-bin"
    shutil.copytree(pipe, folder)
    for weights in folder.rglob("*.safetensors"):  # the same weights, saved the way old checkpoints were
        name = "pytorch_model.bin" if weights.name == "model.safetensors" else "diffusion_pytorch_model.bin"
        torch.save(load_file(str(weights)), weights.with_name(name))
        weights.unlink()
    code, _, err = run_cli(
        [
            "evaluate",
            "--model",
            str(folder),
            "--benchmark",
            str(assets / "prompts.txt"),
            "--judge",
            "clip-final",
            "--clip",
            str(assets / "clip"),
            "--scorers",
            "clip",
            "--out",
            str(tmp_path / "res"),
            "--no-progress",
        ]
    )
    assert_one_line_error(code, err, "evaluate")
    assert "only pickle weights ['pytorch_model.bin'], which are never loaded" in err
    assert "convert them to safetensors" in err and not (tmp_path / "res").exists()
    (folder / "model_index.json").write_text("[1, 2")
    code, _, err = run_cli(
        [
            "evaluate",
            "--model",
            str(folder),
            "--benchmark",
            str(assets / "prompts.txt"),
            "--judge",
            "clip-final",
            "--out",
            str(tmp_path / "res"),
            "--no-progress",
        ]
    )
    assert_one_line_error(code, err, "evaluate")
    assert "model_index.json: pipeline index (model_index.json) is not valid JSON" in err


def test_corrupt_run_record_in_leaderboard_build_and_evaluate(assets, pipe, tmp_path):
    store = tmp_path / "results"
    shutil.copytree(assets / "results", store)
    record = store / "runs" / "run1.json"
    record.write_text(record.read_text()[:60])
    code, _, err = run_cli(["leaderboard", "build", str(store), "--out", str(tmp_path / "lb"), "--no-charts"])
    assert_one_line_error(code, err, "leaderboard build")
    assert "runs/run1.json: run record is not valid JSON (line" in err and "(file truncated?)" in err
    assert not (tmp_path / "lb").exists()
    # evaluate reads the record of the run it resumes: corrupt it and run the same command again
    argv = [
        "evaluate",
        "--model",
        str(pipe),
        "--benchmark",
        str(assets / "prompts.txt"),
        "--judge",
        "clip-final",
        "--clip",
        str(assets / "clip"),
        "--scorers",
        "clip",
        "--seeds",
        "0",
        "--num-inference-steps",
        "2",
        "--height",
        "32",
        "--width",
        "32",
        "--out",
        str(tmp_path / "res"),
        "--no-progress",
    ]
    assert run_cli(argv)[0] == 0
    (own,) = (tmp_path / "res" / "runs").glob("*.json")
    own.write_bytes(b"\xff\xfe not json")
    before = tree(tmp_path / "res")
    code, _, err = run_cli(argv)
    assert_one_line_error(code, err, "evaluate")
    assert f"{own.name}:1: run record is not valid UTF-8" in err and tree(tmp_path / "res") == before


@pytest.mark.parametrize("suffix", [".jsonl", ".csv"])
def test_deeply_nested_judgments(assets, tmp_path, suffix):
    path = tmp_path / f"deep{suffix}"
    if suffix == ".jsonl":
        path.write_text(
            '{"prompt_id": "p0", "candidate_id": "0", "judge": "h", "score": 1}\n'
            + "[" * 100_000
            + "]" * 100_000
            + "\n"
        )
    else:
        path.write_text("prompt_id,candidate_id,judge,score\np0,0,h," + "[" * 100_000 + "\n")
    code, _, err = run_cli(
        [
            "correlate",
            "--results",
            str(assets / "results"),
            "--judgments",
            str(path),
            "--json",
            str(tmp_path / "c.json"),
        ]
    )
    assert_one_line_error(code, err, "correlate")
    assert f"deep{suffix}:2" in err and not (tmp_path / "c.json").exists()
    if suffix == ".jsonl":
        assert "nested too deeply" in err


def test_config_file_values_of_the_wrong_type(assets, tmp_path):
    config = tmp_path / "settings.json"
    for values, expected in (
        ({"seeds": "0 1"}, "setting 'seeds': Expected a tuple. Got value: 0 1"),
        ({"seeds": [0, True]}, "setting 'seeds': Expected a int. Got value: True"),
        ({"batch_size": "eight"}, "setting 'batch_size': Expected a int. Got value: eight"),
        ({"batch_size": 8.5}, "setting 'batch_size': Expected a int. Got value: 8.5"),
        ({"guidance_scale": [1]}, "setting 'guidance_scale': expected float or null, got list [1]"),
        ({"sedes": [1]}, "--config: unknown settings ['sedes']"),
    ):
        config.write_text(json.dumps(values))
        code, _, err = run_cli(
            [
                "evaluate",
                "--model",
                "m",
                "--out",
                str(tmp_path / "res"),
                "--judge",
                "clip-final",
                "--config",
                str(config),
            ]
        )
        assert_one_line_error(code, err, "evaluate")
        assert expected in err, err
    yaml_config = tmp_path / "settings.yaml"
    for text, expected in (
        ("seeds: [0, 1]\nbatch_size: big\n", "setting 'batch_size': Expected a int. Got value: big"),
        ("seeds: [0, 1\n", "settings.yaml is not valid YAML"),
        ("- 1\n- 2\n", "settings.yaml must hold an object of settings"),
    ):
        yaml_config.write_text(text)
        code, _, err = run_cli(
            ["evaluate", "--model", "m", "--out", str(tmp_path / "res"), "--config", str(yaml_config)]
        )
        assert_one_line_error(code, err, "evaluate")
        assert expected in err and not (tmp_path / "res").exists(), err
    config.write_text("[" * 50_000)
    code, _, err = run_cli(["evaluate", "--model", "m", "--out", str(tmp_path / "res"), "--config", str(config)])
    assert_one_line_error(code, err, "evaluate")
    assert "--config file is nested too deeply" in err and not (tmp_path / "res").exists()


# --------------------------------------------------------------------------------------------- JSON strategies

JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(10**6), 10**6)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
DEEP = st.integers(2_000, 60_000).map(lambda n: "[" * n + "]" * n)
GARBAGE = st.binary(max_size=200) | st.text(max_size=200).map(str.encode)


def _json_bytes(value: object) -> bytes:
    return json.dumps(value).encode()


# ------------------------------------------------------------------------------------- malformed checkpoint configs


def _not(*valid: object) -> Callable[[object], bool]:
    return lambda v: not any(type(v) is type(ok) and v == ok for ok in valid)


NOT_POSITIVE_INT = JSON.filter(lambda v: not (isinstance(v, int) and not isinstance(v, bool) and v > 0)) | st.integers(
    -5, 0
)
CONFIG_FIELDS = {
    "format": JSON.filter(_not("noisyclip-metrics")),
    "format_version": JSON.filter(lambda v: not (v == 1 and not isinstance(v, bool))),
    "config": JSON.filter(lambda v: not isinstance(v, dict))
    | st.dictionaries(st.sampled_from(["x", "e", "model"]), JSON, min_size=1, max_size=2),
    "config.model_cfg": JSON.filter(lambda v: not isinstance(v, dict)) | st.fixed_dictionaries({"embed_dim": JSON}),
    "config.model_cfg.embed_dim": JSON.filter(_not(32)) | st.integers(1, 512).filter(_not(32)),
    "config.model_cfg.vision_cfg": JSON.filter(lambda v: not isinstance(v, dict)),
    "config.model_cfg.vision_cfg.image_size": NOT_POSITIVE_INT
    | st.just("big")
    | st.lists(st.integers(-2, 0), min_size=2, max_size=2),
    "config.model_cfg.text_cfg.context_length": NOT_POSITIVE_INT,
    "config.model_cfg.text_cfg.width": JSON.filter(_not(64)),
    "config.model_cfg.vision_cfg.layers": JSON.filter(_not(2)) | st.integers(3, 6),
    "config.image_mean": JSON.filter(lambda v: not (isinstance(v, list) and len(v) == 3))
    | st.lists(st.text(), min_size=3, max_size=3),
    "config.image_std": st.lists(st.integers(-3, 0), min_size=3, max_size=3)
    | JSON.filter(lambda v: not isinstance(v, list)),
    "config.tokenizer": JSON.filter(lambda v: not isinstance(v, dict))
    | st.fixed_dictionaries({"type": st.text(max_size=8).filter(_not("open_clip"))})
    | st.just({"type": "bpe", "subdir": "../../ESCAPED"}),
    "config.arch": JSON.filter(lambda v: v is not None and not isinstance(v, str)),
    "config.reads": JSON.filter(_not("latents", "x0")),
    "config.interpolation": JSON.filter(_not("bilinear", "bicubic")),
    "config.preview_name": JSON.filter(lambda v: not isinstance(v, str)),
    "text_from": JSON.filter(lambda v: not isinstance(v, str)) | st.just("../nowhere"),
}


@st.composite
def bad_checkpoint_configs(draw: st.DrawFn) -> tuple[str, object]:
    """(what was broken, new ``config.json`` bytes or a field path and value)."""
    kind = draw(st.sampled_from(["field", "field", "field", "document", "garbage", "deep"]))
    if kind == "field":
        path = draw(st.sampled_from(sorted(CONFIG_FIELDS)))
        return path, draw(CONFIG_FIELDS[path])
    if kind == "document":
        return "document", _json_bytes(draw(JSON.filter(lambda v: not isinstance(v, dict))))
    return kind, draw(GARBAGE if kind == "garbage" else DEEP.map(str.encode))


@SETTINGS
@given(case=bad_checkpoint_configs())
@example(case=("document", b"[]"))
@example(case=("config.model_cfg", None))
@example(case=("config.model_cfg.embed_dim", 16))
@example(case=("config.model_cfg.vision_cfg.image_size", "big"))
@example(case=("config", "hello"))
def test_property_malformed_checkpoint_configs(assets, case):
    what, value = case
    with tempfile.TemporaryDirectory() as tmp:
        where = Path(tmp)
        if isinstance(value, bytes) and what in ("document", "garbage", "deep"):
            folder = _checkpoint(assets, where, lambda m: m)
            (folder / "config.json").write_bytes(value)
        else:
            folder = _checkpoint(assets, where, _set(what, value))
        code, err = _wise_ft(assets, folder, where / "out")
        assert_one_line_error(code, err, "wise-ft")
        assert str(folder) in err, err  # the message names the checkpoint
        assert not (where / "out").exists()
        assert not list(where.parent.glob("ESCAPED*"))


# ------------------------------------------------------------------------------------------ malformed judgments

FIELDS = ["prompt_id", "candidate_id", "judge", "score", "model", "rater"]


@st.composite
def bad_judgments_files(draw: st.DrawFn) -> tuple[str, bytes]:
    suffix = draw(st.sampled_from([".jsonl", ".csv", ".tsv"]))
    kind = draw(st.sampled_from(["garbage", "deep", "records", "records", "table"]))
    if kind == "garbage":
        return suffix, draw(GARBAGE)
    if kind == "deep":
        return suffix, draw(DEEP).encode()
    if kind == "records" or suffix == ".jsonl":
        record = st.dictionaries(st.sampled_from(FIELDS), JSON, max_size=6) | JSON
        lines = draw(st.lists(record, min_size=1, max_size=4))
        if suffix == ".jsonl":
            return suffix, "".join(json.dumps(r) + "\n" for r in lines).encode()
        return suffix, "\n".join(json.dumps(r) for r in lines).encode()
    sep = "\t" if suffix == ".tsv" else ","
    header = draw(st.lists(st.sampled_from([*FIELDS, "x"]), min_size=1, max_size=6, unique=True))
    cell = st.text(string.printable.replace("\n", "").replace("\r", ""), max_size=6)
    rows = draw(st.lists(st.lists(cell, min_size=0, max_size=7), max_size=4))
    return suffix, "\n".join([sep.join(header)] + [sep.join(r) for r in rows]).encode()


@SETTINGS
@given(case=bad_judgments_files())
@example(case=(".jsonl", ("[" * 100_000 + "]" * 100_000).encode()))
@example(case=(".jsonl", b'{"prompt_id": [1], "candidate_id": "0", "judge": "h", "score": 1}\n'))
@example(case=(".jsonl", b'{"prompt_id": "p0", "candidate_id": "0", "judge": "h", "score": {"a": [[[[1]]]]}}\n'))
@example(case=(".csv", b"prompt_id,candidate_id,judge,score\np0,0,h,1\n"))  # valid, but covers 1 of 8 candidates
def test_property_malformed_judgments_files(assets, case):
    suffix, content = case
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"judgments{suffix}"
        path.write_bytes(content)
        before = tree(assets / "results")
        code, _, err = run_cli(
            [
                "correlate",
                "--results",
                str(assets / "results"),
                "--judgments",
                str(path),
                "--json",
                str(Path(tmp) / "out.json"),
            ]
        )
        assert_one_line_error(code, err, "correlate")
        assert not (Path(tmp) / "out.json").exists() and tree(assets / "results") == before


# --------------------------------------------------------------------------------------------- malformed prompts

PROMPT_FILES = {  # benchmark -> the file its loader reads, and what one good record looks like
    "prompts.txt": ("prompts.txt", None),
    "tifa-v1": ("tifa_v1.0_text_inputs.json", {"id": "coco_1", "caption": "a cat"}),
    "imagereward-benchmark": ("benchmark-prompts.json", {"id": "000001-0001", "prompt": "a cat"}),
    "genai-bench-527": ("genai_image.json", {"id": "00001", "prompt": "a cat"}),
    "geneval": ("evaluation_metadata.jsonl", {"tag": "single_object", "include": [], "prompt": "a cat"}),
    "drawbench": ("drawbench_prompts.csv", None),
    "partiprompts": ("PartiPrompts.tsv", None),
}


@st.composite
def bad_prompt_files(draw: st.DrawFn) -> tuple[str, bytes]:
    benchmark = draw(st.sampled_from(sorted(PROMPT_FILES)))
    file, good = PROMPT_FILES[benchmark]
    kind = draw(st.sampled_from(["garbage", "deep", "json", "mutated", "mutated"]))
    if kind == "garbage" or (kind == "mutated" and good is None):
        return benchmark, draw(GARBAGE)
    if kind == "deep":
        return benchmark, draw(DEEP).encode()
    if kind == "json":
        return benchmark, _json_bytes(draw(JSON))
    record = dict(good)
    key = draw(st.sampled_from([*sorted(good), "exclude", "id", "models", "prompt in Chinese"]))
    record[key] = draw(JSON | st.sampled_from(["../../ESCAPED", "/abs/path/ESCAPED", "a\x00b", "x" * 300]))
    if file.endswith(".jsonl"):
        return benchmark, (json.dumps(good) + "\n" + json.dumps(record) + "\n").encode()
    if benchmark == "genai-bench-527":
        return benchmark, _json_bytes({"00001": good, "00002": {**record, "id": record.get("id")}})
    return benchmark, _json_bytes([good, record])


@SETTINGS
@given(case=bad_prompt_files())
@example(case=("geneval", b'{"tag": "single_object", "include": [], "exclude": 5, "prompt": "a cat"}\n'))
@example(case=("genai-bench-527", _json_bytes({"\u00b2": {"id": "2", "prompt": "a cat"}})))
@example(case=("genai-bench-527", _json_bytes({"00001": {"id": "\u00b9", "prompt": "a cat"}})))
@example(case=("tifa-v1", _json_bytes([{"id": "../../ESCAPED", "caption": "a cat"}])))
def test_property_malformed_prompt_files(assets, case):
    benchmark, content = case
    file = PROMPT_FILES[benchmark][0]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / file
        path.write_bytes(content)
        where = (
            ["--benchmark", str(path)]
            if benchmark.endswith(".txt")
            else ["--benchmark", benchmark, "--benchmark-path", str(path)]
        )
        out = Path(tmp) / "res"
        code, _, err = run_cli(
            [
                "evaluate",
                "--model",
                str(Path(tmp) / "no-such-pipeline"),
                *where,
                "--judge",
                "clip-final",
                "--save-images",
                str(Path(tmp) / "images"),
                "--out",
                str(out),
                "--no-progress",
            ]
        )
        # a malformed file is refused when read; a well-formed one gets as far as the (missing) pipeline
        assert_one_line_error(code, err, "evaluate")
        assert not out.exists() and not (Path(tmp) / "images").exists()
        assert not list(Path(tmp).parent.glob("ESCAPED*"))


# --------------------------------------------------------------------------------------- malformed results stores

RUN_FIELDS = [
    "run_id",
    "model",
    "benchmark",
    "sampler",
    "seeds",
    "scorers",
    "judge",
    "model_info",
    "num_prompts",
    "timing",
    "segments",
    "created",
]


@st.composite
def bad_run_records(draw: st.DrawFn) -> tuple[str, bytes | tuple[str, object]]:
    """(file, new content) for ``runs/run1.json`` or ``store.json`` of a copy of the good store."""
    kind = draw(st.sampled_from(["field", "field", "field", "truncated", "document", "garbage", "deep", "manifest"]))
    if kind == "field":
        field = draw(st.sampled_from(RUN_FIELDS))
        value = draw(JSON)
        if field == "run_id":
            value = draw(JSON.filter(_not("run1")) | st.sampled_from(["../../ESCAPED", "/abs/ESCAPED", "run2"]))
        return "runs/run1.json", (field, value)
    if kind == "truncated":
        return "runs/run1.json", ("truncate", draw(st.integers(0, 200)))
    if kind == "document":
        return "runs/run1.json", _json_bytes(draw(JSON.filter(lambda v: not isinstance(v, dict))))
    if kind == "manifest":
        manifest = JSON.filter(
            lambda v: (
                not (isinstance(v, dict) and v.get("schema") == "noisyclip-results" and v.get("schema_version") == 1)
            )
        )
        return "store.json", draw(GARBAGE | manifest.map(_json_bytes))
    return "runs/run1.json", draw(GARBAGE if kind == "garbage" else DEEP.map(str.encode))


def _valid_field(field: str, value: object) -> bool:
    """Whether ``value`` is a valid value of run-record ``field`` (hypothesis draws some): nothing to refuse then."""

    def ints(v: object) -> bool:
        return isinstance(v, list) and all(isinstance(x, int) and not isinstance(x, bool) for x in v)

    return {
        "run_id": lambda v: v == "run1",
        "model": lambda v: isinstance(v, str),
        "benchmark": lambda v: isinstance(v, str),
        "created": lambda v: isinstance(v, str),
        "sampler": lambda v: isinstance(v, dict),
        "judge": lambda v: isinstance(v, dict),
        "model_info": lambda v: isinstance(v, dict),
        "timing": lambda v: isinstance(v, dict),
        "seeds": lambda v: ints(v) and len(v) == len(set(v)) > 0,
        "scorers": lambda v: isinstance(v, dict) and all(isinstance(x, dict) for x in v.values()),
        "num_prompts": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "segments": lambda v: v is None or (isinstance(v, list) and all(isinstance(x, dict) for x in v)),
    }[field](value)


@SETTINGS
@given(case=bad_run_records())
@example(case=("runs/run1.json", ("truncate", 60)))
@example(case=("runs/run1.json", ("run_id", "../../ESCAPED")))
@example(case=("runs/run1.json", ("seeds", [True, "x"])))
@example(case=("runs/run1.json", ("scorers", {"clip": 5})))
@example(case=("runs/run1.json", ("sampler", [])))
def test_property_malformed_results_store_files(assets, case):
    file, change = case
    assume(not (isinstance(change, tuple) and change[0] != "truncate" and _valid_field(*change)))
    with tempfile.TemporaryDirectory() as tmp:
        store = Path(tmp) / "results"
        shutil.copytree(assets / "results", store)
        path = store / file
        if isinstance(change, bytes):
            path.write_bytes(change)
        elif change[0] == "truncate":
            path.write_bytes(path.read_bytes()[: change[1]])
        else:
            path.write_text(json.dumps({**json.loads(path.read_text()), change[0]: change[1]}))
        before = tree(store)
        for argv, command in (
            (["leaderboard", "build", str(store), "--out", str(Path(tmp) / "lb"), "--no-charts"], "leaderboard build"),
            (["correlate", "--results", str(store), "--json", str(Path(tmp) / "c.json")], "correlate"),
        ):
            code, _, err = run_cli(argv)
            assert_one_line_error(code, err, command)
            assert file.split("/")[-1] in err, err
        assert tree(store) == before and not (Path(tmp) / "lb").exists() and not (Path(tmp) / "c.json").exists()
        assert not list(Path(tmp).parent.glob("ESCAPED*"))


# ------------------------------------------------------------------------------------------- partial judgments


def _human(pairs: list[tuple[str, int]]) -> list[Judgment]:
    return [Judgment(p, str(s), None, "human", float(s) + (p == "p1")) for p, s in pairs]


def test_partial_judgments_file_is_refused_unless_allowed(assets, tmp_path):
    path = write_judgments(tmp_path / "human.csv", _human([("p0", 0), ("p0", 1), ("p1", 0)]))  # p1/1 missing
    argv = ["correlate", "--results", str(assets / "results"), "--judgments", str(path), "--scorer", "clip"]
    code, out, err = run_cli(argv)
    assert_one_line_error(code, err, "correlate")
    assert "human.csv (run run1, model-a): 1 of 4 candidates have no judgment (e.g. p1/1); pass --allow-partial" in err
    assert out == ""
    with pytest.warns(PartialJudgmentsWarning, match=r"1 of 4 candidates have no judgment .*--allow-partial"):
        code, out, err = run_cli([*argv, "--allow-partial"])
    assert code == 0, err
    assert "step 2/2" in out
    full = write_judgments(tmp_path / "full.csv", _human([(p, s) for p in ("p0", "p1") for s in (0, 1)]))
    code, out, err = run_cli(["correlate", "--results", str(assets / "results"), "--judgments", str(full)])
    assert code == 0 and "warning" not in err, err


def test_partial_judgments_are_refused_by_the_api_too(assets, tmp_path):
    """``correlate()`` itself refuses (the CLI only forwards ``--allow-partial``): a file or judgments in memory."""
    from noisyclip_metrics.errors import DataFileError
    from noisyclip_metrics.evaluation.correlate import correlate

    partial = _human([("p0", 0), ("p0", 1), ("p1", 0)])  # p1/1 missing
    path = write_judgments(tmp_path / "human.csv", partial)
    store, kwargs = assets / "results", {"scorer": "clip", "model": "model-a"}
    for judgments, source in ((path, str(path)), (partial, "judgments")):
        with pytest.raises(DataFileError, match=re.escape(f"{source} (run run1, model-a): 1 of 4 candidates have no")):
            correlate(store, judgments=judgments, **kwargs)
        with pytest.warns(PartialJudgmentsWarning, match="1 of 4 candidates have no judgment"):
            rows = correlate(store, judgments=judgments, allow_partial=True, **kwargs)
        assert {r["n_items"] for r in rows if r["skill"] == "overall"} == {3}  # the unjudged candidate left out


def test_partial_judgments_per_run_model(assets, tmp_path):
    """A judgment naming another run's model does not cover this run's candidates (correlate's own rule)."""
    both = [Judgment(p, str(s), "model-a", "human", 1.0 + s) for p in ("p0", "p1") for s in (0, 1)]
    path = write_judgments(tmp_path / "a-only.csv", both)
    code, _, err = run_cli(["correlate", "--results", str(assets / "results"), "--judgments", str(path)])
    assert_one_line_error(code, err, "correlate")
    assert "(run run2, model-b): 4 of 4 candidates have no judgment" in err
    code, _, err = run_cli(
        ["correlate", "--results", str(assets / "results"), "--judgments", str(path), "--model", "model-a"]
    )
    assert code == 0, err


def test_check_coverage_api():
    js = _human([("p0", 0)])
    assert check_coverage(js, [("p0", "0")]) == []
    with pytest.raises(Exception, match="1 of 2 candidates have no judgment"):
        check_coverage(js, [("p0", "0"), ("p0", "1")])
    with pytest.warns(PartialJudgmentsWarning, match="left out"):
        assert check_coverage(js, [("p0", "0"), ("p0", 1)], allow_partial=True) == [("p0", "1")]


def test_deeply_nested_store_manifest_and_corrupt_prompt_table(assets, tmp_path):
    # both were tracebacks (RecursionError from store.json, ArrowInvalid from prompts/<run>.parquet)
    store = tmp_path / "results"
    shutil.copytree(assets / "results", store)
    manifest = (store / "store.json").read_text()
    (store / "store.json").write_text("[" * 100_000 + "]" * 100_000)
    code, _, err = run_cli(["leaderboard", "build", str(store), "--out", str(tmp_path / "lb"), "--no-charts"])
    assert_one_line_error(code, err, "leaderboard build")
    assert "store.json" in err and not (tmp_path / "lb").exists()
    (store / "store.json").write_text(manifest)
    table = next((store / "prompts").glob("*.parquet"))
    table.write_bytes(table.read_bytes()[:40])
    code, _, err = run_cli(["leaderboard", "build", str(store), "--out", str(tmp_path / "lb"), "--no-charts"])
    assert_one_line_error(code, err, "leaderboard build")
    assert "unreadable prompt table" in err and not (tmp_path / "lb").exists()
