"""Live judges: VQAScore through the optional t2v-metrics (absent, broken, present), names with variants."""

from __future__ import annotations

import importlib.util
import os

import pytest
import torch

from noisyclip_metrics.errors import InputError
from noisyclip_metrics.evaluation.judges import JUDGES, Judge
from noisyclip_metrics.evaluation.judges.live import ScorerJudge, VQAScoreJudge, build_judge, judge_detailed
from tests.fake_t2v_metrics import forget_t2v_metrics, install_fake_t2v_metrics

HINT = r"install t2v-metrics \(pip install t2v-metrics, which pins torch 2.5.1\) or precompute VQAScore"


@pytest.fixture()
def fake_t2v(tmp_path, monkeypatch):
    install_fake_t2v_metrics(tmp_path / "site", monkeypatch)
    import t2v_metrics

    t2v_metrics.CALLS.clear()
    yield t2v_metrics
    monkeypatch.undo()
    forget_t2v_metrics()


@pytest.mark.skipif(importlib.util.find_spec("t2v_metrics") is not None, reason="t2v-metrics is installed here")
def test_vqascore_is_registered_and_absent_install_says_what_to_do():
    assert {"world-oracle", "clip-final", "vqascore"} <= set(JUDGES.names())
    forget_t2v_metrics()
    with pytest.raises(InputError, match=HINT):
        JUDGES.get("vqascore")()
    with pytest.raises(InputError, match=HINT):
        build_judge("vqascore:clip-flant5-xl")


def test_broken_install_is_a_clear_error(tmp_path, monkeypatch):
    install_fake_t2v_metrics(tmp_path / "site", monkeypatch, broken=True)
    try:
        with pytest.raises(InputError, match=r"installed but failed to import .RuntimeError: ffmpeg is not installed"):
            build_judge("vqascore")
    finally:
        monkeypatch.undo()
        forget_t2v_metrics()


def test_variants_only_for_judges_that_take_one():
    with pytest.raises(InputError, match="'world-oracle' takes no variant"):
        build_judge("world-oracle:fast")
    with pytest.raises(InputError, match="unknown judge 'vqascroe'; did you mean 'vqascore'"):
        build_judge("vqascroe")


def test_vqascore_with_t2v_metrics(fake_t2v):
    judge = build_judge("vqascore:clip-flant5-xl")
    assert isinstance(judge, VQAScoreJudge) and isinstance(judge, Judge)
    assert judge.name == "vqascore:clip-flant5-xl"
    assert fake_t2v.CALLS[0] == {"model": "clip-flant5-xl", "device": "cuda" if torch.cuda.is_available() else "cpu"}
    images = torch.stack([torch.full((3, 8, 8), v) for v in (0.0, 0.5, 1.0)])
    prompts = ["a red cube", "two cats", "a dog"]
    scores = judge.judge(prompts, images)
    assert scores == pytest.approx([0.0, 128 / 255, 1.0], abs=1e-6)  # the fake scores the saved PNG's mean pixel
    read = [c for c in fake_t2v.CALLS if "images" in c]
    assert [c["texts"] for c in read] == [[p] for p in prompts]
    assert all(not os.path.exists(c["images"][0]) for c in read)  # temporary files are removed
    detailed = judge_detailed(judge, prompts, images, ["p0", "p1", "p2"], [0, 1, 2])
    assert [s for s, _ in detailed] == scores and all(a is None for _, a in detailed)
    with pytest.raises(InputError, match="same length"):
        judge.judge(prompts[:2], images)


def test_vqascore_default_model_and_paths(fake_t2v, tmp_path):
    from PIL import Image

    path = tmp_path / "white.png"
    Image.new("RGB", (4, 4), (255, 255, 255)).save(path)
    judge = JUDGES.get("vqascore")(device="cpu")
    assert judge.name == "vqascore:clip-flant5-xxl" and fake_t2v.CALLS[0]["device"] == "cpu"
    assert judge.judge(["a white square"], [str(path)]) == [1.0]


def test_clip_final_judge_is_unchanged(tiny_model):
    judge = ScorerJudge(tiny_model)
    images = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    assert judge.judge(["a", "b"], images) == pytest.approx(tiny_model.score_images(images, ["a", "b"]).tolist())
