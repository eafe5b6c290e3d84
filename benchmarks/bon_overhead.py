"""Early-stopping Best-of-N live on an SD-1.5-sized pipeline: wall time against the denoiser-call accounting.

    python benchmarks/bon_overhead.py [--pipeline sd15|world:sd-base] [--prompts P] [--device cuda] [--dtype float16]
                                 [--n 6] [--steps 50] [--latent 64] [--repeats 3]

Builds a ``StableDiffusionPipeline`` with the SD 1.5 architectures (UNet 860 M, VAE, CLIP ViT-L/14-sized text
encoder; random weights, the real CLIP BPE) and a NoisyCLIP scorer (open_clip ViT-B-32, SD 1.x preview map), then runs
``EarlyBestOfN`` on one prompt with full-cost BoN (one-shot at k = T) and with one-shot at k = T/2 and successive
halving (T/4, T/2, 3T/4). For each it prints the denoiser calls (the accounting of the BoN tables), the wall seconds
per phase (medians of ``--repeats`` runs after a warm-up, each ending with a device synchronisation) and two ratios:

* **wall fraction**: the run's total seconds / full-cost BoN's, next to the denoiser-call fraction. On a GPU a UNet
  call on 2 latents is not 6x cheaper than on 12 (the GPU is under-used at small batches), so early stopping saves
  less wall time than denoiser calls;
* **scoring / saved**: seconds spent scoring inside the loop / denoising seconds saved against full-cost BoN.

With ``--prompts P`` (P > 1) it runs P prompts twice per policy, one after the other and as one batch of P x N
candidates (``EarlyBestOfN.run_batch``, each prompt pruned on its own), and prints the seconds per prompt and the
wall fraction of each: where a small batch under-uses the hardware, batching prompts is what turns the saved
denoiser calls into saved seconds. With ``--stream SLOTS`` the P prompts also run as a stream with continuous
batching (:class:`~noisyclip_metrics.bon.stream.StreamBestOfN`: at most SLOTS candidates in flight, a prompt's run
admitted as soon as pruning frees room for its N), full-cost BoN included (with the same slots), and the table adds
its seconds per prompt and wall fraction (the target is a wall fraction within 0.05 of the denoiser-call fraction)
and its scorer calls (the runs due to be scored together share one).
``--pipeline world:sd-base`` (or another world model) runs the built-in world's pipeline and NoisyCLIP instead of
the SD-1.5-sized one (T defaults to the world's 20).
"""

from __future__ import annotations

import statistics
import tempfile
from pathlib import Path
from typing import Any

import torch

from noisyclip_metrics.benchmarking import apply_threads, script_parser, sd15_unet, sd15_vae

PROMPT = "two red circles above a blue square"


def sd15_pipeline(device: torch.device, dtype: torch.dtype) -> Any:
    """An SD-1.5-sized ``StableDiffusionPipeline`` with random weights and the real CLIP BPE tokenizer."""
    from diffusers import DDIMScheduler, StableDiffusionPipeline
    from transformers import CLIPTextConfig, CLIPTextModel

    from noisyclip_metrics.scoring.tokenizers import load_clip_tokenizer, write_clip_bpe_files

    with tempfile.TemporaryDirectory() as tmp:  # the tokenizer reads its files when built
        tok = load_clip_tokenizer(write_clip_bpe_files(Path(tmp) / "bpe"), model_max_length=77)
    torch.manual_seed(0)
    text = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(tok),
            hidden_size=768,
            intermediate_size=3072,
            num_hidden_layers=12,
            num_attention_heads=12,
            max_position_embeddings=77,
            bos_token_id=len(tok) - 2,
            eos_token_id=len(tok) - 1,
            pad_token_id=len(tok) - 1,
        )
    ).eval()
    sched = DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
    )
    pipe = StableDiffusionPipeline(
        unet=sd15_unet(),
        vae=sd15_vae(),
        text_encoder=text,
        tokenizer=tok,
        scheduler=sched,
        safety_checker=None,
        feature_extractor=None,
        image_encoder=None,
        requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device, dtype)


