"""NoisyCLIP behind the t2v-metrics score interface, so harnesses written for t2v-metrics run it unchanged.

:class:`NoisyCLIPT2VScore` has the shape of ``t2v_metrics.score.Score`` (and subclasses it when t2v-metrics is
importable; it is never a dependency):

* ``score(images, texts) -> Tensor[M, N]``: the raw cosine of every image with every text (t2v-metrics convention);
* ``score.batch_forward(dataset, batch_size) -> Tensor[n_samples, n_images, n_texts]`` over items
  ``{"images": [...], "texts": [...]}`` (a list or a torch ``Dataset``), as GenAI-Bench's evaluation loop calls it;
* ``score.list_all_models()`` and ``score.model``: a ``ScoreModel``-like backend (:class:`NoisyCLIPScoreModel`,
  ``video_mode = "concat"``, ``load_model``, ``load_images``, ``forward(images, texts) -> Tensor[n]``).

What an image may be (one rule, applied item by item):

* a ``.safetensors`` file: a **latent**, scored on the noisy-latent path (``score_latents``). It holds a tensor
  ``latents`` of shape ``(C, h, w)`` or ``(1, C, h, w)``, or a trajectory ``(K, C, h, w)`` from which ``step=k``
  picks one, and optionally ``timestep`` / ``latent_scale`` (tensors: scalars, or ``(K,)`` for a trajectory; or
  the same keys as metadata). :func:`save_latent_file` writes one.
* any other file path (png, jpg...): an **image**, opened with PIL as RGB and scored on the frozen image path
  (``score_images``).
* a tensor ``(3, H, W)``: an image in ``[0, 1]`` (uint8 tensors are divided by 255); a tensor ``(C, h, w)`` with
  ``C != 3``: a latent, and ``C`` must equal ``model.latent_channels``. A ``(B, ., ., .)`` tensor is B inputs.

**C == 3 rule.** A 3-channel tensor is always read as an image unless ``tensor_kind="latent"`` is passed (to the
constructor or the call); a 3-channel tensor with values outside ``[0, 1]`` is rejected with a message that says
so. Latent *files* are never ambiguous. Videos (``.mp4`` ...) are rejected: NoisyCLIP scores images and latents.

**Timesteps.** NoisyCLIP does not condition on the timestep: a latent is scored from its preview. The timestep
matters only for Euler-type (sigma-space) latents, which must be brought to the variance-preserving form first:
pass ``latent_scale`` directly, or ``timestep`` together with the pipeline's ``scheduler`` (the factor is
:func:`noisyclip_metrics.scoring.x0.model_input_scale`). Where a timestep occurs twice in the schedule with different
noise
levels (Karras sigmas at 50+ steps, KDPM2), ``step_index`` (the index into ``scheduler.timesteps``; by default the
latent's ``step``) says which step. ``step``, ``timestep`` and ``latent_scale`` given to a call override values stored
in a file, which override the constructor's defaults.

Examples:
    >>> import torch
    >>> from noisyclip_metrics.scoring.model import NoisyCLIPModel, TINY_TEST_CONFIG
    >>> clip = NoisyCLIPModel.from_config(TINY_TEST_CONFIG, preview="sd1", seed=0)
    >>> score = NoisyCLIPT2VScore(model=clip, device="cpu")
    >>> images = [torch.rand(3, 32, 32), torch.randn(4, 16, 16)]          # an image and a latent
    >>> score(images=images, texts=["a red cube", "two blue spheres", "a dog"]).shape
    torch.Size([2, 3])
    >>> data = [{"images": [torch.rand(3, 32, 32)], "texts": ["a red cube"]} for _ in range(5)]
    >>> score.batch_forward(data, batch_size=2).shape
    torch.Size([5, 1, 1])
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from noisyclip_metrics.errors import DataFileError, InputError
from noisyclip_metrics.registry import Registry
from noisyclip_metrics.scoring.model import NoisyCLIPModel, check_prompts

__all__ = [
    "HAS_T2V_METRICS",
    "INPUT_LOADERS",
    "NoisyCLIPScoreModel",
    "NoisyCLIPT2VScore",
    "T2VInput",
    "list_all_models",
    "save_latent_file",
]

try:  # the real base class when t2v-metrics is installed (optional; never a dependency)
    from t2v_metrics.score import Score as _ScoreBase

    HAS_T2V_METRICS = True
except Exception:
    HAS_T2V_METRICS = False

    class _ScoreBase(nn.Module):  # type: ignore[no-redef]
        """Local stand-in for ``t2v_metrics.score.Score`` (an ``nn.Module`` with the same public methods)."""

        def prepare_scoremodel(self, model: Any, device: str, cache_dir: Any, **kwargs: Any) -> Any:
            raise NotImplementedError

        def list_all_models(self) -> list[str]:
            raise NotImplementedError


VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv")
TENSOR_KINDS = ("auto", "image", "latent")
_CALL_KEYS = ("step", "step_index", "timestep", "latent_scale", "tensor_kind")


@dataclass(frozen=True)
class T2VInput:
    """One loaded input: ``kind`` ``"image"`` (``(3, H, W)`` in [0, 1]) or ``"latent"`` (``(C, h, w)``).

    ``latent_scale`` multiplies a latent before its preview; ``step`` / ``timestep`` are recorded for bookkeeping.
    """

    kind: str
    tensor: torch.Tensor
    source: str
    latent_scale: float | None = None
    timestep: float | None = None
    step: int | None = None


@dataclass(frozen=True)
class _Options:
    """Values given to a call; ``get`` falls back to a value stored in the file, then to the constructor's."""

    step: int | None = None
    step_index: int | None = None
    timestep: float | None = None
    latent_scale: float | None = None
    tensor_kind: str | None = None
    fallback: _Options | None = None

    def get(self, name: str, stored: Any = None) -> Any:
        for value in (getattr(self, name), stored, self.fallback and getattr(self.fallback, name)):
            if value is not None:
                return value
        return None


