"""The package on a CUDA GPU: every path that places tensors, checked against the same work on the CPU.

    pytest -m gpu tests/gpu -s                       # on a machine with CUDA (-s prints each check's reading)
    pytest -m gpu tests/gpu --gpu-device cpu -k ...  # a dry run on the CPU (bfloat16 for half precision)

Without CUDA every test here is skipped, and ``tests/gpu/test_dry_run.py`` (in the normal suite) runs the cheap
ones on the CPU so that they cannot rot. Covered:

* the metric (``NoisyCLIPScore``) on GPU latents, float32 and float16, against the CPU;
* trajectory capture of a world pipeline on the GPU: finite latents and x̂0, and the oracle's TIFA score of its
  images printed next to the CPU's (same seeds; CUDA draws its own noise, so the images differ: a reading);
* ``EarlyBestOfN`` (one-shot, halving, threshold; preview, x̂0 and decoded-x̂0 scorers; float32 and float16; SD,
  SDXL, SD3 and FLUX with their default and multistep schedulers): every survivor's image against the plain
  pipeline's for its seed on the same device; ``run_batch`` of 4 prompts against each prompt's run alone;
* ``NoisyCLIPMonitor`` inside a GPU pipeline call against scoring the captured trajectory;
* ``evaluate`` with ``device`` / ``dtype`` (the run records them, its BoN rows compute), and the CLI's ``--device`` /
  ``--dtype`` for ``evaluate``, ``capture`` and ``bon run``;
* NoisyCLIP training on the GPU, interrupted and resumed, against one uninterrupted run.

The exactness checks run with TF32 off (PyTorch turns it on for cuDNN convolutions by default): TF32 kernels chosen
for a batch of N and for one survivor round differently; ``test_tf32_default_moves_a_survivor_little`` measures how
far that moves a survivor's image. Tolerances: float32 ``1e-3``, float16 ``5e-2``.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import torch

from noisyclip_metrics.bon import EarlyBestOfN, HalvingPolicy, NoisyCLIPMonitor, OneShotPolicy
from noisyclip_metrics.bon.calibration import ThresholdCalibration
from noisyclip_metrics.bon.policies import ThresholdPolicy
from noisyclip_metrics.diffusion.pipelines import load_pipeline
from noisyclip_metrics.scoring.factory import resolve_model
from noisyclip_metrics.scoring.scorers import ScoreInputs, build_scorer

pytestmark = pytest.mark.gpu

PROMPT = "two red circles above a blue square"
PROMPTS = [PROMPT, "a red circle", "three green triangles", "a blue square to the left of a red circle"]
TOL = {torch.float32: 1e-3, torch.float16: 5e-2, torch.bfloat16: 1e-1}


@pytest.fixture(scope="module")
def device(request: pytest.FixtureRequest) -> torch.device:
    """``--gpu-device`` (default ``cuda``); skips without CUDA."""
    device = torch.device(request.config.getoption("--gpu-device"))
    if device.type == "cuda" and not torch.cuda.is_available():
        pytest.skip("no CUDA device (--gpu-device cpu dry-runs these checks)")
    return device


@pytest.fixture(scope="module")
def half(device: torch.device) -> torch.dtype:
    return torch.float16 if device.type == "cuda" else torch.bfloat16


@pytest.fixture(scope="module", autouse=True)
def tf32_off() -> Any:
    before = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield before
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = before


def reading(record_property: Any, text: str) -> None:
    """Print a check's reading (shown with ``-s``) and keep it in the JUnit report."""
    print(text)
    record_property("reading", text)


def plain(pipe: Any, seed: int, steps: int, prompt: str = PROMPT, **kwargs: Any) -> torch.Tensor:
    """The plain pipeline's image for one seed, drawn on the pipeline's device as the package draws it."""
    gen = [torch.Generator(device=pipe.device).manual_seed(seed)]
    return pipe([prompt], num_inference_steps=steps, output_type="pt", generator=gen, **kwargs).images[0].float().cpu()