PROMPTS = (
    PROMPT,
    "a green triangle left of a yellow star",
    "three blue squares",
    "a red circle",
    "two yellow stars below a green circle",
    "a blue triangle right of a red square",
)


def build(pipeline: str, device: torch.device, dtype: torch.dtype) -> tuple[Any, Any, dict[str, Any], str]:
    """The pipeline, its NoisyCLIP scorer, the sampler settings and a description."""
    from noisyclip_metrics.diffusion.pipelines import load_pipeline
    from noisyclip_metrics.scoring.factory import resolve_model
    from noisyclip_metrics.scoring.model import NoisyCLIPModel
    from noisyclip_metrics.scoring.scorers import build_scorer
    from noisyclip_metrics.world.assets import world_sampler

    if pipeline == "sd15":
        pipe = sd15_pipeline(device, dtype)
        model = NoisyCLIPModel.from_config("ViT-B-32", preview="sd1", seed=0).to(device)
        return pipe, build_scorer("noisyclip", model=model), {}, "SD-1.5-sized pipeline, NoisyCLIP ViT-B-32 scorer"
    pipe = load_pipeline(pipeline, device, dtype)
    scorer = build_scorer("noisyclip", model=resolve_model("world:noisyclip", device), vae=pipe.vae)
    sampler = world_sampler()
    settings = {"guidance_scale": sampler.get("guidance_scale"), "num_inference_steps": sampler["num_inference_steps"]}
    return pipe, scorer, settings, f"{pipeline} with world:noisyclip"