def _scalar(value: Any, where: str, name: str, index: int | None = None) -> float | None:
    if value is None:
        return None
    try:
        t = torch.as_tensor(float(value) if isinstance(value, str) else value, dtype=torch.float64).flatten()
    except (TypeError, ValueError):
        raise DataFileError(f"{where}: {name} must be a number, got {value!r}") from None
    if index is not None and t.numel() > 1:
        if not 0 <= index < t.numel():
            raise InputError(f"{where}: {name} has {t.numel()} values, no entry for step {index}")
        t = t[index : index + 1]
    if t.numel() != 1 or not math.isfinite(float(t[0])):
        raise InputError(f"{where}: {name} must be one finite number, got shape {tuple(t.shape)}")
    return float(t[0])


def _load_latent_file(path: Path, where: str, opts: _Options) -> T2VInput:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            tensors = {k: f.get_tensor(k) for k in f.keys()}
            meta = f.metadata() or {}
    except (SafetensorError, OSError) as err:
        raise DataFileError(f"{where}: {path}: not a readable safetensors file ({err})") from None
    if "latents" not in tensors:
        raise DataFileError(f"{where}: {path}: no tensor named 'latents' (found: {', '.join(tensors) or 'none'})")
    z = tensors["latents"]
    try:
        step = opts.get("step", int(meta["step"]) if "step" in meta else None)
    except ValueError:
        raise DataFileError(f"{where}: {path}: metadata 'step' must be an int, got {meta['step']!r}") from None
    index = None
    if z.ndim == 4 and z.shape[0] > 1:
        if step is None:
            raise InputError(f"{where}: {path} holds a trajectory of {z.shape[0]} latents; pass step=k to pick one")
        if not 0 <= step < z.shape[0]:
            raise InputError(f"{where}: step {step} outside 0..{z.shape[0] - 1} of the trajectory in {path}")
        z, index = z[step], step
    elif z.ndim == 4:
        z = z[0]
    if z.ndim != 3:
        raise DataFileError(
            f"{where}: {path}: 'latents' must be (C, h, w), (1, C, h, w) or (K, C, h, w), got shape {tuple(z.shape)}"
        )
    timestep = _scalar(
        tensors.get("timestep", tensors.get("timesteps", meta.get("timestep"))), where, "timestep", index
    )
    scale = _scalar(tensors.get("latent_scale", meta.get("latent_scale")), where, "latent_scale", index)
    return T2VInput(
        "latent", z.float(), str(path), opts.get("latent_scale", scale), opts.get("timestep", timestep), step
    )


def _load_image_file(path: Path, where: str, opts: _Options) -> T2VInput:
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            array = np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0
    except (UnidentifiedImageError, OSError) as err:
        raise DataFileError(f"{where}: {path}: not a readable image ({err})") from None
    return T2VInput("image", torch.from_numpy(array).permute(2, 0, 1).contiguous(), str(path))


