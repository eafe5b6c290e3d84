"""A scorer is declared once (ScorerSpec in SCORERS) and every consumer reads the declaration: the CLI's choices,
the evaluation runner (which model, final image only), the demo and the BoN commands. A test scorer registered
from outside the package shows up in all of them."""

from __future__ import annotations

from dataclasses import dataclass, field

import pyarrow.compute as pc
import pytest
import torch

from noisyclip_metrics.cli import build_parser, main
from noisyclip_metrics.cli.demo import demo_scorers
from noisyclip_metrics.evaluation.results import ResultsStore
from noisyclip_metrics.scoring.model import TINY_TEST_CONFIG, NoisyCLIPModel
from noisyclip_metrics.scoring.scorers import (
    SCORERS,
    ScoreInputs,
    ScorerSpec,
    build_scorer,
    register_scorer,
    scorer_spec,
)
from noisyclip_metrics.testing import tiny_pipeline


@dataclass
class _Brightness:
    """Mean pixel value of the final image: a scorer from outside the package that reads only the final image."""

    model: NoisyCLIPModel
    name: str = "test-brightness"
    requires: frozenset[str] = field(default=frozenset({"images"}))

    def score(self, inputs: ScoreInputs) -> torch.Tensor:
        return inputs.images.float().mean(dim=(1, 2, 3))


SPEC = ScorerSpec(
    "test-brightness",
    reads="images",
    model="clip",
    build=lambda **r: _Brightness(r["clip"]),
    summary="mean brightness of the final image (test plugin)",
)


@pytest.fixture
def registered(monkeypatch):
    monkeypatch.setattr(SCORERS, "_items", dict(SCORERS._items))  # undone after the test
    register_scorer(SPEC)
    return SPEC


def test_spec_is_validated():
    with pytest.raises(ValueError, match="reads: expected one of"):
        ScorerSpec("x", reads="pixels", model="clip", build=lambda **r: None, summary="")
    with pytest.raises(ValueError, match="model: expected one of"):
        ScorerSpec("x", reads="latents", model="dino", build=lambda **r: None, summary="")
    with pytest.raises(ValueError, match="scorer 'clip' is already registered"):
        register_scorer(ScorerSpec("clip", reads="latents", model="clip", build=lambda **r: None, summary=""))
    assert scorer_spec("clip-final").final_only and scorer_spec("noisyclip-x0").fine_tuned
    assert not scorer_spec("clip-x0").fine_tuned and scorer_spec("clip-x0-decoded").needs_vae


def test_a_registered_scorer_reaches_every_command(registered, tmp_path):
    assert build_scorer("test-brightness", model=object()).name == "test-brightness"
    assert "test-brightness" in demo_scorers(full=True) and "test-brightness" in demo_scorers(full=False)
    args = build_parser(only="score").parse_args(
        ["score", "--model", "m", "--trajectories", "t", "--scorer", "test-brightness"]
    )
    assert args.scorer == "test-brightness"
    args = build_parser(only="bon").parse_args(
        ["bon", "run", "--pipeline", "p", "--prompt", "a", "--scorer", "test-brightness", "--out", "o"]
    )
    assert args.scorer == "test-brightness"


def test_the_runner_reads_the_declaration(registered, tmp_path):
    tiny_pipeline("sd", tmp_path / "pipe")
    NoisyCLIPModel.from_config(TINY_TEST_CONFIG, preview="sd1", seed=0).save_pretrained(tmp_path / "clip")
    (tmp_path / "prompts.txt").write_text("a red circle\ntwo blue squares\n")
    argv = ["evaluate", "--model", str(tmp_path / "pipe"), "--benchmark", str(tmp_path / "prompts.txt")]
    argv += ["--clip", str(tmp_path / "clip"), "--judge", "clip-final", "--seeds", "0", "1"]
    argv += ["--scorers", "clip", "test-brightness", "--num-inference-steps", "3", "--height", "32", "--width", "32"]
    assert main([*argv, "--out", str(tmp_path / "res"), "--no-progress"]) == 0
    store = ResultsStore.open(tmp_path / "res")
    rows = store.rows(kind="score")
    ours = rows.filter(pc.equal(rows["scorer"], "test-brightness"))
    # declared as reading the final image: scored once per candidate, at k = T, with the frozen CLIP as its model
    assert ours.num_rows == 2 * 2 and set(ours["step"].to_pylist()) == {3}
    assert rows.filter(pc.equal(rows["scorer"], "clip")).num_rows == 2 * 2 * 4
    (run,) = store.runs()
    assert run.scorers["test-brightness"]["model"] == str(tmp_path / "clip")
    assert all(0.0 <= v <= 1.0 for v in ours["score"].to_pylist())


def test_every_registered_scorer_is_explained_in_the_concepts_page():
    from pathlib import Path

    page = (Path(__file__).resolve().parents[2] / "docs" / "concepts.md").read_text(encoding="utf-8")
    from noisyclip_metrics.scoring.scorers import SCORERS

    assert [name for name in SCORERS if f"| `{name}` |" not in page] == []
