"""Training targets for the noisy-latent image tower: what the contrastive loss treats as the truth.

================ ===================================================================================================
name             target
================ ===================================================================================================
``prompt``       the paper's: symmetric InfoNCE with the trajectory's prompt as the positive (multi-positive on the
                 text side when several trajectories of one prompt share a batch)
``filtered``     the same InfoNCE, trained only on trajectories whose final image a judge found aligned, with hard
                 negative captions added as extra text columns
``distill``      the noisy-latent embedding learns the frozen CLIP's judgment of the trajectory's *final image*: soft
                 cross-entropy to the teacher's caption distribution (batch prompts + hard negatives) plus
                 ``1 - cos`` to the teacher's image embedding
``judged``       ``distill`` plus a ranking term from the judge: batches are made of pairs of trajectories of one
                 prompt (two seeds), and where the judge labels one pair member better, a logistic loss
                 ``softplus(s_worse - s_better)`` on their scores ``s`` (logit-scaled cosine with their prompt)
================ ===================================================================================================

The text tower and the logit scale stay frozen in every case.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..registry import Registry

__all__ = ["TargetBatch", "TrainTarget", "TARGETS", "infonce_loss", "distill_loss", "rank_loss", "judged_loss"]


@dataclass(frozen=True)
class TargetBatch:
    """Everything a loss needs for one (global) batch.

    Args:
        image: ``(B, D)`` normalised student embeddings of the noisy latents.
        texts: ``(U + N, D)`` normalised embeddings of the batch's ``U`` distinct prompts, then ``N`` hard negatives.
        prompt_index: ``(B,)`` column of each sample's own prompt in ``texts`` (``< U``).
        num_prompts: ``U``.
        logit_scale: the frozen CLIP temperature (``exp`` already applied).
        teacher_image: ``(B, D)`` normalised frozen-CLIP embeddings of the final images (``distill``, ``judged``).
        labels: ``(B,)`` the judge's score of each trajectory's final image (``judged`` only).
    """

    image: torch.Tensor
    texts: torch.Tensor
    prompt_index: torch.Tensor
    num_prompts: int
    logit_scale: float
    teacher_image: torch.Tensor | None = None
    labels: torch.Tensor | None = None


def infonce_loss(batch: TargetBatch) -> torch.Tensor:
    """Symmetric InfoNCE; image->text over every column, text->image multi-positive over the batch's images."""
    logits = batch.logit_scale * batch.image @ batch.texts.T  # (B, U + N)
    i2t = F.cross_entropy(logits, batch.prompt_index)
    own = F.one_hot(batch.prompt_index, batch.texts.shape[0]).T[: batch.num_prompts].float()  # (U, B)
    t2i_target = own / own.sum(1, keepdim=True)
    t2i = -(t2i_target * F.log_softmax(logits.T[: batch.num_prompts], dim=1)).sum(1).mean()
    return (i2t + t2i) / 2


def distill_loss(batch: TargetBatch) -> torch.Tensor:
    """Soft cross-entropy to the teacher's caption distribution on the final image, plus ``1 - cos`` to its embedding."""
    if batch.teacher_image is None:
        raise ValueError("distill target needs teacher_image")
    teacher = F.softmax(batch.logit_scale * batch.teacher_image @ batch.texts.T, dim=1)
    student = F.log_softmax(batch.logit_scale * batch.image @ batch.texts.T, dim=1)
    soft_ce = -(teacher * student).sum(1).mean()
    embed = (1 - (batch.image * batch.teacher_image).sum(1)).mean()
    return soft_ce + embed


def rank_loss(batch: TargetBatch) -> torch.Tensor:
    """Mean ``softplus(s_j - s_i)`` over the batch's pairs of one prompt with ``label_i > label_j`` (0 if none)."""
    if batch.labels is None:
        raise ValueError("rank loss needs labels")
    own = batch.logit_scale * (batch.image * batch.texts[batch.prompt_index]).sum(1)  # (B,)
    same = batch.prompt_index[:, None] == batch.prompt_index[None, :]
    better = same & (batch.labels[:, None] > batch.labels[None, :])  # [i, j]: i should score above j
    if not bool(better.any()):
        return own.sum() * 0.0
    return F.softplus(own[None, :] - own[:, None])[better].mean()


def judged_loss(batch: TargetBatch) -> torch.Tensor:
    """``distill`` plus the judge's ranking of seeds of one prompt."""
    return distill_loss(batch) + rank_loss(batch)


@dataclass(frozen=True)
class TrainTarget:
    """A registered training target.

    Args:
        name: registry name.
        loss: the loss on a :class:`TargetBatch`.
        needs_labels: train only on trajectories judged aligned (requires per-trajectory labels).
        uses_negatives: add hard-negative captions as extra text columns.
        needs_teacher: compute the frozen CLIP's embeddings of the final images.
        ranks_seeds: batches of same-prompt pairs, with every trajectory's label in the batch (requires labels).
    """

    name: str
    loss: Callable[[TargetBatch], torch.Tensor]
    needs_labels: bool = False
    uses_negatives: bool = False
    needs_teacher: bool = False
    ranks_seeds: bool = False

    @property
    def uses_labels(self) -> bool:
        """Whether the target reads per-trajectory labels (to filter, or to rank seeds)."""
        return self.needs_labels or self.ranks_seeds


TARGETS: Registry[TrainTarget] = Registry("training target")
TARGETS.register("prompt", TrainTarget("prompt", infonce_loss))
TARGETS.register("filtered", TrainTarget("filtered", infonce_loss, needs_labels=True, uses_negatives=True))
TARGETS.register("distill", TrainTarget("distill", distill_loss, uses_negatives=True, needs_teacher=True))
TARGETS.register("judged", TrainTarget("judged", judged_loss, uses_negatives=True, needs_teacher=True,
                                       ranks_seeds=True))  # fmt: skip
