"""The t2v-metrics score interface: contract without t2v-metrics, subclassing with it, a GenAI-Bench-style loop."""

from __future__ import annotations

import importlib
import importlib.util

import numpy as np
import pytest
import torch
from PIL import Image

import noisyclip_metrics.scoring.t2v as t2v_module
from noisyclip_metrics.errors import DataFileError, InputError
from noisyclip_metrics.evaluation.judges import read_t2v_metrics_scores
from noisyclip_metrics.evaluation.stats import kendall_tau_b, pairwise_accuracy, pearson
from noisyclip_metrics.scoring.t2v import NoisyCLIPScoreModel, NoisyCLIPT2VScore, list_all_models, save_latent_file
from tests.fake_t2v_metrics import forget_t2v_metrics, install_fake_t2v_metrics

TEXTS = ["a red cube", "two blue spheres", "a green cone"]
# Scores are cosines in [-1, 1] computed in float32. The comparisons below score the same inputs in other batch
# compositions or through other (equivalent) code paths, which changes float32 reduction orders in the towers and moves
# a cosine by a few ulps of 1 (measured: under 1 ulp). 64 ulps of 1 bounds that with a wide margin.
COS_ATOL = 64 * torch.finfo(torch.float32).eps  # 7.6e-6
REAL_T2V = importlib.util.find_spec("t2v_metrics") is not None


def _png(path, seed: int, size: int = 24):
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(path)
    return path


def _as_tensor(path) -> torch.Tensor:
    return torch.from_numpy(np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 255).permute(2, 0, 1)


@pytest.fixture(scope="module")
def score(tiny_model):
    return NoisyCLIPT2VScore(model=tiny_model, device="cpu")


def test_the_model_is_an_argument_not_a_default():
    with pytest.raises(TypeError, match="model"):
        NoisyCLIPT2VScore()  # was the 32-pixel world NoisyCLIP, silently


@pytest.mark.skipif(REAL_T2V, reason="t2v-metrics is installed here")
def test_base_class_without_t2v_metrics():
    assert not t2v_module.HAS_T2V_METRICS
    assert issubclass(NoisyCLIPT2VScore, torch.nn.Module)
    assert "world:noisyclip" in list_all_models() and "world:sd-base" not in list_all_models()


def test_score_matrix_equals_direct_model_scores(score, tiny_model, tmp_path):
    paths = [_png(tmp_path / f"{k}.png", k) for k in range(2)]
    z = torch.randn(4, 16, 16, generator=torch.Generator().manual_seed(0))
    img = torch.rand(3, 40, 40, generator=torch.Generator().manual_seed(1))
    matrix = score(images=[str(paths[0]), paths[1], img, z], texts=TEXTS)
    assert matrix.shape == (4, 3) and matrix.dtype == torch.float32
    for i, x in enumerate([_as_tensor(paths[0]), _as_tensor(paths[1]), img]):
        direct = tiny_model.score_images(x[None].expand(3, -1, -1, -1), TEXTS)
        torch.testing.assert_close(matrix[i], direct, atol=COS_ATOL, rtol=0)
    latent_scores = tiny_model.score_latents(z[None].expand(3, -1, -1, -1), TEXTS)
    torch.testing.assert_close(matrix[3], latent_scores, atol=COS_ATOL, rtol=0)
    assert score(str(paths[0]), "a red cube").shape == (1, 1)
    assert score(torch.stack([img, img]), TEXTS[:2]).shape == (2, 2)  # a (B, 3, H, W) batch is B images


def test_batch_forward_shape_and_values(score, tmp_path):
    paths = [str(_png(tmp_path / f"{k}.png", k)) for k in range(5)]
    data = [
        {"images": [paths[k], paths[(k + 1) % 5]], "texts": [TEXTS[k % 3], TEXTS[(k + 1) % 3], "a dog"]}
        for k in range(5)
    ]
    out = score.batch_forward(data, batch_size=2)
    assert out.shape == (5, 2, 3)
    for k, item in enumerate(data):
        torch.testing.assert_close(out[k], score(item["images"], item["texts"]), atol=COS_ATOL, rtol=0)
    torch.testing.assert_close(score.batch_forward(data, batch_size=16), out, atol=COS_ATOL, rtol=0)

    class Items(torch.utils.data.Dataset):
        def __len__(self):
            return len(data)

        def __getitem__(self, k):
            return data[k]

    torch.testing.assert_close(score.batch_forward(Items(), batch_size=3), out, atol=COS_ATOL, rtol=0)