def survivors_match(pipe: Any, scorer: Any, policy: Any, steps: int, n: int = 6, **kwargs: Any) -> float:
    """Largest |survivor image - plain image| over the survivors of one EarlyBestOfN run (asserted within TOL)."""
    result = EarlyBestOfN(pipe, scorer, policy)(
        PROMPT, n=n, seeds=list(range(20, 20 + n)), num_inference_steps=steps, **kwargs
    )
    worst = max(
        float((img - plain(pipe, s, steps, **kwargs)).abs().max())
        for s, img in zip(result.seeds, result.images, strict=True)
    )
    assert worst <= TOL[pipe.dtype], f"a survivor differs from the plain pipeline by {worst:.2e}"
    assert result.denoiser_evals < n * steps, "nothing was stopped early: the check did not test pruning"
    return worst


def test_metric_on_device_latents_equals_the_cpu(device, half, record_property):
    from noisyclip_metrics.scoring.metric import NoisyCLIPScore

    z = torch.randn(4, 4, 16, 16, generator=torch.Generator().manual_seed(0))
    prompts = ["a red circle", "two blue squares", "a green triangle", "a blue circle"]
    cpu = NoisyCLIPScore(model="world:noisyclip")
    cpu.update(z, prompts)
    out = []
    for dtype in (torch.float32, half):
        gpu = NoisyCLIPScore(model="world:noisyclip").to(device)
        gpu.update(z.to(device, dtype), prompts)
        diff = abs(float(gpu.compute()) - float(cpu.compute()))
        assert diff <= 100 * TOL[dtype], f"{dtype}: {diff:.3g}"  # the aggregate is 100 x cosine
        out.append(f"{str(dtype)[6:]} |diff| {diff:.2e}")
    reading(record_property, ", ".join(out))


def test_capture_is_finite_and_the_oracle_reads_it(device, record_property):
    from noisyclip_metrics.diffusion.trajectory import capture_trajectories
    from noisyclip_metrics.evaluation.judges.live import build_judge

    prompts = PROMPTS * 4
    oracle = build_judge("world-oracle")
    rates = {}
    for where in ("cpu", device):
        batch = capture_trajectories(load_pipeline("world:sd-base", where), prompts, list(range(len(prompts))), 20)
        assert torch.isfinite(batch.latents).all() and torch.isfinite(batch.x0).all(), f"{where}: non-finite"
        rates[str(where)] = sum(oracle.judge(prompts, batch.images)) / len(prompts)
    reading(record_property, f"oracle TIFA score CPU {rates['cpu']:.3f} / {device} {rates[str(device)]:.3f}")


@pytest.mark.parametrize("half_precision", [False, True], ids=["float32", "half"])
def test_early_best_of_n_survivors_equal_the_plain_pipeline(device, half, half_precision, record_property):
    pipe = load_pipeline("world:sd-base", device, half if half_precision else torch.float32)
    out = []
    for name, model in (
        ("noisyclip", "world:noisyclip"),
        ("noisyclip-x0", "world:noisyclip-x0"),
        ("clip-x0-decoded", "world:clip"),
    ):
        scorer = build_scorer(name, model=resolve_model(model, device), vae=pipe.vae)
        cal = ThresholdCalibration(scorer=name, n=6, quantile=0.1, num_steps=20, gaps=(-0.5,) * 20 + (0.0,))
        for policy in (OneShotPolicy(k=6), HalvingPolicy((3, 6, 9)), ThresholdPolicy(cal, min_step=2)):
            out.append(f"{name}/{policy.name} {survivors_match(pipe, scorer, policy, 20):.1e}")
    reading(record_property, "max |diff| " + ", ".join(out))


def test_run_batch_picks_what_each_prompt_picks_alone(device, half, record_property):
    out = []
    for dtype in (torch.float32, half):
        pipe = load_pipeline("world:sd-base", device, dtype)
        scorer = build_scorer("noisyclip-x0", model=resolve_model("world:noisyclip-x0", device))
        bon = EarlyBestOfN(pipe, scorer, HalvingPolicy((3, 6, 9)))
        batch = bon.run_batch(PROMPTS, n=6, seeds=list(range(20, 26)), num_inference_steps=20)
        same, worst = 0, 0.0
        for prompt, result in zip(PROMPTS, batch, strict=True):
            alone = bon(prompt, n=6, seeds=list(range(20, 26)), num_inference_steps=20)
            same += alone.seeds == result.seeds
            worst = max(worst, float((result.images[0] - plain(pipe, result.seeds[0], 20, prompt)).abs().max()))
        assert worst <= TOL[dtype], f"{dtype}: a survivor differs from the plain pipeline by {worst:.2e}"
        if dtype == torch.float32:  # half precision may break a near tie differently
            assert same == len(PROMPTS), f"float32: {len(PROMPTS) - same} prompt(s) chose another seed than alone"
        out.append(f"{str(dtype)[6:]}: survivors = plain within {worst:.1e}, {same}/{len(PROMPTS)} picks as alone")
    reading(record_property, "; ".join(out))


