"""The package on a CUDA GPU: every path that places tensors, checked against the same work on the CPU.

    python scripts/gpu_check.py [--device cuda] [--out DIR] [--only WORD...]

Needs a CUDA device (the CPU test suite cannot reach these paths). Runs, on the built-in world and the tiny test
pipelines, and prints one line per check with the largest difference it saw:

* the metric (``NoisyCLIPScore``) on GPU latents, float32 and float16, against the CPU;
* trajectory capture of a world pipeline on the GPU: finite latents and x̂0, and the oracle's TIFA score of its
  images printed next to the CPU's (same seeds; CUDA draws its own noise, so the images differ: 16 prompts, a
  reading, not a test);
* ``EarlyBestOfN`` on the GPU (one-shot, halving, threshold; preview, x̂0 and decoded-x̂0 scorers; float32 and
  float16; SD, SDXL, SD3 and FLUX with their default and multistep schedulers): every survivor's image against the
  plain pipeline's for its seed on the same device; ``run_batch`` of 4 prompts against each prompt's run alone;
* ``NoisyCLIPMonitor`` inside a GPU pipeline call against scoring the captured trajectory;
* ``evaluate`` with ``device`` / ``dtype`` (the run records them, its BoN rows compute), and the CLI's
  ``--device`` / ``--dtype`` for ``evaluate``, ``capture`` and ``bon run``;
* NoisyCLIP training on the GPU (``TrainConfig(device=...)``), interrupted and resumed, against one uninterrupted run.

The exactness checks run with TF32 off (``torch.backends.cudnn.allow_tf32 = False``; PyTorch turns it on for cuDNN
convolutions by default): TF32 kernels chosen for a batch of N and for one survivor round differently, and one more
check measures how far that moves a survivor's image. Tolerances: float32 ``1e-3``, float16 ``5e-2``. Exit status 1
when any check fails. ``--out`` gets ``gpu_check.json`` with every line.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from noisyclip_metrics.bon import EarlyBestOfN, HalvingPolicy, NoisyCLIPMonitor, OneShotPolicy
from noisyclip_metrics.bon.calibration import ThresholdCalibration
from noisyclip_metrics.bon.policies import ThresholdPolicy
from noisyclip_metrics.functional import resolve_model
from noisyclip_metrics.pipelines import load_pipeline
from noisyclip_metrics.scorers import ScoreInputs, build_scorer

PROMPT = "two red circles above a blue square"
TOL = {torch.float32: 1e-3, torch.float16: 5e-2, torch.bfloat16: 1e-1}
RESULTS: list[dict[str, Any]] = []
CHECKS: list[tuple[str, Callable[[], None]]] = []


def check(name: str) -> Callable[[Callable[[], str]], Callable[[], None]]:
    """Register a check: run, it records PASS (with its detail line) or FAIL (with the error)."""

    def wrap(fn: Callable[[], str]) -> Callable[[], None]:
        def run() -> None:
            t0 = time.perf_counter()
            try:
                detail, status = fn(), "PASS"
            except Exception as err:
                detail, status = f"{type(err).__name__}: {err}\n{traceback.format_exc(limit=6)}", "FAIL"
            RESULTS.append(
                {"check": name, "status": status, "seconds": round(time.perf_counter() - t0, 2), "detail": detail}
            )
            print(f"{status}  {name}  ({time.perf_counter() - t0:.1f} s)  {detail}", flush=True)

        CHECKS.append((name, run))
        return run

    return wrap


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
        float((img - plain(pipe, s, steps, **kwargs)).abs().max()) for s, img in zip(result.seeds, result.images)
    )
    tol = TOL[pipe.dtype]
    if worst > tol:
        raise AssertionError(f"survivor differs from the plain pipeline by {worst:.2e} > {tol:g}")
    if result.denoiser_evals >= n * steps:
        raise AssertionError("nothing was stopped early: the check did not test pruning")
    return worst


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--only", nargs="+", default=None, metavar="WORD", help="run the checks whose name has a WORD")
    args = parser.parse_args(argv)
    CHECKS.clear()
    RESULTS.clear()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("no CUDA device: nothing to check (--device cpu dry-runs the script, with bfloat16 for half precision)")
        return 2
    tf32 = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False  # see the module docstring
    half = torch.float16 if device.type == "cuda" else torch.bfloat16
    half_name = str(half).removeprefix("torch.")
    work = Path(tempfile.mkdtemp(prefix="gpu-check-"))  # removed at the end
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU (dry run)"
    print(f"torch {torch.__version__}, {name}; work folder {work}", flush=True)

    @check(f"metric: NoisyCLIPScore on {device} latents (float32, {half_name}) = CPU")
    def _metric() -> str:
        from noisyclip_metrics.metric import NoisyCLIPScore

        g = torch.Generator().manual_seed(0)
        z = torch.randn(4, 4, 16, 16, generator=g)
        prompts = ["a red circle", "two blue squares", "a green triangle", "a blue circle"]
        cpu = NoisyCLIPScore(model="world:noisyclip")
        cpu.update(z, prompts)
        out = []
        for dtype in (torch.float32, half):
            gpu = NoisyCLIPScore(model="world:noisyclip").to(device)
            gpu.update(z.to(device, dtype), prompts)
            diff = abs(float(gpu.compute()) - float(cpu.compute()))
            if diff > 100 * TOL[dtype]:  # the aggregate is 100 x cosine
                raise AssertionError(f"{dtype}: {diff:.3g}")
            out.append(f"{str(dtype)[6:]} |diff| {diff:.2e}")
        return ", ".join(out)

    @check("capture: world:sd-base trajectories on the GPU are finite; oracle TIFA score next to the CPU's")
    def _capture() -> str:
        from noisyclip_metrics.judges import build_judge
        from noisyclip_metrics.trajectory import capture_trajectories

        prompts = [PROMPT, "a red circle", "three green triangles", "a blue square to the left of a red circle"] * 4
        seeds = list(range(len(prompts)))
        oracle = build_judge("world-oracle")
        rates = {}
        for where in ("cpu", device):
            pipe = load_pipeline("world:sd-base", where)
            batch = capture_trajectories(pipe, prompts, seeds, num_inference_steps=20)
            if not (torch.isfinite(batch.latents).all() and torch.isfinite(batch.x0).all()):
                raise AssertionError(f"{where}: non-finite latents")
            rates[str(where)] = sum(s for s in oracle.judge(prompts, batch.images)) / len(prompts)
        return "oracle TIFA score CPU {cpu:.3f} / GPU {gpu:.3f}".format(cpu=rates["cpu"], gpu=rates[str(device)])

    for dtype in (torch.float32, half):

        @check(f"bon: EarlyBestOfN on world:sd-base, {str(dtype)[6:]}: survivors = plain pipeline")
        def _bon(dtype: torch.dtype = dtype) -> str:
            pipe = load_pipeline("world:sd-base", device, dtype)
            out = []
            for name, model in (
                ("noisyclip", "world:noisyclip"),
                ("noisyclip-x0", "world:noisyclip-x0"),
                ("clip-x0-decoded", "world:clip"),
            ):
                scorer = build_scorer(name, model=resolve_model(model, device), vae=pipe.vae)
                cal = ThresholdCalibration(scorer=name, n=6, quantile=0.1, num_steps=20, gaps=(-0.5,) * 20 + (0.0,))
                for policy in (OneShotPolicy(k=6), HalvingPolicy((3, 6, 9)), ThresholdPolicy(cal, min_step=2)):
                    worst = survivors_match(pipe, scorer, policy, 20)
                    out.append(f"{name}/{policy.name} {worst:.1e}")
            return "max |diff| " + ", ".join(out)

    @check(f"bon: run_batch of 4 prompts on world:sd-base (float32, {half_name}): each prompt = its own run")
    def _batch() -> str:
        prompts = [PROMPT, "a red circle", "three green triangles", "a blue square to the left of a red circle"]
        out = []
        for dtype in (torch.float32, half):
            pipe = load_pipeline("world:sd-base", device, dtype)
            scorer = build_scorer("noisyclip-x0", model=resolve_model("world:noisyclip-x0", device))
            bon = EarlyBestOfN(pipe, scorer, HalvingPolicy((3, 6, 9)))
            batch = bon.run_batch(prompts, n=6, seeds=list(range(20, 26)), num_inference_steps=20)
            same, worst = 0, 0.0
            for prompt, result in zip(prompts, batch):
                alone = bon(prompt, n=6, seeds=list(range(20, 26)), num_inference_steps=20)
                same += alone.seeds == result.seeds
                ref = plain(pipe, result.seeds[0], 20, prompt)
                worst = max(worst, float((result.images[0] - ref).abs().max()))
            if worst > TOL[dtype]:
                raise AssertionError(f"{dtype}: a survivor differs from the plain pipeline by {worst:.2e}")
            if dtype == torch.float32 and same < len(prompts):  # half precision may break a near tie differently
                raise AssertionError(f"float32: {len(prompts) - same} prompt(s) chose another seed than alone")
            out.append(f"{str(dtype)[6:]}: survivors = plain within {worst:.1e}, {same}/{len(prompts)} picks as alone")
        return "; ".join(out)

    @check(f"bon: world:sd-base float32 with TF32 {'on' if tf32 else 'off'} (PyTorch's default): survivor deviation")
    def _tf32() -> str:
        torch.backends.cudnn.allow_tf32 = tf32
        try:
            pipe = load_pipeline("world:sd-base", device)
            scorer = build_scorer("noisyclip-x0", model=resolve_model("world:noisyclip-x0", device))
            result = EarlyBestOfN(pipe, scorer, OneShotPolicy(k=6))(
                PROMPT, n=6, seeds=list(range(20, 26)), num_inference_steps=20
            )
            worst = float((result.images[0] - plain(pipe, result.seeds[0], 20)).abs().max())
        finally:
            torch.backends.cudnn.allow_tf32 = False
        if worst > 5e-2:
            raise AssertionError(f"survivor deviates by {worst:.2e}")
        return f"max |survivor - plain| {worst:.1e} (pixel values in [0, 1])"

    @check("bon: tiny SD / SDXL / SD3 / FLUX on the GPU, default and multistep schedulers: survivors = plain")
    def _families() -> str:
        from diffusers import DPMSolverMultistepScheduler, UniPCMultistepScheduler

        from noisyclip_metrics.model import TINY_TEST_CONFIG, NoisyCLIPModel
        from noisyclip_metrics.testing import tiny_pipeline

        preview = {"sd": "sd1", "sdxl": "sdxl", "sd3": "sd3", "flux": "flux"}
        out = []
        for family, pv in preview.items():
            pipe = tiny_pipeline(family, work / family).to(device)
            model = NoisyCLIPModel.from_config(TINY_TEST_CONFIG, preview=pv, seed=0).to(device)
            flow = family in ("sd3", "flux")
            kwargs = {"use_flow_sigmas": True, "prediction_type": "flow_prediction", "flow_shift": 3.0} if flow else {}
            multistep = (
                UniPCMultistepScheduler(**kwargs)
                if flow
                else DPMSolverMultistepScheduler.from_config(pipe.scheduler.config)
            )
            for sched in (pipe.scheduler, multistep):
                pipe.scheduler = sched
                for name in ("clip", "clip-x0"):
                    worst = survivors_match(
                        pipe, build_scorer(name, model=model), HalvingPolicy((1, 2)), 4, n=4, height=32, width=32
                    )
                    out.append(f"{family}/{type(sched).__name__[:8]}/{name} {worst:.1e}")
        return "max |diff| " + ", ".join(out)

    @check("monitor: NoisyCLIPMonitor (x̂0, inside watch) in a GPU pipeline call = scoring the trajectory")
    def _monitor() -> str:
        from noisyclip_metrics.trajectory import capture_trajectories

        pipe = load_pipeline("world:sd-base", device)
        scorer = build_scorer("noisyclip-x0", model=resolve_model("world:noisyclip-x0", device))
        monitor = NoisyCLIPMonitor(scorer, PROMPT)
        gens = [torch.Generator(device=device).manual_seed(s) for s in (0, 1)]
        with monitor.watch(pipe):
            pipe(
                [PROMPT] * 2,
                num_inference_steps=20,
                generator=gens,
                output_type="pt",
                callback_on_step_end=monitor,
                callback_on_step_end_tensor_inputs=["latents"],
            )
        batch = capture_trajectories(pipe, [PROMPT] * 2, [0, 1], num_inference_steps=20)
        worst = 0.0
        for k, live in monitor.scores.items():
            ref = scorer.score(ScoreInputs(prompts=[PROMPT] * 2, x0=batch.x0[:, k]))
            worst = max(worst, float((live.float().cpu() - ref.float().cpu()).abs().max()))
        if worst > TOL[torch.float32]:
            raise AssertionError(f"monitor vs trajectory {worst:.2e}")
        return f"{len(monitor.scores)} steps, max |diff| {worst:.1e}"

    @check("evaluate: device and dtype; the run records them; BoN rows from it")
    def _evaluate() -> str:
        from noisyclip_metrics.bon import compute_bon
        from noisyclip_metrics.evaluate import EvalConfig, evaluate
        from noisyclip_metrics.results import ResultsStore

        out = []
        for dtype in ("float32", half_name):
            res = evaluate(
                EvalConfig(
                    model="world:sd-base",
                    out=str(work / f"eval-{dtype}"),
                    prompts=12,
                    seeds=(0, 1, 2, 3),
                    device=str(device),
                    dtype=dtype,
                    progress=False,
                )
            )
            info = ResultsStore.open(res.store).run(res.run_id)
            recorded = (info.sampler.get("device", "cpu"), info.sampler.get("dtype", "float32"))
            if recorded != (device.type, dtype):
                raise AssertionError(f"sampler {info.sampler}")
            bon = compute_bon(res.store).to_pylist()
            finite = all(r["judge_score"] == r["judge_score"] for r in bon)
            out.append(f"{dtype}: {res.items} candidates, {len(bon)} BoN rows, finite {finite}")
        cpu = evaluate(
            EvalConfig(
                model="world:sd-base", out=str(work / "eval-cpu"), prompts=12, seeds=(0, 1, 2, 3), progress=False
            )
        )
        if cpu.run_id == res.run_id:
            raise AssertionError(f"the default run has the {device} {half_name} run's id")
        return "; ".join(out)

    @check("cli: evaluate / capture / bon run with --device and --dtype")
    def _cli() -> str:
        from noisyclip_metrics.cli import main as cli

        (work / "prompts.txt").write_text("a red circle\ntwo blue squares\n", encoding="utf-8")
        codes = [
            cli(
                [
                    "evaluate",
                    "--model",
                    "world:sd-small",
                    "--out",
                    str(work / "cli-eval"),
                    "--prompts",
                    "3",
                    "--seeds",
                    "0",
                    "1",
                    "--device",
                    str(device),
                    "--dtype",
                    half_name,
                    "--no-progress",
                ]
            ),
            cli(
                [
                    "capture",
                    "--pipeline",
                    "world:sd-small",
                    "--prompts",
                    str(work / "prompts.txt"),
                    "--seeds",
                    "0",
                    "1",
                    "--device",
                    str(device),
                    "--out",
                    str(work / "cli-capture"),
                ]
            ),
            cli(
                [
                    "bon",
                    "run",
                    "--pipeline",
                    "world:sd-small",
                    "--prompt",
                    PROMPT,
                    "--n",
                    "4",
                    "--k",
                    "6",
                    "--scorer",
                    "noisyclip-x0",
                    "--device",
                    str(device),
                    "--out",
                    str(work / "cli-bon"),
                ]
            ),
        ]
        if codes != [0, 0, 0]:
            raise AssertionError(f"exit codes {codes}")
        account = json.loads((work / "cli-bon" / "account.json").read_text())
        return f"exit codes {codes}; bon run chose seed {account['seeds']}"

    @check("train: NoisyCLIP fine-tuning on the GPU, interrupted and resumed = uninterrupted")
    def _train() -> str:
        from noisyclip_metrics.training.trainer import TrainConfig, train
        from noisyclip_metrics.trajectory_store import record_trajectories

        prompts = ["a red circle", "two blue squares", "a green triangle to the left of a red square"] * 4
        store = record_trajectories(
            load_pipeline("world:sd-base", device),
            work / "traj",
            prompts,
            [0, 1],
            batch_size=12,
            num_inference_steps=20,
        )
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
        whole = train(TrainConfig(**base, out_dir=str(work / "train-a")), progress=False)
        train(TrainConfig(**base, out_dir=str(work / "train-b")), progress=False, stop_at=20)
        resumed = train(TrainConfig(**base, out_dir=str(work / "train-b")), progress=False)
        assert whole is not None and resumed is not None
        diff = max(
            float((a - b).abs().max())
            for a, b in zip(whole.model.state_dict().values(), resumed.model.state_dict().values())
        )
        if diff > 1e-4:
            raise AssertionError(f"resumed run differs by {diff:.2e}")
        if next(whole.model.parameters()).device.type != device.type:
            raise AssertionError(f"the model did not train on {device}")
        return f"final loss {whole.final_loss:.4f}; resumed vs uninterrupted max |diff| {diff:.1e}"

    try:
        for name, run in CHECKS:
            if args.only is None or any(word in name for word in args.only):
                run()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    failed = [r["check"] for r in RESULTS if r["status"] == "FAIL"]
    print(f"\n{len(RESULTS) - len(failed)} of {len(RESULTS)} checks passed" + (f"; failed: {failed}" if failed else ""))
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "gpu_check.json").write_text(json.dumps(RESULTS, indent=2) + "\n", encoding="utf-8")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