def test_latent_files(score, tiny_model, tmp_path):
    z = torch.randn(4, 16, 16, generator=torch.Generator().manual_seed(2))
    plain = save_latent_file(tmp_path / "z.safetensors", z[None])
    scaled = save_latent_file(tmp_path / "s.safetensors", z, latent_scale=0.5, timestep=700, step=3)
    traj = torch.randn(5, 4, 16, 16, generator=torch.Generator().manual_seed(3))
    trajectory = save_latent_file(tmp_path / "t.safetensors", traj, latent_scale=torch.linspace(0.2, 1.0, 5))
    out = score([plain, scaled], ["a red cube"])[:, 0]
    torch.testing.assert_close(out[0], tiny_model.score_latents(z[None], ["a red cube"])[0], atol=COS_ATOL, rtol=0)
    torch.testing.assert_close(
        out[1], tiny_model.score_latents(0.5 * z[None], ["a red cube"])[0], atol=COS_ATOL, rtol=0
    )
    # a trajectory file: step picks the latent and its per-step scale; a call keyword overrides the file's scale
    got = score(trajectory, ["a red cube"], step=2)[0, 0]
    torch.testing.assert_close(got, tiny_model.score_latents(0.6 * traj[2:3], ["a red cube"])[0], atol=COS_ATOL, rtol=0)
    got = score(trajectory, ["a red cube"], step=2, latent_scale=1.0)[0, 0]
    torch.testing.assert_close(got, tiny_model.score_latents(traj[2:3], ["a red cube"])[0], atol=COS_ATOL, rtol=0)
    with pytest.raises(InputError, match="trajectory of 5 latents; pass step=k"):
        score(trajectory, ["a red cube"])
    with pytest.raises(InputError, match=r"step 7 outside 0..4"):
        score(trajectory, ["a red cube"], step=7)
    item = score.model.load_inputs([scaled])[0]
    assert (item.kind, item.latent_scale, item.timestep, item.step) == ("latent", 0.5, 700.0, 3)
    # precedence: call keyword > value stored in the file > constructor default
    doubled = NoisyCLIPT2VScore(model=tiny_model, latent_scale=2.0, step=1)
    plain_item, scaled_item, traj_item = doubled.model.load_inputs([plain, scaled, trajectory])
    assert (plain_item.latent_scale, scaled_item.latent_scale, scaled_item.step) == (2.0, 0.5, 3)
    assert traj_item.step == 1 and traj_item.latent_scale == pytest.approx(0.4)
    assert doubled.model.load_inputs([scaled], latent_scale=1.0)[0].latent_scale == 1.0
    assert doubled.model.load_inputs([z])[0].latent_scale == 2.0
    torch.testing.assert_close(
        doubled(plain, "a cat")[0, 0], tiny_model.score_latents(2 * z[None], ["a cat"])[0], atol=COS_ATOL, rtol=0
    )
    (tmp_path / "corrupt.safetensors").write_text("garbage")
    with pytest.raises(DataFileError, match="not a readable safetensors file"):
        score(str(tmp_path / "corrupt.safetensors"), "a cat")


def test_timestep_with_scheduler_gives_the_input_scale(tiny_model, tmp_path):
    from diffusers import EulerDiscreteScheduler

    from noisyclip_metrics.scoring.x0 import model_input_scale

    sched = EulerDiscreteScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012)
    sched.set_timesteps(10)
    t = float(sched.timesteps[3])
    z = 5 * torch.randn(4, 16, 16, generator=torch.Generator().manual_seed(4))
    path = save_latent_file(tmp_path / "z.safetensors", z, timestep=t)
    euler = NoisyCLIPT2VScore(model=tiny_model, scheduler=sched)
    factor = float(model_input_scale(sched, torch.tensor([t]), 1)[0])
    assert 0 < factor < 1
    expected = tiny_model.score_latents(factor * z[None], ["a cat"])[0]
    torch.testing.assert_close(euler(path, "a cat")[0, 0], expected, atol=COS_ATOL, rtol=0)


def test_folder_model_and_backend_contract(tiny_model, tmp_path):
    folder = tiny_model.save_pretrained(tmp_path / "ckpt")
    score = NoisyCLIPT2VScore(model=str(folder), device="cpu", step=None)
    backend = score.model
    assert isinstance(backend, NoisyCLIPScoreModel) and backend.video_mode == "concat"
    paths = [str(_png(tmp_path / f"{k}.png", k, size=16 + 8 * k)) for k in range(3)]
    stacked = backend.load_images(paths)
    assert stacked.shape == (3, 3, 32, 32)  # different sizes: resized to the tower's input size
    pairs = backend.forward(paths, TEXTS)
    assert pairs.shape == (3,)
    torch.testing.assert_close(pairs, torch.diagonal(score(paths, TEXTS)), atol=COS_ATOL, rtol=0)