def main(argv: list[str] | None = None) -> None:
    parser = script_parser(__doc__, device=True, repeats=3)
    parser.add_argument("--pipeline", default="sd15", help="sd15 (SD-1.5-sized, random weights) or a world id")
    parser.add_argument(
        "--prompts",
        type=int,
        default=1,
        help="P > 1: also run P prompts one at a time and as one batch (EarlyBestOfN.run_batch)",
    )
    parser.add_argument("--n", type=int, default=6)
    parser.add_argument("--steps", type=int, default=None, help="T (default: 50, or the world's 20)")
    parser.add_argument("--latent", type=int, default=64, help="latent side (64 = 512 px images; sd15 only)")
    parser.add_argument(
        "--stream", type=int, default=None, metavar="SLOTS", help="with P > 1: also run the prompts as a stream"
    )
    args = parser.parse_args(argv)
    apply_threads(args)

    from noisyclip_metrics.bon import EarlyBestOfN, HalvingPolicy, OneShotPolicy
    from noisyclip_metrics.bon.stream import StreamBestOfN
    from noisyclip_metrics.diffusion.pipelines import torch_dtype
    from noisyclip_metrics.scoring.factory import torch_device

    device, dtype = torch_device(args.device), torch_dtype(args.dtype)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    pipe, scorer, sampler, what = build(args.pipeline, device, dtype)
    t, n = args.steps or int(sampler.get("num_inference_steps", 50)), args.n
    kwargs: dict[str, Any] = {**sampler, "num_inference_steps": t}
    if args.pipeline == "sd15":
        kwargs.update(height=8 * args.latent, width=8 * args.latent)
    policies = {
        "full-cost BoN (k = T)": OneShotPolicy(k=t),
        f"one-shot k = {t // 2}": OneShotPolicy(k=t // 2),
        f"halving {t // 4}, {t // 2}, {3 * t // 4}": HalvingPolicy((t // 4, t // 2, 3 * t // 4)),
    }
    prompts = [PROMPTS[i % len(PROMPTS)] for i in range(args.prompts)]

    def timed(bon: Any, batched: bool | str, name: str) -> tuple[dict[str, float], int]:
        """Seconds per phase and denoiser calls of all prompts: one batch, a stream, or one prompt after the other."""
        sync()
        if batched == "stream":
            stream = StreamBestOfN(pipe, scorer, bon.policy, slots=args.stream)
            result = stream.run(prompts, n=n, **kwargs)
            sync()
            scorer_calls[name] = stream.scorer_calls
            return result.seconds, result.denoiser_evals
        if batched:
            result = bon.run_batch(prompts, n=n, **kwargs)
            return result.seconds, result.denoiser_evals
        seconds: dict[str, float] = {}
        calls = 0
        for prompt in prompts:
            r = bon(prompt, n=n, **kwargs)
            seconds = {k: seconds.get(k, 0.0) + v for k, v in r.seconds.items()}
            calls += r.denoiser_evals
        sync()
        return seconds, calls

    scorer_calls: dict[str, int] = {}  # policy -> the stream's scorer calls (runs due together share one call)
    modes: list[bool | str] = [False, True] if args.prompts > 1 else [False]
    if args.prompts > 1 and args.stream is not None:
        modes.append("stream")
    rows: dict[tuple[str, bool | str], tuple[dict[str, float], int]] = {}
    with torch.no_grad():
        for name, policy in policies.items():
            bon = EarlyBestOfN(pipe, scorer, policy)
            for batched in modes:
                timed(bon, batched, name)  # warm-up
                runs = [timed(bon, batched, name) for _ in range(args.repeats)]
                seconds = {k: statistics.median(r[0][k] for r in runs) for k in runs[0][0]}
                rows[name, batched] = (seconds, runs[0][1])
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(
        f"Best-of-{n}, T = {t}, {what} ({args.dtype}) on {where}; scorer in float32; medians of {args.repeats} "
        f"after a warm-up\n"
    )
    full = next(iter(policies))
    if args.prompts == 1:
        print(
            "| policy | denoiser calls (fraction) | denoise s | score s | total s | wall fraction | scoring / saved |"
        )
        print("|---|---:|---:|---:|---:|---:|---:|")
        full_s = rows[full, False][0]
        for name in policies:
            sec, calls = rows[name, False]
            saved = full_s["denoise"] - sec["denoise"]
            ratio = f"{sec['score'] / saved:.3f}" if saved > 0 else "—"
            print(
                f"| {name} | {calls} ({calls / (n * t):.2f}) | {sec['denoise']:.3f} | {sec['score']:.4f} | "
                f"{sec['total']:.3f} | {sec['total'] / full_s['total']:.2f} | {ratio} |"
            )
        return
    p = args.prompts
    print(
        f"{p} prompts: one after the other (EarlyBestOfN per prompt) and as one batch of {p} x {n} candidates "
        "(EarlyBestOfN.run_batch); seconds per prompt, wall fraction against full-cost BoN run the same way\n"
    )
    streamed = "stream" in modes
    extra = f" stream of {args.stream} slots: s / prompt | wall fraction | scorer calls |" if streamed else ""
    print(
        f"| policy | denoiser calls (fraction) | one at a time: s / prompt | wall fraction | batch of {p}: s / prompt "
        f"| wall fraction | batch speed-up |{extra}"
    )
    print("|---|---:|---:|---:|---:|---:|---:|" + ("---:|---:|---:|" if streamed else ""))
    for name in policies:
        (one, calls), (many, _) = rows[name, False], rows[name, True]
        f_one, f_many = one["total"] / rows[full, False][0]["total"], many["total"] / rows[full, True][0]["total"]
        cells = ""
        if streamed:
            flow = rows[name, "stream"][0]
            wall = flow["total"] / rows[full, "stream"][0]["total"]
            cells = f" {flow['total'] / p:.3f} | {wall:.2f} | {scorer_calls[name]} |"
        print(
            f"| {name} | {calls // p} ({calls / (p * n * t):.2f}) | {one['total'] / p:.3f} | {f_one:.2f} | "
            f"{many['total'] / p:.3f} | {f_many:.2f} | {one['total'] / many['total']:.2f}x |{cells}"
        )


if __name__ == "__main__":
    main()
