"""Seconds per training step of each world UNet, with 8 attention heads (the old layout) and with 2 (the shipped one).

    python benchmarks/unet_step_time.py [--steps 20] [--heads 8 2]

One optimizer step is what the ``unet-*`` build stages repeat: a batch of noised latents, the UNet's forward and
backward pass with cross-attention to the world text features, gradient clipping and AdamW. Inputs are random
tensors of the real shapes, so no world build is needed. The table lists the median milliseconds per step per
model and head count, and each head count's time relative to the first, measured in one run on this machine.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time

import torch
import torch.nn.functional as F

from noisyclip_metrics.world.build.data import CONTEXT_LENGTH
from noisyclip_metrics.world.build.unet import UNET_MODELS, build_unet, training_scheduler


def step_ms(heads: int, name: str, steps: int, text_width: int = 128, seed: int = 0) -> float:
    """Median milliseconds of one training step of ``name`` built with ``heads`` attention heads."""
    torch.manual_seed(seed)
    cfg = dataclasses.replace(UNET_MODELS[name], attention_heads=heads)
    unet = build_unet(cfg, text_width).train()
    optimizer = torch.optim.AdamW(unet.parameters(), lr=cfg.lr)
    ab = training_scheduler().alphas_cumprod
    x0 = torch.randn(cfg.batch_size, 4, 16, 16)
    ctx = torch.randn(cfg.batch_size, CONTEXT_LENGTH, text_width)
    times = []
    for i in range(steps + 3):  # 3 warm-up steps
        start = time.perf_counter()
        t = torch.randint(0, 1000, (cfg.batch_size,))
        noise = torch.randn_like(x0)
        a = ab[t].view(-1, 1, 1, 1)
        loss = F.mse_loss(unet(a.sqrt() * x0 + (1 - a).sqrt() * noise, t, encoder_hidden_states=ctx).sample, noise)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        optimizer.step()
        if i >= 3:
            times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20, help="timed steps per model and head count")
    parser.add_argument("--heads", type=int, nargs="+", default=[8, 2], help="head counts; the first is the reference")
    parser.add_argument("--models", nargs="+", default=list(UNET_MODELS), choices=list(UNET_MODELS))
    args = parser.parse_args(argv)
    print(f"torch threads: {torch.get_num_threads()}\n")
    print(
        "| model | "
        + " | ".join(f"{h} heads ms/step" for h in args.heads)
        + " | "
        + " | ".join(f"{h} / {args.heads[0]} heads" for h in args.heads[1:])
        + " |"
    )
    print("|---" * (2 * len(args.heads)) + "|")
    for name in args.models:
        ms = [step_ms(h, name, args.steps) for h in args.heads]
        print(
            f"| {name} | "
            + " | ".join(f"{m:.0f}" for m in ms)
            + " | "
            + " | ".join(f"{m / ms[0]:.2f}" for m in ms[1:])
            + " |",
            flush=True,
        )


if __name__ == "__main__":
    main()
