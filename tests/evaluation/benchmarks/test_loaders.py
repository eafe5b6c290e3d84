"""Benchmark specs and loaders: the real files in ../shared/data, synthetic files, and malformed variants."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from importlib import resources
from pathlib import Path

import pytest

from noisyclip_metrics.errors import DataFileError, InputError, UnknownNameError
from noisyclip_metrics.evaluation.benchmarks import (
    SKILLS,
    Prompt,
    PromptSet,
    benchmark_spec,
    download_benchmark,
    list_benchmarks,
    load_benchmark,
    parse_spec,
    register_benchmark,
    with_skill_groups,
)
from noisyclip_metrics.evaluation.benchmarks import adapters as spec_module
from noisyclip_metrics.evaluation.benchmarks import download as download_module

REPO = Path(__file__).resolve().parents[3]
DATA = REPO / ".." / "shared" / "data"
needs_data = pytest.mark.skipif(not DATA.is_dir(), reason=f"real benchmark files not found at {DATA}")

FOLDERS = {
    "genai-bench-527": "genai-bench",
    "t2i-compbench": "t2i-compbench",
    "tifa-v1": "tifa",
    "drawbench": "drawbench",
    "partiprompts": "partiprompts",
    "geneval": "geneval",
    "imagereward-test": "imagereward",
    "imagereward-benchmark": "imagereward",
}


# --------------------------------------------------------------------------------------------------------- specs


@pytest.fixture
def private_registry():
    """Specs registered by a test are removed afterwards."""
    list_benchmarks()  # load the built-in specs first
    saved = dict(spec_module._SPECS._items)
    yield
    spec_module._SPECS._items.clear()
    spec_module._SPECS._items.update(saved)


def test_builtin_specs_are_complete():
    names = list_benchmarks()
    assert set(FOLDERS) | {"genai-bench-1600"} <= set(names)
    for name in names:
        spec = benchmark_spec(name)
        assert (spec.license and spec.citation and spec.obtain and spec.files) or spec.format in (
            "t2i_compbench",
            "world",
        )
        for skills in spec.skill_map.values():
            assert set(skills) <= set(SKILLS)


def test_specs_are_package_resources():
    files = {e.name for e in resources.files("noisyclip_metrics.adapters").iterdir()}
    assert {f"{name}.yaml" for name in FOLDERS} <= files


def test_pyproject_lists_every_subpackage():
    """setuptools cannot mix packages.find with the adapters/ mapping, so the list is explicit: keep it complete."""
    tomllib = pytest.importorskip("tomllib", reason="tomllib needs Python 3.11+")
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    assert config["package-dir"]["noisyclip_metrics.adapters"] == "adapters"
    found = {
        ".".join(p.parent.relative_to(REPO).parts)
        for p in (REPO / "noisyclip_metrics").rglob("__init__.py")
        if "__pycache__" not in p.parts
    }
    missing = sorted(found - listed)
    assert not missing, f"add {missing} to [tool.setuptools] packages in pyproject.toml"


def test_unknown_benchmark_gets_did_you_mean():
    with pytest.raises(UnknownNameError, match="did you mean 'geneval'"):
        load_benchmark("gen-eval", ".")


def test_parse_spec_errors_name_the_field():
    base = "name: x\ntitle: X\nformat: delimited\nlicense: MIT\ncitation: c\nobtain: o\n"
    with pytest.raises(DataFileError, match=r"<spec>:7: field 'catgories': unknown key; did you mean 'categories'"):
        parse_spec(base + "catgories: [a]\n")
    with pytest.raises(DataFileError, match="field 'license': required"):
        parse_spec(base.replace("license: MIT\n", ""))
    with pytest.raises(DataFileError, match="unknown skill 'countng'; did you mean 'counting'"):
        parse_spec(base + "skill_map: {A: [countng]}\n")
    with pytest.raises(DataFileError, match="invalid YAML"):
        parse_spec(base + "files: [\n")


def test_user_spec_registration_and_loading(tmp_path, private_registry):
    (tmp_path / "mine.csv").write_text("text,kind\nthree red cubes,count\na cat,plain\n", encoding="utf-8")
    spec_file = tmp_path / "my-bench.yaml"
    spec_file.write_text(
        "name: my-bench\ntitle: Mine\nformat: delimited\nlicense: CC0\ncitation: none\nobtain: local\n"
        "files: [{role: prompts, names: [mine.csv]}]\nfields: {text: text, category: kind, skill_columns: [kind]}\n"
        "skill_map: {count: [counting]}\n",
        encoding="utf-8",
    )
    register_benchmark(spec_file)
    prompts = load_benchmark("my-bench", tmp_path)
    assert [(p.id, p.skills, p.category) for p in prompts] == [("0000", ("counting",), "count"), ("0001", (), "plain")]
    bad = tmp_path / "bad.yaml"
    bad.write_text(spec_file.read_text().replace("my-bench", "bad-bench").replace("delimited", "delimted"))
    with pytest.raises(UnknownNameError, match="did you mean 'delimited'"):
        register_benchmark(bad)


# ---------------------------------------------------------------------------------------------------- real files


@needs_data
@pytest.mark.parametrize("name", sorted(FOLDERS))
def test_real_file_counts_and_known_entries(name):
    spec = benchmark_spec(name)
    prompts = load_benchmark(name, DATA / FOLDERS[name])
    if "prompts" in spec.expected:
        assert len(prompts) == spec.expected["prompts"]
    for prompt_id, text in (spec.expected.get("entries") or {}).items():
        assert prompts[str(prompt_id)].text == text
    assert all(p.source == name for p in prompts)
    json.dumps(prompts.to_records())  # plain, serialisable records


@needs_data
def test_real_category_counts():
    drawbench = load_benchmark("drawbench", DATA / "drawbench")
    assert Counter(p.category for p in drawbench) == benchmark_spec("drawbench").expected["categories"]
    geneval = load_benchmark("geneval", DATA / "geneval")
    assert Counter(p.category for p in geneval) == benchmark_spec("geneval").expected["tags"]
    assert geneval["00000"].extra["include"] == ({"class": "bench", "count": 1},)
    spatial = {p.id for p in geneval.filter(skill="spatial relation")}
    assert spatial == {p.id for p in geneval.filter(category="position")}
    tifa = load_benchmark("tifa-v1", DATA / "tifa")
    assert Counter(p.category for p in tifa) == benchmark_spec("tifa-v1").expected["subsets"]
    parti = load_benchmark("partiprompts", DATA / "partiprompts")
    counts = Counter(p.extra["Challenge"] for p in parti)
    assert counts["Fine-grained Detail"] == 312 and counts["Basic"] == 272
    assert len(parti.filter(skill="counting")) == counts["Quantity"]


@needs_data
def test_t2i_compbench_splits_and_categories():
    folder = DATA / "t2i-compbench"
    val = load_benchmark("t2i-compbench", folder)
    assert len(val) == 8 * 300 and val.splits() == ["val"]
    both = load_benchmark("t2i-compbench", folder, split=["train", "val"], categories=["color", "numeracy"])
    assert Counter((p.category, p.split) for p in both) == {
        ("color", "train"): 700,
        ("color", "val"): 300,
        ("numeracy", "train"): 700,
        ("numeracy", "val"): 300,
    }
    full = load_benchmark("t2i-compbench", folder, split="full")
    assert Counter(p.category for p in full) == benchmark_spec("t2i-compbench").expected["full"]
    seen = load_benchmark("t2i-compbench", folder, split="val_seen")
    assert set(seen.categories()) == {"color", "shape", "texture"} and len(seen) == 600
    assert set(val.filter(category="complex")[0].skills) == {"attribute", "spatial relation", "action relation"}
    with pytest.raises(InputError, match="unknown split 'vall'; did you mean 'val'"):
        load_benchmark("t2i-compbench", folder, split="vall")
    with pytest.raises(InputError, match="unknown option 'catgories'; did you mean 'categories'"):
        load_benchmark("t2i-compbench", folder, catgories=["color"])


@needs_data
def test_genai_527_file_given_directly_and_ids_are_keys():
    prompts = load_benchmark("genai-bench-527", DATA / "genai-bench" / "genai_image_527.json")
    assert prompts.ids[:3] == ["00001", "00002", "00003"] and prompts.ids[-1] == "00527"
    assert prompts["00292"].text  # the file's inner id is "292" for this key: accepted, the key is the id
    assert prompts["00001"].extra["models"][0] == "DALLE_3"


@needs_data
def test_missing_folder_and_missing_file_say_how_to_obtain(tmp_path):
    with pytest.raises(DataFileError, match=r"not found.*pinned commit"):
        load_benchmark("geneval", tmp_path / "nope")
    with pytest.raises(DataFileError, match=r"no metadata file for geneval \(looked for evaluation_metadata.jsonl\)"):
        load_benchmark("geneval", tmp_path)
    with pytest.raises(DataFileError, match=r"not found.*split 'train'"):
        shutil.copy(DATA / "t2i-compbench" / "color_val.txt", tmp_path / "color_val.txt")
        load_benchmark("t2i-compbench", tmp_path, categories="color", split="train")
    with pytest.raises(InputError, match="no file role 'skils'; did you mean 'skills'"):
        load_benchmark("genai-bench-527", DATA / "genai-bench", files={"skils": "x.json"})


# ------------------------------------------------------------------------------------- GenAI-Bench-1600 format


def _write_genai_1600(folder: Path, n: int = 6, skills: dict | None = None) -> Path:
    images = {f"{i:05d}": {"id": f"{i:05d}", "prompt": f"prompt number {i}"} for i in range(1, n + 1)}
    (folder / "genai_image.json").write_text(json.dumps(images, indent=4), encoding="utf-8")
    skills = (
        skills
        if skills is not None
        else {
            "attribute": [1, 2],
            "counting": [2, 3],
            "negation": [4],
            "basic": [1, 2],
            "advanced": [2, 3, 4],
        }
    )
    (folder / "genai_skills.json").write_text(json.dumps(skills, indent=4), encoding="utf-8")
    return folder


def test_genai_1600_format_with_skills(tmp_path):
    prompts = load_benchmark("genai-bench-1600", _write_genai_1600(tmp_path))
    assert len(prompts) == 6
    assert prompts["00002"].skills == ("advanced", "attribute", "basic", "counting")
    assert prompts["00005"].skills == ()
    assert [p.id for p in prompts.filter(skill="negation")] == ["00004"]
    assert prompts.skills() == ["attribute", "counting", "negation", "basic", "advanced"]


def test_genai_skills_that_do_not_belong_to_the_prompts(tmp_path):
    _write_genai_1600(tmp_path, skills={"attribute": [1], "counting": [2, 1601]})
    with pytest.raises(DataFileError, match=r"genai_skills.json:\d+: field 'counting': prompt index 1601 is not in"):
        load_benchmark("genai-bench-1600", tmp_path)
    _write_genai_1600(tmp_path, skills={"atribute": [1]})
    with pytest.raises(DataFileError, match="unknown skill; did you mean 'attribute'"):
        load_benchmark("genai-bench-1600", tmp_path)
    _write_genai_1600(tmp_path, skills={"counting": ["2"]})
    with pytest.raises(DataFileError, match="prompt index '2' is not an integer"):
        load_benchmark("genai-bench-1600", tmp_path)


def test_genai_malformed_prompt_files(tmp_path):
    folder = _write_genai_1600(tmp_path)
    path = folder / "genai_image.json"
    text = path.read_text()
    path.write_text(text[: len(text) // 2])
    with pytest.raises(DataFileError, match=r"genai_image.json:\d+: invalid JSON at column \d+.*truncated"):
        load_benchmark("genai-bench-1600", folder)
    data = json.loads(text)
    data["00003"] = {"id": "00003", "promt": "typo"}
    path.write_text(json.dumps(data, indent=4))
    with pytest.raises(DataFileError, match=r"genai_image.json:10: field 'prompt': missing; did you mean 'promt'"):
        load_benchmark("genai-bench-1600", folder)
    data["00003"] = {"id": "00004", "prompt": "clash"}
    path.write_text(json.dumps(data, indent=4))
    with pytest.raises(DataFileError, match="id '00004' does not match its key '00003'"):
        load_benchmark("genai-bench-1600", folder)
    path.write_text(text.replace('"00002": {', '"00001": {', 1))
    with pytest.raises(DataFileError, match=r"genai_image.json:\d+: field '00001': duplicate key"):
        load_benchmark("genai-bench-1600", folder)
    path.write_bytes(text.replace("prompt number 3", "caf\u00e9 number 3").encode("latin-1"))
    with pytest.raises(DataFileError, match=r"genai_image.json:12: file is not valid UTF-8"):
        load_benchmark("genai-bench-1600", folder)


# ------------------------------------------------------------------------------ malformed copies of real files


@needs_data
def test_csv_with_missing_column_and_bad_encoding(tmp_path):
    src = (DATA / "drawbench" / "drawbench_prompts.csv").read_text(encoding="utf-8-sig")
    (tmp_path / "drawbench_prompts.csv").write_text(src.replace("Prompt,Category", "Prompts,Category", 1))
    with pytest.raises(DataFileError, match=r"drawbench_prompts.csv:1: missing column\(s\) 'Prompt'; did you mean"):
        load_benchmark("drawbench", tmp_path)
    lines = src.splitlines()
    lines[5] = "Un caf\u00e9 rouge.,Colors"
    (tmp_path / "drawbench_prompts.csv").write_bytes("\n".join(lines).encode("latin-1"))
    with pytest.raises(DataFileError, match=r"drawbench_prompts.csv:6: file is not valid UTF-8"):
        load_benchmark("drawbench", tmp_path)
    lines[5] = "A red car.,Colours"
    (tmp_path / "drawbench_prompts.csv").write_text("\n".join(lines))
    with pytest.raises(DataFileError, match=r":6: field 'Category': unknown category 'Colours'; did you mean 'Colors'"):
        load_benchmark("drawbench", tmp_path)
    lines[5] = "A red car.,Colors,extra"
    (tmp_path / "drawbench_prompts.csv").write_text("\n".join(lines))
    with pytest.raises(DataFileError, match=r":6: expected 2 fields as in the header, found 3"):
        load_benchmark("drawbench", tmp_path)


@needs_data
def test_partiprompts_truncated_row(tmp_path):
    lines = (DATA / "partiprompts" / "PartiPrompts.tsv").read_text(encoding="utf-8").splitlines()
    lines[10] = lines[10].split("\t")[0]
    (tmp_path / "PartiPrompts.tsv").write_text("\n".join(lines), encoding="utf-8")
    with pytest.raises(DataFileError, match=r"PartiPrompts.tsv:11: expected 4 fields"):
        load_benchmark("partiprompts", tmp_path)


@needs_data
def test_geneval_bad_line_and_mismatched_prompt_list(tmp_path):
    lines = (DATA / "geneval" / "evaluation_metadata.jsonl").read_text().splitlines()
    shutil.copy(DATA / "geneval" / "generation_prompts.txt", tmp_path)
    (tmp_path / "evaluation_metadata.jsonl").write_text("\n".join([*lines[:3], lines[3][:-5], *lines[4:]]))
    with pytest.raises(DataFileError, match=r"evaluation_metadata.jsonl:4: invalid JSON"):
        load_benchmark("geneval", tmp_path)
    renamed = [*lines[:3], lines[3].replace('"tag"', '"tags"'), *lines[4:]]
    (tmp_path / "evaluation_metadata.jsonl").write_text("\n".join(renamed))
    with pytest.raises(DataFileError, match=r"evaluation_metadata.jsonl:4: field 'tag': missing; did you mean 'tags'"):
        load_benchmark("geneval", tmp_path)
    (tmp_path / "evaluation_metadata.jsonl").write_text("\n".join(lines[1:]))  # one prompt short: ids shift
    with pytest.raises(DataFileError, match=r"generation_prompts.txt: 553 prompts, but evaluation_metadata.jsonl has"):
        load_benchmark("geneval", tmp_path)
    (tmp_path / "evaluation_metadata.jsonl").write_text("\n".join([lines[1], lines[0], *lines[2:]]))
    with pytest.raises(DataFileError, match=r"generation_prompts.txt:1: 'a photo of a bench' differs"):
        load_benchmark("geneval", tmp_path)


@needs_data
def test_tifa_question_answers_and_bad_records(tmp_path):
    texts = json.loads((DATA / "tifa" / "tifa_v1.0_text_inputs.json").read_text())
    (tmp_path / "tifa_v1.0_text_inputs.json").write_text(json.dumps(texts[:3], indent=2))
    qa = [
        {
            "id": texts[0]["id"],
            "caption": "c",
            "question": "is there a surfer?",
            "choices": ["yes", "no"],
            "answer": "yes",
            "element_type": "animal/human",
            "element": "surfer",
        },
        {
            "id": texts[0]["id"],
            "caption": "c",
            "question": "what color is the board?",
            "choices": ["white", "red"],
            "answer": "white",
            "element_type": "color",
            "element": "white",
        },
    ]
    (tmp_path / "tifa_v1.0_question_answers.json").write_text(json.dumps(qa, indent=2))
    prompts = load_benchmark("tifa-v1", tmp_path)
    assert prompts[0].skills == ("attribute", "object")
    assert prompts[0].extra["element_types"] == ("animal/human", "color") and prompts[1].extra["n_questions"] == 0
    qa.append(dict(qa[0], id="coco_999999999"))
    (tmp_path / "tifa_v1.0_question_answers.json").write_text(json.dumps(qa, indent=2))
    with pytest.raises(DataFileError, match=r"question_answers.json:26: field 'id': text id 'coco_999999999' is not"):
        load_benchmark("tifa-v1", tmp_path)
    (tmp_path / "tifa_v1.0_question_answers.json").unlink()
    texts[1] = {"id": texts[1]["id"], "text": texts[1]["caption"]}
    (tmp_path / "tifa_v1.0_text_inputs.json").write_text(json.dumps(texts[:3], indent=2))
    with pytest.raises(DataFileError, match=r"text_inputs.json:7: field 'caption': missing"):
        load_benchmark("tifa-v1", tmp_path)
    texts[1] = dict(texts[0])
    (tmp_path / "tifa_v1.0_text_inputs.json").write_text(json.dumps(texts[:3], indent=2))
    with pytest.raises(DataFileError, match=r"text_inputs.json:7: field 'id': duplicate id 'coco_301091' \(first at"):
        load_benchmark("tifa-v1", tmp_path)
    with pytest.raises(InputError, match="unknown subset 'cocoa'; did you mean 'coco'"):
        load_benchmark("tifa-v1", DATA / "tifa", subsets=["cocoa"])


@needs_data
def test_imagereward_ranking_mismatch(tmp_path):
    data = json.loads((DATA / "imagereward" / "test.json").read_text())[:4]
    data[2]["ranking"] = data[2]["ranking"][:-1]
    (tmp_path / "test.json").write_text(json.dumps(data, indent=1))
    with pytest.raises(DataFileError, match=r"test.json:\d+: field 'ranking': \d+ ranks for \d+ images"):
        load_benchmark("imagereward-test", tmp_path)


# ------------------------------------------------------------------------------------------------- PromptSet


def test_promptset_behaviour():
    ps = PromptSet("t", (Prompt("a", "x", ("counting",), "t", "c1", "train"), Prompt("b", "y", (), "t", "c2", "val")))
    assert len(ps) == 2 and "a" in ps and ps[1].id == "b" and ps.ids == ["a", "b"] and ps.texts == ["x", "y"]
    assert ps.filter(split="val").ids == ["b"] and ps.filter(where=lambda p: p.text == "x").ids == ["a"]
    with pytest.raises(UnknownNameError, match="no split 'tran'; did you mean 'train'"):
        ps.filter(split="tran")
    with pytest.raises(UnknownNameError, match="unknown prompt id 'aa'; did you mean 'a'"):
        ps["aa"]
    with pytest.raises(InputError, match="duplicate prompt id 'a'"):
        PromptSet("t", (Prompt("a", "x"), Prompt("a", "y")))
    with pytest.raises(InputError, match="unknown skill 'colour'"):
        Prompt("a", "x", ("colour",))
    assert ps.to_records()[0] == {
        "id": "a",
        "text": "x",
        "skills": ["counting"],
        "source": "t",
        "category": "c1",
        "split": "train",
        "extra": {},
    }


@pytest.mark.parametrize(
    ("skills", "expected"),
    [
        (("object", "attribute", "spatial relation"), ("object", "attribute", "spatial relation", "basic")),
        (("object",), ("object", "basic")),
        (("spatial relation", "negation"), ("spatial relation", "negation", "advanced")),
        (("counting",), ("counting", "advanced")),
        (("style", "text rendering"), ("style", "text rendering")),
        ((), ()),
        (("counting", "basic"), ("counting", "basic")),  # a file's own group tag is kept
    ],
)
def test_with_skill_groups(skills, expected):
    assert with_skill_groups(skills) == expected


# ------------------------------------------------------------------------------------------- download helper


class _FakeResponse:
    def __init__(self, data: bytes) -> None:
        self.data = data

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def read(self) -> bytes:
        return self.data


@needs_data
def test_download_helper_checks_sha256(tmp_path, monkeypatch):
    served = {"count": 0}

    def fake_urlopen(url, timeout):
        served["count"] += 1
        assert url.startswith("https://raw.githubusercontent.com/kennymckormick/")
        return _FakeResponse((DATA / "drawbench" / "drawbench_prompts.csv").read_bytes())

    monkeypatch.setattr(download_module.urllib.request, "urlopen", fake_urlopen)
    paths = download_benchmark("drawbench", tmp_path / "dl")
    assert [p.name for p in paths] == ["drawbench_prompts.csv"] and served["count"] == 1
    assert len(load_benchmark("drawbench", tmp_path / "dl")) == 200
    monkeypatch.setattr(download_module.urllib.request, "urlopen", lambda url, timeout: _FakeResponse(b"tampered"))
    with pytest.raises(DataFileError, match=r"SHA-256 .* does not match"):
        download_benchmark("drawbench", tmp_path / "dl", overwrite=True)
    assert not (tmp_path / "dl" / "drawbench_prompts.csv").exists()


def test_download_without_sources_explains(tmp_path, private_registry):
    spec = parse_spec("name: no-dl\ntitle: T\nformat: delimited\nlicense: l\ncitation: c\nobtain: ask the authors\n")
    register_benchmark(spec)
    with pytest.raises(InputError, match=r"no download source in the spec. To obtain the files: ask the authors"):
        download_benchmark("no-dl", tmp_path)
