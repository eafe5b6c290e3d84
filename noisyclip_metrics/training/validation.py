"""Held-out evaluation of a noisy-latent scorer, per step: caption retrieval and within-prompt ranking.

* **recall@1 / recall@5**: for a trajectory's latent at step k, rank the held-out prompts by cosine; a hit when the
  trajectory's own prompt is among the top 1 / 5.
* **pairwise accuracy**: within each prompt, over pairs of trajectories whose final judgment differs, the share where
  the step-k score orders them like the judgment (score ties count one half); computed by
  :func:`noisyclip_metrics.evaluation.stats.within_group_pairwise_accuracy` (re-exported here):

    >>> import torch
    >>> within_group_pairwise_accuracy(torch.tensor([1., 0, 1, 0]), torch.tensor([.9, .1, .2, .2]), "aabb")
    0.75
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from noisyclip_metrics.evaluation.stats.grouped import within_group_pairwise_accuracy
from noisyclip_metrics.scoring.model import NoisyCLIPModel
from noisyclip_metrics.training.dataset import TrajectorySource

__all__ = ["embed_at_step", "evaluate_steps", "within_group_pairwise_accuracy"]


@torch.no_grad()
def embed_at_step(
    model: NoisyCLIPModel, source: TrajectorySource, indices: Sequence[int], step: int, batch_size: int = 256
) -> torch.Tensor:
    """``(len(indices), D)`` image-tower embeddings of the trajectories' previews at ``step`` (what ``source`` reads:
    the latent or the x̂0 estimate; with the step's noise level for a noise-conditioned model), ``batch_size``
    latents per forward pass."""
    embs = []
    for lo in range(0, len(indices), batch_size):
        chunk = list(indices[lo : lo + batch_size])
        z, scale = source.latents(chunk, [step] * len(chunk))
        level = source.noise_std(chunk, [step] * len(chunk)) if model.config.noise_conditioned else None
        embs.append(model.encode_latents((z * scale.view(-1, 1, 1, 1)).to(model.device), level))
    return torch.cat(embs)


@torch.no_grad()
def evaluate_steps(
    model: NoisyCLIPModel,
    source: TrajectorySource,
    indices: Sequence[int],
    steps: Sequence[int],
    reference: torch.Tensor,
    batch_size: int = 256,
) -> list[dict[str, float]]:
    """Recall@1/5 and within-prompt pairwise accuracy (against ``reference``) at each step of ``steps``.

    Args:
        model: the scorer's model (previews of the latents ``source`` reads).
        source: trajectories.
        indices: held-out trajectory indices into ``source``.
        steps: step indices to evaluate.
        reference: ``(len(indices),)`` final judgment of each trajectory (a judge's score, or frozen CLIP's).
        batch_size: latents per forward pass.
    """
    prompts = source.prompts(indices)
    unique = list(dict.fromkeys(prompts))
    text = model.encode_text(unique)
    own = torch.tensor([unique.index(p) for p in prompts])
    rows = []
    for k in steps:
        sims = embed_at_step(model, source, indices, k, batch_size) @ text.T
        rank = (sims > sims.gather(1, own[:, None].to(sims.device))).sum(1)
        scores = sims.gather(1, own[:, None].to(sims.device))[:, 0].cpu()
        rows.append(
            {
                "step": int(k),
                "fraction": int(k) / source.num_steps,
                "recall@1": float((rank < 1).float().mean()),
                "recall@5": float((rank < 5).float().mean()),
                "pairwise_accuracy": within_group_pairwise_accuracy(reference, scores, prompts),
            }
        )
    return rows