INPUT_LOADERS: Registry[Callable[[Path, str, _Options], T2VInput]] = Registry("t2v input file type")
"""Loaders by file suffix; files with other suffixes are opened as images with PIL."""
INPUT_LOADERS.register(".safetensors", _load_latent_file)


def _load_tensor(x: torch.Tensor, where: str, opts: _Options, channels: int) -> T2VInput:
    if x.ndim == 4 and x.shape[0] == 1:
        x = x[0]
    if x.ndim != 3:
        raise InputError(
            f"{where}: expected a (3, H, W) image or a (C, h, w) latent tensor, got shape {tuple(x.shape)}"
        )
    kind = opts.get("tensor_kind") or "auto"
    kind = kind if kind != "auto" else ("image" if x.shape[0] == 3 else "latent")
    if kind == "image":
        if x.shape[0] != 3:
            raise InputError(f"{where}: an image tensor must have 3 channels, got {x.shape[0]}")
        if not x.is_floating_point():
            x = x.float() / 255.0
        elif x.numel() and (float(x.min()) < -1e-4 or float(x.max()) > 1 + 1e-4):
            raise InputError(
                f"{where}: a 3-channel tensor is read as an image in [0, 1], found values in [{float(x.min()):.3g}, "
                f"{float(x.max()):.3g}]; pass tensor_kind='latent' for 3-channel latents"
            )
        return T2VInput("image", x.float(), where)
    if x.shape[0] != channels:
        raise InputError(
            f"{where}: a tensor with {x.shape[0]} channels is neither an image (3 channels) nor a latent of this "
            f"model ({channels} channels)"
        )
    if not x.is_floating_point():
        raise InputError(f"{where}: latents must be floats, got dtype {x.dtype}")
    return T2VInput("latent", x.float(), where, opts.get("latent_scale"), opts.get("timestep"), opts.get("step"))


def list_all_models() -> list[str]:
    """Registered NoisyCLIP model ids (the plugins', e.g. the world's CLIP models); any checkpoint folder works too.

    Examples:
        >>> list_all_models()
        ['world:clip', 'world:noisyclip', 'world:noisyclip-x0']
    """
    from noisyclip_metrics.plugins import registered_ids

    return registered_ids("model")


