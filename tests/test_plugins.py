"""Plugins: a tiny third-party package, installed from a temporary folder (a module and its dist-info with an entry
point, as pip would leave them), adds a model id scheme, a benchmark, a scorer and a judge, and ``noisyclip
evaluate`` runs with all of them without touching the package. The built-in world comes in the same way."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pyarrow.compute as pc
import pytest

from noisyclip_metrics.diffusion.pipelines import load_pipeline
from noisyclip_metrics.errors import InputError
from noisyclip_metrics.evaluation.results import ResultsStore
from noisyclip_metrics.plugins import ENTRY_POINT_GROUP, load_plugins, run_defaults, source_paths
from noisyclip_metrics.scoring.factory import resolve_model
from noisyclip_metrics.scoring.model import TINY_TEST_CONFIG, NoisyCLIPModel
from noisyclip_metrics.testing import tiny_pipeline

PLUGIN = '''
"""tinyplug: a third-party noisyclip-metrics plugin (model ids tiny:..., a benchmark, a scorer, a judge)."""
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _prompts(spec, source, *, n=None):
    from noisyclip_metrics.evaluation.benchmarks import Prompt

    texts = ["a red circle", "two blue squares", "a green triangle"]
    return [Prompt(f"t{i}", t, source=spec.name) for i, t in enumerate(texts)][:n]


_prompts.needs_files = False


class Brightness:
    name, requires = "tiny-brightness", frozenset({"images"})

    def score(self, inputs):
        return inputs.images.float().mean(dim=(1, 2, 3))


class HalfJudge:
    name = "tiny-judge"

    def judge(self, prompts, images):
        return [0.5 for _ in prompts]


def register():
    from noisyclip_metrics.evaluation.benchmarks import LOADERS, parse_spec, register_benchmark
    from noisyclip_metrics.evaluation.judges import JUDGES
    from noisyclip_metrics.scoring.model import NoisyCLIPModel
    from noisyclip_metrics.diffusion.pipelines import load_pipeline
    from noisyclip_metrics.plugins import IdScheme, RunDefaults, register_id_scheme
    from noisyclip_metrics.scoring.scorers import ScorerSpec, register_scorer

    folders = {"tiny:pipe": HERE / "pipe", "tiny:clip": HERE / "clip"}
    register_id_scheme(IdScheme(
        prefix="tiny",
        ids=lambda: {"tiny:pipe": "pipeline", "tiny:clip": "model"},
        load_model=lambda i: NoisyCLIPModel.from_pretrained(folders[i]),
        load_pipeline=lambda i: load_pipeline(str(folders[i])),
        source_paths=lambda i: (folders[i],),
        run_defaults=lambda i: RunDefaults(
            num_inference_steps=3, benchmark="tiny-bench", judge="tiny-judge", models={"clip": "tiny:clip"}
        ),
    ))
    LOADERS.register("tiny", _prompts)
    register_benchmark(parse_spec(
        "name: tiny-bench\\ntitle: three prompts\\nformat: tiny\\nlicense: MIT\\ncitation: none\\nobtain: built in\\n"
    ))
    register_scorer(ScorerSpec(
        "tiny-brightness", reads="images", model="clip", build=lambda **r: Brightness(), summary="brightness"
    ))
    JUDGES.register("tiny-judge", lambda **_: HalfJudge())
'''


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """A folder laid out as pip installs a distribution: the package and ``tinyplug-0.1.dist-info``."""
    root = tmp_path_factory.mktemp("site")
    pkg = root / "tinyplug"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(textwrap.dedent(PLUGIN), encoding="utf-8")
    tiny_pipeline("sd", pkg / "pipe")
    NoisyCLIPModel.from_config(TINY_TEST_CONFIG, preview="sd1", seed=0).save_pretrained(pkg / "clip")
    info = root / "tinyplug-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: tinyplug\nVersion: 0.1\n", encoding="utf-8")
    (info / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\ntiny = tinyplug:register\n", encoding="utf-8")
    return root


def _cli(site: Path | None, *argv: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    paths = [str(site)] if site is not None else []
    env["PYTHONPATH"] = os.pathsep.join(paths + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    cmd = [sys.executable, "-m", "noisyclip_metrics.cli", *argv]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)


def test_the_world_is_a_plugin_like_any_other():
    assert "world" in load_plugins()
    assert run_defaults("world:sd-base").benchmark == "world" and run_defaults("some/folder").judge is None
    assert source_paths("world:noisyclip")[0].name == "noisyclip" and source_paths("a/b") == (Path("a/b"),)
    # the core checks an id's kind before the plugin loads anything
    with pytest.raises(InputError, match="world:sd-base is a diffusion pipeline, not a CLIP model"):
        resolve_model("world:sd-base")
    with pytest.raises(InputError, match="world:clip is a CLIP model, not a diffusion pipeline"):
        load_pipeline("world:clip")


@pytest.mark.slow
def test_a_third_party_plugin_evaluates_without_touching_the_package(site, tmp_path):
    argv = ["evaluate", "--model", "tiny:pipe", "--scorers", "clip", "tiny-brightness", "--seeds", "0", "1"]
    argv += ["--height", "32", "--width", "32", "--no-progress"]
    done = _cli(site, *argv, "--out", str(tmp_path / "res"))
    assert done.returncode == 0, done.stderr
    store = ResultsStore.open(tmp_path / "res")
    (run,) = store.runs()
    # every default came from the plugin: its benchmark, judge, sampler and the frozen CLIP of its scorers
    assert run.benchmark == "tiny-bench" and run.judge["name"] == "tiny-judge"
    assert run.sampler["num_inference_steps"] == 3 and run.scorers["clip"]["model"] == "tiny:clip"
    rows = store.rows(kind="score")
    ours = rows.filter(pc.equal(rows["scorer"], "tiny-brightness"))
    assert ours.num_rows == 3 * 2 and set(ours["step"].to_pylist()) == {3}  # the final image only
    judged = store.rows(kind="judgment")
    assert judged.num_rows == 6 and set(judged["score"].to_pylist()) == {0.5}
    # without the plugin installed, its ids are unknown: one line, exit 2, nothing written
    done = _cli(None, *argv, "--out", str(tmp_path / "none"))
    assert done.returncode == 2 and "tiny:pipe" in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "none").exists()


def test_the_core_never_imports_the_world():
    """Only the entry point names the world: no module outside ``world/`` imports it."""
    import ast

    package = Path(__file__).resolve().parents[1] / "noisyclip_metrics"
    offenders = []
    for path in sorted(package.rglob("*.py")):
        if (package / "world") in path.parents:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                names = [f"{'.' * node.level}{node.module or ''}"]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            if any(n.split(".")[-1] == "world" or ".world." in f"{n}." for n in names):
                offenders.append(f"{path.relative_to(package)}:{node.lineno}")
    assert offenders == []
