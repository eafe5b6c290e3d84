"""``NoisyCLIPScore``: prompt alignment of noisy diffusion latents as a torchmetrics ``Metric``."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torchmetrics import Metric

from noisyclip_metrics.scoring.factory import ModelLike, resolve_model
from noisyclip_metrics.scoring.functional import _noisyclip_score_compute, _noisyclip_score_update
from noisyclip_metrics.scoring.scorers import build_scorer

__all__ = ["NoisyCLIPScore"]


class NoisyCLIPScore(Metric):
    r"""NoisyCLIP score of latents against their prompts, accumulated over batches.

    .. math::
        \text{NoisyCLIPScore} = \max\Big(100 \cdot \frac{1}{N}\sum_{i=1}^{N} \cos\big(E_I(P(z_i)), E_T(c_i)\big), 0\Big)

    where :math:`P` is the latent preview map, :math:`E_I` the (noise-fine-tuned) image tower and :math:`E_T` the text
    tower. This follows torchmetrics' ``CLIPScore`` convention (``100 * max(mean cosine, 0)``); the per-sample raw
    cosines are available from :func:`~noisyclip_metrics.scoring.functional.noisyclip_score` with ``reduction="none"``.

    As input to ``update``:

    - ``latents`` (:class:`~torch.Tensor`): ``(B, C, h, w)`` latents; ``C`` must match the model's preview map;
    - ``prompts`` (``list[str]``): one prompt per latent;
    - ``timesteps`` (optional): one timestep per latent; with ``scheduler`` they rescale Euler-type latents.
    - ``step_index`` (optional, keyword): with ``scheduler``, the step of the latents in ``scheduler.timesteps``
      (one, or one per latent), for schedules in which a timestep occurs twice with different noise levels.

    As output of ``compute``: a scalar tensor in ``[0, 100]``, or ``NaN`` when no sample has been seen (``compute``
    before any ``update``, or after ``reset``). That is torchmetrics' convention: its ``CLIPScore`` returns NaN
    there too (0 / 0 samples), and every torchmetrics metric warns (``UserWarning``) that ``compute`` was called
    before ``update``. A mean over no samples is undefined, and NaN cannot be mistaken for a real score of 0.

    Args:
        model: a :class:`~noisyclip_metrics.scoring.model.NoisyCLIPModel`, a model id or checkpoint folder, or
            a factory.
        scorer: ``"noisyclip"`` or ``"clip"`` (the same tower used as a frozen preview baseline).
        scheduler: optional diffusers scheduler the latents come from.
        kwargs: torchmetrics ``Metric`` options (``dist_sync_on_step``, ``process_group``...).

    Examples:
        >>> import torch
        >>> from noisyclip_metrics.scoring.model import NoisyCLIPModel, TINY_TEST_CONFIG
        >>> model = NoisyCLIPModel.from_config(TINY_TEST_CONFIG, preview="sd1", seed=0)
        >>> metric = NoisyCLIPScore(model)
        >>> g = torch.Generator().manual_seed(0)
        >>> metric.update(torch.randn(2, 4, 16, 16, generator=g), ["a red cube", "a blue ball"])
        >>> metric.update(torch.randn(1, 4, 16, 16, generator=g), ["two green cones"])
        >>> float(metric.compute()) >= 0.0
        True
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False
    plot_lower_bound = 0.0
    plot_upper_bound = 100.0
    feature_network = "model"

    score_sum: torch.Tensor
    n_samples: torch.Tensor

    def __init__(self, model: ModelLike, scorer: str = "noisyclip", scheduler: Any = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.model = resolve_model(model)
        if isinstance(model, (str, Path)) and not Path(model).is_dir():
            self.model = copy.deepcopy(self.model)  # a registered id's model is cached: .to() must not move it
        self.scorer_name = scorer
        self._scorer = build_scorer(scorer, model=self.model)
        self.scheduler = scheduler
        self.add_state("score_sum", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("n_samples", torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(
        self,
        latents: torch.Tensor,
        prompts: Sequence[str],
        timesteps: torch.Tensor | Sequence[float] | None = None,
        *,
        step_index: int | torch.Tensor | Sequence[int] | None = None,
    ) -> None:
        """Score a batch and add it to the running sums.

        ``step_index`` (with ``scheduler``): the index into ``scheduler.timesteps`` of the latents' step, one or one
        per latent; needed only where a timestep occurs twice in the schedule with different noise levels (Karras
        sigmas at 50+ steps, KDPM2), which raises without it, as in
        :func:`~noisyclip_metrics.scoring.functional.noisyclip_score`.
        """
        prompts = [prompts] if isinstance(prompts, str) else prompts
        cos = _noisyclip_score_update(
            latents, prompts, self._scorer, timesteps, self.scheduler, self.model.latent_channels, step_index=step_index
        )
        self.score_sum += cos.sum().to(self.score_sum)
        self.n_samples += cos.numel()

    def compute(self) -> torch.Tensor:
        """``max(100 * mean cosine, 0)`` over everything seen since the last reset; NaN when nothing was seen."""
        if int(self.n_samples) == 0:  # explicit rather than 0 / 0: a mean of no samples is undefined
            return torch.tensor(float("nan"), device=self.score_sum.device)
        return _noisyclip_score_compute(self.score_sum, self.n_samples).float()

    def plot(self, val: torch.Tensor | Sequence[torch.Tensor] | None = None, ax: Any = None) -> Any:
        """Plot a single or multiple values (needs matplotlib), as torchmetrics metrics do.

        Examples:
            >>> import torch
            >>> from noisyclip_metrics.scoring.model import NoisyCLIPModel, TINY_TEST_CONFIG
            >>> metric = NoisyCLIPScore(NoisyCLIPModel.from_config(TINY_TEST_CONFIG, preview="sd1", seed=0))
            >>> fig, ax = metric.plot(torch.tensor(21.5))
        """
        return self._plot(val, ax)