def test_tf32_default_moves_a_survivor_little(device, tf32_off, record_property):
    torch.backends.cudnn.allow_tf32 = tf32_off[0]  # PyTorch's default
    try:
        pipe = load_pipeline("world:sd-base", device)
        scorer = build_scorer("noisyclip-x0", model=resolve_model("world:noisyclip-x0", device))
        result = EarlyBestOfN(pipe, scorer, OneShotPolicy(k=6))(
            PROMPT, n=6, seeds=list(range(20, 26)), num_inference_steps=20
        )
        worst = float((result.images[0] - plain(pipe, result.seeds[0], 20)).abs().max())
    finally:
        torch.backends.cudnn.allow_tf32 = False
    assert worst <= 5e-2, f"survivor deviates by {worst:.2e}"
    reading(record_property, f"TF32 {'on' if tf32_off[0] else 'off'}: max |survivor - plain| {worst:.1e}")


def test_tiny_families_and_multistep_schedulers_survivors_equal_plain(device, tmp_path, record_property):
    from diffusers import DPMSolverMultistepScheduler, UniPCMultistepScheduler

    from noisyclip_metrics.scoring.model import TINY_TEST_CONFIG, NoisyCLIPModel
    from noisyclip_metrics.testing import tiny_pipeline

    out = []
    for family, preview in {"sd": "sd1", "sdxl": "sdxl", "sd3": "sd3", "flux": "flux"}.items():
        pipe = tiny_pipeline(family, tmp_path / family).to(device)
        model = NoisyCLIPModel.from_config(TINY_TEST_CONFIG, preview=preview, seed=0).to(device)
        flow = family in ("sd3", "flux")
        kwargs = {"use_flow_sigmas": True, "prediction_type": "flow_prediction", "flow_shift": 3.0} if flow else {}
        multistep = (
            UniPCMultistepScheduler(**kwargs)
            if flow
            else DPMSolverMultistepScheduler.from_config(pipe.scheduler.config)
        )
        for scheduler in (pipe.scheduler, multistep):
            pipe.scheduler = scheduler
            for name in ("clip", "clip-x0"):
                policy = HalvingPolicy((1, 2))
                worst = survivors_match(pipe, build_scorer(name, model=model), policy, 4, n=4, height=32, width=32)
                out.append(f"{family}/{type(scheduler).__name__[:8]}/{name} {worst:.1e}")
    reading(record_property, "max |diff| " + ", ".join(out))


def test_monitor_in_a_pipeline_call_equals_scoring_the_trajectory(device, record_property):
    from noisyclip_metrics.diffusion.trajectory import capture_trajectories

    pipe = load_pipeline("world:sd-base", device)
    scorer = build_scorer("noisyclip-x0", model=resolve_model("world:noisyclip-x0", device))
    monitor = NoisyCLIPMonitor(scorer, PROMPT)
    gens = [torch.Generator(device=device).manual_seed(s) for s in (0, 1)]
    with monitor.watch(pipe):
        pipe([PROMPT] * 2, num_inference_steps=20, generator=gens, output_type="pt", callback_on_step_end=monitor)
    batch = capture_trajectories(pipe, [PROMPT] * 2, [0, 1], num_inference_steps=20)
    worst = 0.0
    for k, live in monitor.scores.items():
        ref = scorer.score(ScoreInputs(prompts=[PROMPT] * 2, x0=batch.x0[:, k]))
        worst = max(worst, float((live.float().cpu() - ref.float().cpu()).abs().max()))
    assert worst <= TOL[torch.float32], f"monitor vs trajectory {worst:.2e}"
    reading(record_property, f"{len(monitor.scores)} steps, max |diff| {worst:.1e}")