def test_errors(score, tmp_path):
    png = str(_png(tmp_path / "a.png", 0))
    with pytest.raises(DataFileError, match=r"images\[1\]: .*missing.png: file not found"):
        score([png, str(tmp_path / "missing.png")], TEXTS)
    (tmp_path / "bad.png").write_bytes(b"not an image")
    with pytest.raises(DataFileError, match="not a readable image"):
        score(str(tmp_path / "bad.png"), TEXTS)
    with pytest.raises(
        InputError,
        match=r"5 channels is neither an image \(3 channels\) nor a latent of this model "
        r"\(4 channels\)",
    ):
        score([torch.randn(5, 16, 16)], TEXTS)
    with pytest.raises(InputError, match="tensor_kind='latent'"):
        score([torch.randn(3, 16, 16) * 4], TEXTS)
    wrong = save_latent_file(tmp_path / "w.safetensors", torch.randn(16, 8, 8))
    with pytest.raises(InputError, match="latents with 16 channels, this model's preview map reads 4"):
        score(wrong, TEXTS)
    from safetensors.torch import save_file

    save_file({"x": torch.zeros(4, 8, 8)}, str(tmp_path / "nolatents.safetensors"))
    with pytest.raises(DataFileError, match=r"no tensor named 'latents' .found: x."):
        score(str(tmp_path / "nolatents.safetensors"), TEXTS)
    with pytest.raises(InputError, match="video"):
        score(str(tmp_path / "clip.mp4"), TEXTS)
    with pytest.raises(InputError, match="images and texts must have the same length, got 1 and 3"):
        score.model.forward([png], TEXTS)
    with pytest.raises(
        InputError, match=r"dataset item 1: 2 images and 1 texts; every item must have as many as item 0 .1 and 1."
    ):
        score.batch_forward([{"images": [png], "texts": ["a"]}, {"images": [png, png], "texts": ["b"]}])
    with pytest.raises(InputError, match="dataset item 0: expected a dict"):
        score.batch_forward([png])
    with pytest.raises(InputError, match="unknown keyword 'question_template'"):
        score(png, TEXTS, question_template="Is it {}?")
    with pytest.raises(InputError, match="texts: expected at least one prompt"):
        score(png, [])
    with pytest.raises(InputError, match="images: expected a non-empty list"):
        score([], TEXTS)


def test_subclasses_t2v_metrics_score_when_installed(tmp_path, monkeypatch, tiny_model):
    install_fake_t2v_metrics(tmp_path / "site", monkeypatch)
    try:
        module = importlib.reload(t2v_module)
        from t2v_metrics.score import Score

        assert module.HAS_T2V_METRICS and issubclass(module.NoisyCLIPT2VScore, Score)
        score = module.NoisyCLIPT2VScore(model=tiny_model)  # a model object: the base's name assertion is bypassed
        assert isinstance(score, Score)
        images = [torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(k)) for k in range(2)]
        ours = score(images, TEXTS)
        # t2v-metrics' own pair-by-pair loop over the backend gives the same matrix
        torch.testing.assert_close(Score.forward(score, images, TEXTS), ours, atol=COS_ATOL, rtol=0)
        data = [{"images": [im], "texts": TEXTS} for im in images]
        torch.testing.assert_close(Score.batch_forward(score, data), score.batch_forward(data), atol=COS_ATOL, rtol=0)
    finally:
        monkeypatch.undo()
        forget_t2v_metrics()
        importlib.reload(t2v_module)
    assert t2v_module.HAS_T2V_METRICS == REAL_T2V


def test_broken_t2v_metrics_install_falls_back(tmp_path, monkeypatch):
    install_fake_t2v_metrics(tmp_path / "site", monkeypatch, broken=True)  # raises RuntimeError at import
    try:
        module = importlib.reload(t2v_module)
        assert not module.HAS_T2V_METRICS
    finally:
        monkeypatch.undo()
        forget_t2v_metrics()
        importlib.reload(t2v_module)


def test_genai_bench_style_evaluation_loop(tiny_model, tmp_path):
    """A loop written against the t2v-metrics API (GenAI-Bench image eval), run with NoisyCLIP unchanged."""
    generators = ["gen_a", "gen_b", "gen_c"]
    prompts = {"00001": "a red cube", "00002": "two blue spheres", "00003": "a green cone on a table"}
    human = {}
    dataset = []
    for m, gen in enumerate(generators):  # model-major order, as t2v-metrics' GenAIBench_Image
        (tmp_path / gen).mkdir()
        for p, (pid, text) in enumerate(prompts.items()):
            path = _png(tmp_path / gen / f"{pid}.jpeg", 10 * m + p)
            dataset.append({"images": [str(path)], "texts": [text]})
            human[(pid, gen)] = float((m * 7 + p * 3) % 5 + 1)
    score_func = NoisyCLIPT2VScore(model=tiny_model, device="cpu")
    scores = score_func.batch_forward(dataset=dataset, batch_size=4)
    assert scores.shape == (9, 1, 1)
    result = tmp_path / "results" / "noisyclip_3_prompts.pt"
    result.parent.mkdir()
    torch.save(scores.cpu(), result)  # the cached score tensor of the GenAI-Bench scripts
    metric = scores.mean(axis=1)[:, 0].reshape(len(generators), len(prompts)).T.numpy()  # prompts x generators
    gold = np.array([[human[(pid, g)] for g in generators] for pid in prompts])
    r, tau, (acc, eps) = pearson(gold, metric), kendall_tau_b(gold, metric), pairwise_accuracy(gold, metric)
    assert all(-1 <= v <= 1 for v in (r, tau)) and 0 <= acc <= 1 and eps >= 0
    judgments = read_t2v_metrics_scores(result, list(prompts), generators)
    assert len(judgments) == 9 and judgments[0].judge == "noisyclip"
    assert {(j.prompt_id, j.model): round(j.score, 6) for j in judgments} == {
        (pid, g): round(float(metric[p, m]), 6) for p, pid in enumerate(prompts) for m, g in enumerate(generators)
    }
