"""Cost of scoring one step's latents: ``noisyclip`` (preview + CLIP) vs ``clip-x0-decoded`` (VAE decode + CLIP) vs one
denoiser call, at SD-1.5-sized configurations (real architecture configs, random weights; CPU by default).

    python benchmarks/scoring_cost.py [--batch 4] [--latent 64] [--repeats 3] [--clip ViT-B-32] [--threads N]
                                 [--device cuda] [--dtype float16]

Prints a Markdown table with median wall times and the ratios, all measured side by side in one run. The UNet and VAE
use the Stable Diffusion 1.5 configurations (``UNet2DConditionModel``: blocks 320/640/1280/1280, cross-attention 768;
``AutoencoderKL``: blocks 128/256/512/512, 4 latent channels); the CLIP is an open_clip architecture (ViT-B-32, the
official NoisyCLIP backbone, by default). Text embeddings are computed once per prompt and excluded, as in the scorers.
``--device``/``--dtype`` place the UNet and VAE (the CLIP scorer stays float32, as the scorers run); on a GPU every
timed call ends with a device synchronisation.
"""

from __future__ import annotations

import torch

from noisyclip_metrics.benchmarking import (
    apply_threads,
    device_name,
    device_sync,
    markdown_table,
    script_parser,
    sd15_unet,
    sd15_vae,
    timed,
)


def main() -> None:
    parser = script_parser(__doc__, device=True, repeats=3)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--latent", type=int, default=64, help="latent side (64 = 512 px images)")
    parser.add_argument("--clip", default="ViT-B-32", help="open_clip architecture of the scorer")
    args = parser.parse_args()
    apply_threads(args)

    from noisyclip_metrics.diffusion.pipelines import torch_dtype
    from noisyclip_metrics.scoring.factory import torch_device
    from noisyclip_metrics.scoring.model import NoisyCLIPModel
    from noisyclip_metrics.scoring.scorers import ScoreInputs, build_scorer

    device, dtype = torch_device(args.device), torch_dtype(args.dtype)
    sync = device_sync(device)
    torch.manual_seed(0)
    b, s = args.batch, args.latent
    latents = torch.randn(b, 4, s, s).to(device, dtype)
    prompts = [f"prompt number {i}" for i in range(b)]
    model = NoisyCLIPModel.from_config(args.clip, preview="sd1", seed=0).to(device)
    unet, vae = sd15_unet().to(device, dtype), sd15_vae().to(device, dtype)
    text_ctx = torch.randn(2 * b, 77, 768).to(device, dtype)
    t = torch.full((2 * b,), 500, device=device)
    noisyclip = build_scorer("noisyclip", model=model)
    decoded = build_scorer("clip-x0-decoded", model=model, vae=vae)
    inputs = ScoreInputs(prompts=prompts, latents=latents, x0=latents)

    with torch.no_grad():
        model.encode_text(prompts)  # the model keeps text embeddings across calls: the scorer rows exclude text
        rows = {
            "text embeddings (once per prompt)": timed(
                lambda: (model.clear_text_cache(), model.encode_text(prompts)), args.repeats, sync
            ),
            "noisyclip: preview + CLIP image tower": timed(lambda: noisyclip.score(inputs), args.repeats, sync),
            "clip-x0-decoded: VAE decode + CLIP": timed(lambda: decoded.score(inputs), args.repeats, sync),
            f"denoiser call, CFG (UNet batch {2 * b})": timed(
                lambda: unet(torch.cat([latents, latents]), t, encoder_hidden_states=text_ctx), args.repeats, sync
            ),
        }
    n_params = {
        "CLIP": sum(p.numel() for p in model.clip.parameters()),
        "UNet": sum(p.numel() for p in unet.parameters()),
        "VAE": sum(p.numel() for p in vae.parameters()),
    }
    where = device_name(device)
    print(
        f"batch {b}, latents {b}x4x{s}x{s} ({8 * s} px images), CLIP {args.clip}, UNet/VAE {args.dtype} on "
        f"{where}, median of {args.repeats} after a warm-up"
    )
    print("parameters: " + ", ".join(f"{k} {v / 1e6:.1f} M" for k, v in n_params.items()) + "\n")
    ours = rows["noisyclip: preview + CLIP image tower"]
    print(
        markdown_table(
            ["operation", "seconds", "x noisyclip"], [[name, sec, f"{sec / ours:.1f}"] for name, sec in rows.items()]
        )
    )
    dec = rows["clip-x0-decoded: VAE decode + CLIP"]
    den = rows[f"denoiser call, CFG (UNet batch {2 * b})"]
    print(
        f"\nclip-x0-decoded / noisyclip = {dec / ours:.1f}x;  denoiser call / noisyclip = {den / ours:.1f}x;  "
        f"noisyclip scoring = {100 * ours / den:.1f}% of one denoising step"
    )


if __name__ == "__main__":
    main()
