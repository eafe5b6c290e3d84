"""Early-stopping Best-of-N live on an SD-1.5-sized pipeline: wall time against the denoiser-call accounting.

    python bench/bon_overhead.py [--device cuda] [--dtype float16] [--n 6] [--steps 50] [--latent 64] [--repeats 3]

Builds a ``StableDiffusionPipeline`` with the SD 1.5 architectures (UNet 860 M, VAE, CLIP ViT-L/14-sized text
encoder; random weights, the real CLIP BPE) and a NoisyCLIP scorer (open_clip ViT-B-32, SD 1.x preview map), then runs
``EarlyBestOfN`` on one prompt with full-cost BoN (one-shot at k = T) and with one-shot at k = T/2 and successive
halving (T/4, T/2, 3T/4). For each it prints the denoiser calls (the accounting of the BoN tables), the wall seconds
per phase (medians of ``--repeats`` runs after a warm-up, each ending with a device synchronisation) and two ratios:

* **wall fraction**: the run's total seconds / full-cost BoN's, next to the denoiser-call fraction. On a GPU a UNet
  call on 2 latents is not 6x cheaper than on 12 (the GPU is under-used at small batches), so early stopping saves
  less wall time than denoiser calls;
* **scoring / saved**: seconds spent scoring inside the loop / denoising seconds saved against full-cost BoN.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from sd15 import sd15_unet, sd15_vae  # noqa: E402

PROMPT = "two red circles above a blue square"


def sd15_pipeline(device: torch.device, dtype: torch.dtype) -> Any:
    """An SD-1.5-sized ``StableDiffusionPipeline`` with random weights and the real CLIP BPE tokenizer."""
    from diffusers import DDIMScheduler, StableDiffusionPipeline
    from transformers import CLIPTextConfig, CLIPTextModel

    from noisyclip_metrics.tokenizers import load_clip_tokenizer, write_clip_bpe_files

    with tempfile.TemporaryDirectory() as tmp:  # the tokenizer reads its files when built
        tok = load_clip_tokenizer(write_clip_bpe_files(Path(tmp) / "bpe"), model_max_length=77)
    torch.manual_seed(0)
    text = CLIPTextModel(CLIPTextConfig(vocab_size=len(tok), hidden_size=768, intermediate_size=3072,
                                        num_hidden_layers=12, num_attention_heads=12, max_position_embeddings=77,
                                        bos_token_id=len(tok) - 2, eos_token_id=len(tok) - 1,
                                        pad_token_id=len(tok) - 1)).eval()  # fmt: skip
    sched = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
                          set_alpha_to_one=False, steps_offset=1)  # fmt: skip
    pipe = StableDiffusionPipeline(unet=sd15_unet(), vae=sd15_vae(), text_encoder=text, tokenizer=tok, scheduler=sched,
                                   safety_checker=None, feature_extractor=None, image_encoder=None,
                                   requires_safety_checker=False)  # fmt: skip
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device, dtype)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--n", type=int, default=6)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--latent", type=int, default=64, help="latent side (64 = 512 px images)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)

    from noisyclip_metrics.bon import EarlyBestOfN, HalvingPolicy, OneShotPolicy
    from noisyclip_metrics.model import NoisyCLIPModel
    from noisyclip_metrics.pipelines import torch_device, torch_dtype
    from noisyclip_metrics.scorers import build_scorer

    device, dtype = torch_device(args.device), torch_dtype(args.dtype)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    pipe = sd15_pipeline(device, dtype)
    scorer = build_scorer("noisyclip", model=NoisyCLIPModel.from_config("ViT-B-32", preview="sd1", seed=0).to(device))
    t, n, px = args.steps, args.n, 8 * args.latent
    policies = {"full-cost BoN (k = T)": OneShotPolicy(k=t), f"one-shot k = {t // 2}": OneShotPolicy(k=t // 2),
                f"halving {t // 4}, {t // 2}, {3 * t // 4}": HalvingPolicy((t // 4, t // 2, 3 * t // 4))}  # fmt: skip

    def run(policy: Any) -> tuple[dict[str, float], int]:
        sync()
        result = EarlyBestOfN(pipe, scorer, policy)(PROMPT, n=n, num_inference_steps=t, height=px, width=px)
        sync()
        return result.seconds, result.denoiser_evals

    rows = {}
    with torch.no_grad():
        for name, policy in policies.items():
            run(policy)  # warm-up
            runs = [run(policy) for _ in range(args.repeats)]
            seconds = {k: statistics.median(r[0][k] for r in runs) for k in runs[0][0]}
            rows[name] = (seconds, runs[0][1])
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"Best-of-{n}, T = {t}, {px} px, SD-1.5-sized pipeline ({args.dtype}) on {where}, NoisyCLIP ViT-B-32 "
          f"scorer (float32); medians of {args.repeats} after a warm-up\n")  # fmt: skip
    print("| policy | denoiser calls (fraction) | denoise s | score s | total s | wall fraction | scoring / saved |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    full_s, full_calls = rows["full-cost BoN (k = T)"]
    for name, (sec, calls) in rows.items():
        saved = full_s["denoise"] - sec["denoise"]
        ratio = f"{sec['score'] / saved:.3f}" if saved > 0 else "—"
        print(f"| {name} | {calls} ({calls / (n * t):.2f}) | {sec['denoise']:.3f} | {sec['score']:.4f} | "
              f"{sec['total']:.3f} | {sec['total'] / full_s['total']:.2f} | {ratio} |")  # fmt: skip


if __name__ == "__main__":
    main()