def test_evaluate_records_device_and_dtype(device, half, tmp_path, record_property):
    from noisyclip_metrics.bon import compute_bon
    from noisyclip_metrics.evaluation.results import ResultsStore
    from noisyclip_metrics.evaluation.runner import EvalConfig, evaluate

    half_name = str(half).removeprefix("torch.")
    out, run_ids = [], []
    for dtype in ("float32", half_name):
        settings = {"prompts": 12, "seeds": (0, 1, 2, 3), "device": str(device), "dtype": dtype, "progress": False}
        res = evaluate(EvalConfig(model="world:sd-base", out=str(tmp_path / f"eval-{dtype}"), **settings))
        info = ResultsStore.open(res.store).run(res.run_id)
        assert (info.sampler.get("device", "cpu"), info.sampler.get("dtype", "float32")) == (device.type, dtype)
        bon = compute_bon(res.store).to_pylist()
        assert all(r["judge_score"] == r["judge_score"] for r in bon), "a BoN row has no judge score"
        out.append(f"{dtype}: {res.items} candidates, {len(bon)} BoN rows")
        run_ids.append(res.run_id)
    cpu = evaluate(
        EvalConfig(
            model="world:sd-base", out=str(tmp_path / "eval-cpu"), prompts=12, seeds=(0, 1, 2, 3), progress=False
        )
    )
    assert cpu.run_id != run_ids[-1], f"the default run has the {device} {half_name} run's id"
    reading(record_property, "; ".join(out))


def test_cli_takes_device_and_dtype(device, half, tmp_path, record_property):
    from noisyclip_metrics.cli import main as cli

    (tmp_path / "prompts.txt").write_text("a red circle\ntwo blue squares\n", encoding="utf-8")
    where = ["--device", str(device)]
    half_name = str(half).removeprefix("torch.")
    codes = [
        cli(
            [
                *"evaluate --model world:sd-small --prompts 3 --seeds 0 1 --no-progress".split(),
                *where,
                "--dtype",
                half_name,
                "--out",
                str(tmp_path / "cli-eval"),
            ]
        ),
        cli(
            [
                *"capture --pipeline world:sd-small --seeds 0 1".split(),
                *where,
                "--prompts",
                str(tmp_path / "prompts.txt"),
                "--out",
                str(tmp_path / "cli-capture"),
            ]
        ),
        cli(
            [
                *"bon run --pipeline world:sd-small --n 4 --k 6 --scorer noisyclip-x0".split(),
                *where,
                "--prompt",
                PROMPT,
                "--out",
                str(tmp_path / "cli-bon"),
            ]
        ),
    ]
    assert codes == [0, 0, 0]
    account = json.loads((tmp_path / "cli-bon" / "account.json").read_text(encoding="utf-8"))
    reading(record_property, f"bon run chose seed {account['seeds']}")


def test_training_interrupted_and_resumed_equals_uninterrupted(device, tmp_path, record_property):
    from noisyclip_metrics.diffusion.trajectory_store import record_trajectories
    from noisyclip_metrics.training.trainer import TrainConfig, train

    prompts = ["a red circle", "two blue squares", "a green triangle to the left of a red square"] * 4
    pipe = load_pipeline("world:sd-base", device)
    store = record_trajectories(pipe, tmp_path / "traj", prompts, [0, 1], batch_size=12, num_inference_steps=20)
    base = {
        "init": "world:clip",
        "trajectories": (str(store.root),),
        "steps": 30,
        "batch_size": 16,
        "warmup_steps": 5,
        "checkpoint_every": 10,
        "log_every": 10,
        "val_fraction": 0.25,
        "device": str(device),
        "seed": 3,
    }
    whole = train(TrainConfig(**base, out_dir=str(tmp_path / "train-a")), progress=False)
    train(TrainConfig(**base, out_dir=str(tmp_path / "train-b")), progress=False, stop_at=20)
    resumed = train(TrainConfig(**base, out_dir=str(tmp_path / "train-b")), progress=False)
    assert whole is not None and resumed is not None
    diff = max(
        float((a - b).abs().max())
        for a, b in zip(whole.model.state_dict().values(), resumed.model.state_dict().values(), strict=True)
    )
    assert diff <= 1e-4, f"resumed run differs by {diff:.2e}"
    assert next(whole.model.parameters()).device.type == device.type, f"the model did not train on {device}"
    reading(record_property, f"final loss {whole.final_loss:.4f}; resumed vs uninterrupted max |diff| {diff:.1e}")
