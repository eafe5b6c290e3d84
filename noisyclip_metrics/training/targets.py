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
``listwise``     ``distill`` plus a listwise term from the judge: batches are made of groups of 4 seeds of one prompt,
                 read at one shared step (as Best-of-N compares them), and the softmax of their scores ``s`` is
                 trained towards ``softmax(label / 0.1)``: the judge's best seed, with near-ties sharing the mass
================ ===================================================================================================

The text tower and the logit scale stay frozen in every case.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from noisyclip_metrics.registry import Registry

__all__ = [
    "LISTWISE_TEMPERATURE",
    "TARGETS",
    "TargetBatch",
    "TrainTarget",
    "distill_loss",
    "infonce_loss",
    "judged_listwise_loss",
    "judged_loss",
    "listwise_loss",
    "rank_loss",
]

#: Temperature of the listwise target ``softmax(label / t)``: on TIFA scores (fractions of 3-6 questions) one question
#: more makes a seed e^1.7 to e^3.3 times as likely to be the best; 1/0 labels share the mass among the aligned seeds.
LISTWISE_TEMPERATURE = 0.1


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
    """Soft cross-entropy to the teacher's caption distribution on the final image plus ``1 - cos`` to its embedding."""
    if batch.teacher_image is None:
        raise ValueError("distill target needs teacher_image")
    teacher = F.softmax(batch.logit_scale * batch.teacher_image @ batch.texts.T, dim=1)
    student = F.log_softmax(batch.logit_scale * batch.image @ batch.texts.T, dim=1)
    soft_ce = -(teacher * student).sum(1).mean()
    embed = (1 - (batch.image * batch.teacher_image).sum(1)).mean()
    return soft_ce + embed


def _own_scores(batch: TargetBatch) -> torch.Tensor:
    """``(B,)`` logit-scaled cosine of every sample with its own prompt."""
    return batch.logit_scale * (batch.image * batch.texts[batch.prompt_index]).sum(1)


def rank_loss(batch: TargetBatch) -> torch.Tensor:
    """Mean ``softplus(s_j - s_i)`` over the batch's pairs of one prompt with ``label_i > label_j`` (0 if none)."""
    if batch.labels is None:
        raise ValueError("rank loss needs labels")
    own = _own_scores(batch)
    same = batch.prompt_index[:, None] == batch.prompt_index[None, :]
    better = same & (batch.labels[:, None] > batch.labels[None, :])  # [i, j]: i should score above j
    if not bool(better.any()):
        return own.sum() * 0.0
    return F.softplus(own[None, :] - own[:, None])[better].mean()


def judged_loss(batch: TargetBatch) -> torch.Tensor:
    """``distill`` plus the judge's ranking of seeds of one prompt."""
    return distill_loss(batch) + rank_loss(batch)


def listwise_loss(batch: TargetBatch, temperature: float = LISTWISE_TEMPERATURE) -> torch.Tensor:
    """Mean over the batch's prompts with >= 2 trajectories of the cross-entropy from ``softmax(labels / t)`` to the
    softmax of their scores (logit-scaled cosine with their prompt); 0 if no prompt has two.

    Examples:
        >>> import torch.nn.functional as F
        >>> img = F.normalize(torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]]), dim=1)
        >>> b = TargetBatch(image=img, texts=torch.tensor([[1.0, 0.0]]), prompt_index=torch.tensor([0, 0, 0]),
        ...                 num_prompts=1, logit_scale=1.0, labels=torch.tensor([1.0, 0.0, 0.0]))
        >>> round(float(listwise_loss(b)), 4)  # target ~ (1, 0, 0); scores (1, 0.6, 0)
        0.7121
    """
    if batch.labels is None:
        raise ValueError("listwise loss needs labels")
    own = _own_scores(batch)
    member = F.one_hot(batch.prompt_index, batch.num_prompts).T.bool()  # (U, B)
    member = member[member.sum(1) > 1]
    if member.shape[0] == 0:
        return own.sum() * 0.0
    scores = own[None, :].masked_fill(~member, float("-inf"))
    target = F.softmax((batch.labels.to(own.dtype) / temperature)[None, :].masked_fill(~member, float("-inf")), dim=1)
    log_p = F.log_softmax(scores, dim=1).masked_fill(~member, 0.0)
    return -(target * log_p).sum(1).mean()


def judged_listwise_loss(batch: TargetBatch) -> torch.Tensor:
    """``distill`` plus the judge's listwise choice of the best seed of each prompt."""
    return distill_loss(batch) + listwise_loss(batch)


@dataclass(frozen=True)
class TrainTarget:
    """A registered training target.

    Args:
        name: registry name.
        loss: the loss on a :class:`TargetBatch`.
        needs_labels: train only on trajectories judged aligned (requires per-trajectory labels).
        uses_negatives: add hard-negative captions as extra text columns.
        needs_teacher: compute the frozen CLIP's embeddings of the final images.
        group_size: trajectories drawn per prompt (1: independent draws; more: groups of distinct seeds of one
            prompt, with every trajectory's label in the batch, which requires labels and a batch size it divides).
        shared_step: a group is read at one step (drawn per group instead of per trajectory).
    """

    name: str
    loss: Callable[[TargetBatch], torch.Tensor]
    needs_labels: bool = False
    uses_negatives: bool = False
    needs_teacher: bool = False
    group_size: int = 1
    shared_step: bool = False

    @property
    def ranks_seeds(self) -> bool:
        """Whether batches are groups of seeds of one prompt, ranked by their labels."""
        return self.group_size > 1

    @property
    def uses_labels(self) -> bool:
        """Whether the target reads per-trajectory labels (to filter, or to rank seeds)."""
        return self.needs_labels or self.ranks_seeds


TARGETS: Registry[TrainTarget] = Registry("training target")
TARGETS.register("prompt", TrainTarget("prompt", infonce_loss))
TARGETS.register("filtered", TrainTarget("filtered", infonce_loss, needs_labels=True, uses_negatives=True))
TARGETS.register("distill", TrainTarget("distill", distill_loss, uses_negatives=True, needs_teacher=True))
TARGETS.register("judged", TrainTarget("judged", judged_loss, uses_negatives=True, needs_teacher=True, group_size=2))
TARGETS.register(
    "listwise",
    TrainTarget(
        "listwise", judged_listwise_loss, uses_negatives=True, needs_teacher=True, group_size=4, shared_step=True
    ),
)