class NoisyCLIPScoreModel:
    """The t2v-metrics ``ScoreModel``-like backend: loads inputs and scores aligned (image, text) pairs.

    Args:
        model: a :class:`NoisyCLIPModel`, a model id (``world:noisyclip``) or a checkpoint folder. A model
            fine-tuned on x̂0 previews (``world:noisyclip-x0``, config ``reads="x0"``) expects latent inputs to be x̂0
            estimates, not the noisy latents.
        device: where the model runs (a passed model is moved there).
        step: default step index, for latent trajectories (picks ``latents[step]``) and bookkeeping.
        timestep: default timestep of latents (used with ``scheduler`` for the input scale).
        step_index: default index into ``scheduler.timesteps`` of the latents' step, for the input scale where a
            timestep occurs twice in the schedule with different noise levels (Karras sigmas at 50+ steps, KDPM2;
            see :func:`noisyclip_metrics.scoring.x0.noise_level`). When not given, a latent's ``step`` is used: a
            trajectory from :func:`~noisyclip_metrics.diffusion.trajectory.capture_trajectories` holds the
            step-``k`` latent at ``k``.
        latent_scale: default factor applied to latents before the preview.
        scheduler: the pipeline's scheduler, so ``timestep`` gives the Euler-type input scale.
        tensor_kind: how tensors are read: ``"auto"`` (3 channels = image), ``"image"`` or ``"latent"``.
    """

    video_mode = "concat"

    def __init__(
        self,
        model: Any,
        device: str | torch.device = "cpu",
        cache_dir: Any = None,
        *,
        step: int | None = None,
        timestep: float | None = None,
        latent_scale: float | None = None,
        scheduler: Any = None,
        tensor_kind: str = "auto",
        step_index: int | None = None,
    ) -> None:
        self.model_name = model if isinstance(model, (str, Path)) else type(model).__name__
        self.device = torch.device(device)
        self.cache_dir = cache_dir
        self.scheduler = scheduler
        self._source = model
        self.defaults = self._options(
            None,
            step=step,
            step_index=step_index,
            timestep=timestep,
            latent_scale=latent_scale,
            tensor_kind=tensor_kind,
        )
        self.model: NoisyCLIPModel
        self.load_model()

    def load_model(self) -> None:
        """Resolve the model (id, folder or object), move it to the device and set eval mode."""
        from noisyclip_metrics.scoring.factory import resolve_model

        self.model = resolve_model(self._source).to(self.device).eval()

    # ---------------------------------------------------------------------------------------------------- inputs
    @staticmethod
    def _options(fallback: _Options | None, **kwargs: Any) -> _Options:
        unknown = sorted(set(kwargs) - set(_CALL_KEYS))
        if unknown:
            raise InputError(f"unknown keyword {unknown[0]!r}; NoisyCLIP accepts {', '.join(_CALL_KEYS)}")
        kind = kwargs.get("tensor_kind")
        if kind is not None and kind not in TENSOR_KINDS:
            raise InputError(f"tensor_kind: expected one of {', '.join(TENSOR_KINDS)}, got {kind!r}")
        for name in ("step", "step_index"):
            value = kwargs.get(name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                raise InputError(f"{name}: expected an int step index, got {value!r}")
        return _Options(**kwargs, fallback=fallback)

    def load_inputs(self, images: Any, **kwargs: Any) -> list[T2VInput]:
        """Load paths and tensors into :class:`T2VInput` items (see the module docs for the rules)."""
        opts = self._options(self.defaults, **kwargs)
        if isinstance(images, (str, Path)) or (isinstance(images, torch.Tensor) and images.ndim == 3):
            images = [images]
        if isinstance(images, torch.Tensor) and images.ndim == 4:
            images = list(images)
        if not isinstance(images, Sequence) or len(images) == 0:
            raise InputError(f"images: expected a non-empty list of paths or tensors, got {type(images).__name__}")
        return [self._load_one(item, f"images[{i}]", opts) for i, item in enumerate(images)]

    def _load_one(self, item: Any, where: str, opts: _Options) -> T2VInput:
        if isinstance(item, T2VInput):
            return item
        if isinstance(item, torch.Tensor):
            loaded = _load_tensor(item, where, opts, self.model.latent_channels)
        elif isinstance(item, (str, Path)):
            path = Path(item)
            suffix = path.suffix.lower()
            if suffix in VIDEO_SUFFIXES:
                raise InputError(f"{where}: {path} is a video; NoisyCLIP scores images and latents")
            if not path.is_file():
                raise DataFileError(f"{where}: {path}: file not found")
            loader = INPUT_LOADERS.get(suffix) if suffix in INPUT_LOADERS else _load_image_file
            loaded = loader(path, where, opts)
        else:
            raise InputError(f"{where}: expected a file path or a tensor, got {type(item).__name__}")
        if loaded.kind == "latent":
            if loaded.tensor.shape[0] != self.model.latent_channels:
                raise InputError(
                    f"{where}: latents with {loaded.tensor.shape[0]} channels, this model's preview map "
                    f"reads {self.model.latent_channels}"
                )
            if loaded.latent_scale is None and loaded.timestep is not None and self.scheduler is not None:
                from noisyclip_metrics.scoring.x0 import model_input_scale

                index = opts.get("step_index")  # given to the call or the constructor, else the latent's step
                index = loaded.step if index is None else index
                scale = float(
                    model_input_scale(self.scheduler, torch.tensor([loaded.timestep]), 1, step_index=index)[0]
                )
                loaded = replace(loaded, latent_scale=scale)
        return loaded

    def load_images(self, images: Any, **kwargs: Any) -> torch.Tensor:
        """t2v-metrics ``load_images``: one stacked tensor on the device, for inputs of one kind.

        Images of different sizes are resized to the tower's input size; latents are multiplied by their
        ``latent_scale``. Mixed images and latents raise :class:`InputError` (use :meth:`embed_images`).
        """
        import torch.nn.functional as F

        items = self.load_inputs(images, **kwargs)
        kinds = {x.kind for x in items}
        if len(kinds) > 1:
            raise InputError("images: load_images needs inputs of one kind, got both images and latents")
        tensors = [x.tensor * (x.latent_scale if x.latent_scale is not None else 1.0) for x in items]
        if len({tuple(t.shape) for t in tensors}) > 1:
            if kinds == {"latent"}:
                raise InputError(f"images: latents of different shapes {sorted({tuple(t.shape) for t in tensors})}")
            size = self.model.config.image_size
            tensors = [
                F.interpolate(t[None], size=(size, size), mode="bilinear", align_corners=False, antialias=True)[0]
                for t in tensors
            ]
        return torch.stack(tensors).to(self.device)

    # --------------------------------------------------------------------------------------------------- scoring
    @torch.no_grad()
    def embed_images(self, images: Any, **kwargs: Any) -> torch.Tensor:
        """L2-normalised embeddings ``(B, D)``: images through ``encode_images``, latents through ``encode_latents``.

        Inputs are batched by kind, shape and scale, so each is encoded exactly as
        :meth:`NoisyCLIPModel.score_images` / :meth:`NoisyCLIPModel.score_latents` would.
        """
        items = self.load_inputs(images, **kwargs)  # already loaded T2VInput items pass through
        groups: dict[tuple[Any, ...], list[int]] = {}
        for i, x in enumerate(items):
            groups.setdefault((x.kind, tuple(x.tensor.shape), x.latent_scale), []).append(i)
        out: torch.Tensor | None = None
        for (kind, _, scale), index in groups.items():
            batch = torch.stack([items[i].tensor for i in index]).to(self.device)
            if kind == "image":
                emb = self.model.encode_images(batch)
            else:
                emb = self.model.encode_latents(batch * scale if scale is not None else batch)
            if out is None:
                out = emb.new_empty((len(items), emb.shape[1]))
            out[torch.tensor(index, device=out.device)] = emb
        assert out is not None
        return out

    @torch.no_grad()
    def embed_texts(self, texts: Any) -> torch.Tensor:
        """L2-normalised text embeddings ``(N, D)``."""
        return self.model.encode_text(check_prompts(texts, name="texts"))

    def forward(self, images: Any, texts: Any, **kwargs: Any) -> torch.Tensor:
        """t2v-metrics ``ScoreModel.forward``: one raw cosine per aligned pair ``(images[k], texts[k])``; ``(n,)``."""
        texts = check_prompts(texts, name="texts")
        items = self.load_inputs(images, **kwargs)
        if len(items) != len(texts):
            raise InputError(f"images and texts must have the same length, got {len(items)} and {len(texts)}")
        return (self.embed_images(items) * self.embed_texts(texts)).sum(-1).float().cpu()

    __call__ = forward


def _keep_lists(batch: list[Any]) -> list[Any]:
    return batch


class NoisyCLIPT2VScore(_ScoreBase):
    """NoisyCLIP with the t2v-metrics ``Score`` API (a subclass of it when t2v-metrics is importable).

    Args:
        model: a :class:`NoisyCLIPModel`, a registered id (:func:`list_all_models`, e.g. ``"world:noisyclip"``) or a
            checkpoint folder. Unlike t2v-metrics' built-in scores, any folder is accepted; and there is no default
            model (it was the 32-pixel world's, which no user of real images wants by accident).
        device: ``"cpu"``, ``"cuda"``...
        cache_dir: accepted for signature compatibility (nothing is downloaded or cached).
        step: default of the inputs, as for :class:`NoisyCLIPScoreModel`.
        timestep: default of the inputs, as for :class:`NoisyCLIPScoreModel`.
        latent_scale: default of the inputs, as for :class:`NoisyCLIPScoreModel`.
        scheduler: default of the inputs, as for :class:`NoisyCLIPScoreModel`.
        tensor_kind: default of the inputs, as for :class:`NoisyCLIPScoreModel`.
        step_index: default of the inputs, as for :class:`NoisyCLIPScoreModel`.

    Scores are raw cosines in ``[-1, 1]`` on the CPU (float32), as t2v-metrics' CLIPScore returns them.
    """

    def __init__(
        self,
        model: Any,
        device: str | torch.device = "cpu",
        cache_dir: Any = None,
        *,
        step: int | None = None,
        timestep: float | None = None,
        latent_scale: float | None = None,
        scheduler: Any = None,
        tensor_kind: str = "auto",
        step_index: int | None = None,
    ) -> None:
        # t2v-metrics' Score.__init__ asserts the name is in list_all_models(); folders and objects are allowed
        # here, so the base initialiser is bypassed and its one other effect (prepare_scoremodel) done directly.
        nn.Module.__init__(self)
        self.device = str(device)
        self.model = self.prepare_scoremodel(
            model,
            device,
            cache_dir,
            step=step,
            timestep=timestep,
            latent_scale=latent_scale,
            scheduler=scheduler,
            tensor_kind=tensor_kind,
            step_index=step_index,
        )

    def prepare_scoremodel(
        self, model: Any, device: str | torch.device = "cpu", cache_dir: Any = None, **kwargs: Any
    ) -> NoisyCLIPScoreModel:
        """The backend (t2v-metrics hook)."""
        return NoisyCLIPScoreModel(model, device, cache_dir, **kwargs)

    def list_all_models(self) -> list[str]:  # type: ignore[override]
        """Registered model ids (t2v-metrics hook); see :func:`list_all_models`."""
        return list_all_models()

    @staticmethod
    def _as_list(value: Any) -> Any:
        return [value] if isinstance(value, (str, Path)) else value

    def forward(self, images: Any, texts: Any, num_frames: int | None = None, **kwargs: Any) -> torch.Tensor:
        """Scores of every image with every text, ``(M, N)`` raw cosines (``num_frames`` is accepted and unused).

        Raises:
            InputError: empty lists, unknown keywords, wrong channel counts, videos.
            DataFileError: missing or unreadable files.
        """
        backend: NoisyCLIPScoreModel = self.model
        items = backend.load_inputs(images, **kwargs)
        text_emb = backend.embed_texts(texts)
        return (backend.embed_images(items) @ text_emb.T).float().cpu()

    def batch_forward(
        self, dataset: Any, batch_size: int = 16, num_frames: int | None = None, **kwargs: Any
    ) -> torch.Tensor:
        """Score a dataset of ``{"images": [...], "texts": [...]}`` items: ``(n_samples, n_images, n_texts)``.

        ``dataset`` is a list or a torch ``Dataset``; it is read in order by a ``DataLoader`` (``shuffle=False``)
        whose collate keeps the items as they are. Every item must have as many images and texts as the first.
        """
        from torch.utils.data import DataLoader

        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise InputError(f"batch_size: expected an int >= 1, got {batch_size!r}")
        backend: NoisyCLIPScoreModel = self.model
        shape: tuple[int, int] | None = None
        blocks: list[torch.Tensor] = []
        index = 0
        for batch in DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=_keep_lists):
            images: list[Any] = []
            texts: list[str] = []
            for item in batch:
                if not isinstance(item, dict) or "images" not in item or "texts" not in item:
                    raise InputError(f"dataset item {index}: expected a dict with 'images' and 'texts' lists")
                its, txt = self._as_list(item["images"]), self._as_list(item["texts"])
                if shape is None:
                    shape = (len(its), len(txt))
                    if 0 in shape:
                        raise InputError(f"dataset item {index}: expected at least one image and one text")
                if (len(its), len(txt)) != shape:
                    raise InputError(
                        f"dataset item {index}: {len(its)} images and {len(txt)} texts; every item "
                        f"must have as many as item 0 ({shape[0]} and {shape[1]})"
                    )
                images.extend(its)
                texts.extend(check_prompts(txt, name=f"dataset item {index}: texts"))
                index += 1
            img = backend.embed_images(backend.load_inputs(images, **kwargs)).view(len(batch), shape[0], -1)
            txt_emb = backend.embed_texts(texts).view(len(batch), shape[1], -1)
            blocks.append(torch.bmm(img, txt_emb.transpose(1, 2)).float().cpu())
        if not blocks:
            raise InputError("dataset: expected at least one item, got none")
        return torch.cat(blocks)


def save_latent_file(
    path: str | Path, latents: torch.Tensor, *, timestep: Any = None, latent_scale: Any = None, step: int | None = None
) -> Path:
    """Write a latent (``(C, h, w)``) or a trajectory (``(K, C, h, w)``) as a ``.safetensors`` input file.

    Examples:
        >>> import tempfile, torch
        >>> path = save_latent_file(tempfile.mkdtemp() + "/z.safetensors", torch.zeros(4, 8, 8), timestep=500)
        >>> path.suffix
        '.safetensors'
    """
    from noisyclip_metrics.io.files import save_safetensors

    path = Path(path)
    if path.suffix != ".safetensors":
        raise InputError(f"path: expected a .safetensors file name, got {path.name!r}")
    tensors = {"latents": latents.detach().cpu().contiguous()}
    for name, value in (("timestep", timestep), ("latent_scale", latent_scale)):
        if value is not None:
            tensors[name] = torch.as_tensor(value, dtype=torch.float32).detach().cpu().reshape(-1)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_safetensors(tensors, path, metadata={"step": str(step)} if step is not None else None)
    return path
