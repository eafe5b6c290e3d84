"""The NoisyCLIP dual encoder: an open_clip CLIP whose image tower reads latent previews.

:class:`NoisyCLIPModel` bundles an open_clip ``CLIP`` (any built-in architecture or a custom JSON config), its
tokenizer and a :class:`~noisyclip_metrics.scoring.preview.PreviewMap`. Latents become previews, previews are resized
to the
tower's input size and normalised, and the score is the cosine of the L2-normalised image and text embeddings
(the t2v-metrics convention: raw cosine, not x100).

Checkpoints are folders with ``config.json`` and ``model.safetensors`` (the preview map included); see
:mod:`noisyclip_metrics.scoring.checkpoint`.

Examples:
    >>> import torch
    >>> from noisyclip_metrics.scoring.model import NoisyCLIPModel
    >>> model = NoisyCLIPModel.from_config(TINY_TEST_CONFIG, preview="sd1", seed=0)
    >>> z = torch.randn(2, 4, 16, 16)
    >>> model.score_latents(z, ["a red cube", "two blue spheres"]).shape
    torch.Size([2])
"""

from __future__ import annotations

import copy
import dataclasses
import math
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors import safe_open
from torch import nn

from noisyclip_metrics.errors import CheckpointError, InputError, UnknownNameError
from noisyclip_metrics.registry import Registry, did_you_mean
from noisyclip_metrics.scoring.checkpoint import (
    CONFIG_NAME,
    FORMAT,
    FORMAT_VERSION,
    NOISE_PREFIX,
    PICKLE_SUFFIXES,
    WEIGHTS_NAME,
    _load_text_tower,
    _read_config,
    load_state_dict_file,
    save_pretrained,
)
from noisyclip_metrics.scoring.conditioning import NoiseEmbedding, PatchShift, check_noise_std
from noisyclip_metrics.scoring.preview import PreviewMap, check_latents, get_preview_map

__all__ = [
    "TINY_TEST_CONFIG",
    "TOKENIZERS",
    "NoisyCLIPConfig",
    "NoisyCLIPModel",
    "check_prompts",
    "load_pretrained",
    "resolve_model_cfg",
]

#: What a NoisyCLIP image tower can be fine-tuned to read (:attr:`NoisyCLIPConfig.reads`).
READS = ("latents", "x0")
OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)

#: A small open_clip config (about 3.5 M parameters, mostly the 49,408-token embedding) used by doctests and tests.
TINY_TEST_CONFIG: dict[str, Any] = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 8, "head_width": 32},
    "text_cfg": {"context_length": 32, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}


def check_prompts(prompts: object, batch: int | None = None, name: str = "prompts") -> list[str]:
    """Validate a list of prompt strings (non-empty list, every item a string, length ``batch`` if given)."""
    if isinstance(prompts, str):
        prompts = [prompts]
    if not isinstance(prompts, Sequence) or isinstance(prompts, bytes):
        raise InputError(f"{name}: expected a list of strings, got {type(prompts).__name__}")
    if len(prompts) == 0:
        raise InputError(f"{name}: expected at least one prompt, got an empty list")
    bad = [i for i, p in enumerate(prompts) if not isinstance(p, str)]
    if bad:
        raise InputError(f"{name}: expected strings, got {type(prompts[bad[0]]).__name__} at index {bad[0]}")
    if batch is not None and len(prompts) != batch:
        raise InputError(f"{name}: expected {batch} prompts to match the batch size, got {len(prompts)}")
    return list(prompts)


@dataclass(frozen=True)
class NoisyCLIPConfig:
    """Everything needed to rebuild a :class:`NoisyCLIPModel` except its weights.

    Args:
        model_cfg: open_clip model config (``embed_dim``, ``vision_cfg``, ``text_cfg``, optional ``quick_gelu``...).
        arch: the open_clip architecture name the config came from, if any (informational; selects its tokenizer).
        tokenizer: tokenizer spec, ``{"type": "open_clip"}`` (open_clip's bundled BPE) or
            ``{"type": "bpe", "subdir": "tokenizer"}`` (``vocab.json``/``merges.txt`` saved with the checkpoint).
        image_mean: per-channel mean used to normalise the resized preview.
        image_std: per-channel std used to normalise the resized preview.
        interpolation: how previews are resized to the tower's input size (``"bilinear"`` or ``"bicubic"``).
        preview_name: name of the preview map (the weights live in ``model.safetensors``).
        source: what the checkpoint was made from (``"open_clip"``, ``"transformers"``, ``"world"``...).
        reads: what the image tower was fine-tuned to read: ``"latents"`` (previews of the noisy latents, the
            paper's NoisyCLIP; also any frozen CLIP) or ``"x0"`` (previews of the scheduler's x̂0 estimate). The
            ``noisyclip`` and ``noisyclip-x0`` scorers refuse a model fine-tuned for the other one.
        trained_on: the seeds and prompts of the trajectories the image tower was fine-tuned on
            (:func:`noisyclip_metrics.provenance.describe_training_data`; set by the trainer), or ``None`` when
            unknown (frozen CLIPs, external checkpoints). Evaluation warns when a run shares them.
        noise_conditioned: the image tower also reads the latent's noise level
            (:mod:`noisyclip_metrics.scoring.conditioning`): every image it encodes comes with a ``noise_std``
            (0 for a final image). Needs an open_clip image tower (ViT or ModifiedResNet).
    """

    model_cfg: dict[str, Any]
    arch: str | None = None
    tokenizer: dict[str, Any] = field(default_factory=lambda: {"type": "open_clip"})
    image_mean: tuple[float, float, float] = OPENAI_MEAN
    image_std: tuple[float, float, float] = OPENAI_STD
    interpolation: str = "bilinear"
    preview_name: str = "custom"
    source: str = "open_clip"
    reads: str = "latents"
    trained_on: dict[str, Any] | None = None
    noise_conditioned: bool = False

    def __post_init__(self) -> None:
        if self.reads not in READS:
            raise InputError(f"reads: expected one of {list(READS)}, got {self.reads!r}")
        if self.trained_on is not None and not (
            isinstance(self.trained_on, dict) and {"seeds", "prompts"} <= set(self.trained_on)
        ):
            raise InputError(
                f"trained_on: expected null or a record with 'seeds' and 'prompts', got {self.trained_on!r}"
            )

    def to_json(self) -> dict[str, Any]:
        """A JSON-serialisable dict (``config.json`` of a checkpoint)."""
        data = asdict(self)
        data["image_mean"], data["image_std"] = list(self.image_mean), list(self.image_std)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> NoisyCLIPConfig:
        """Inverse of :meth:`to_json`.

        Raises:
            InputError: ``data`` is not a JSON object, has unknown keys, lacks ``model_cfg``, or has a field of the
                wrong type or value; the message names the field (``config.model_cfg.vision_cfg.image_size: ...``).
        """
        if not isinstance(data, dict):
            raise InputError(f"config: expected a JSON object (the model config), found {_json_type(data)}")
        known = set(cls.__dataclass_fields__)
        unknown = sorted(map(str, set(data) - known))
        if unknown:
            raise InputError(f"config: unknown keys {unknown[:8]}; expected a subset of {sorted(known)}")
        data = dict(data)
        if "model_cfg" not in data:
            raise InputError("config.model_cfg: missing; expected an object with embed_dim, vision_cfg and text_cfg")
        check_model_cfg(data["model_cfg"], "config.model_cfg")
        for key in ("arch", "interpolation", "preview_name", "source", "reads"):
            if key in data and not (isinstance(data[key], str) or (key == "arch" and data[key] is None)):
                raise InputError(f"config.{key}: expected a string, found {_json_type(data[key])}")
        if data.get("interpolation", "bilinear") not in INTERPOLATIONS:
            raise InputError(
                f"config.interpolation: expected one of {list(INTERPOLATIONS)}, got {str(data['interpolation'])[:40]!r}"
            )
        tokenizer = data.get("tokenizer", {"type": "open_clip"})
        if not isinstance(tokenizer, dict) or not isinstance(tokenizer.get("type"), str):
            raise InputError(
                f"config.tokenizer: expected an object with a string 'type', found {_json_type(tokenizer)}"
            )
        if "subdir" in tokenizer:
            from noisyclip_metrics.io.safepath import check_name

            check_name(tokenizer["subdir"], "config.tokenizer.subdir")  # a folder inside the checkpoint, no more
        if not isinstance(data.get("noise_conditioned", False), bool):
            raise InputError(
                f"config.noise_conditioned: expected true or false, found {_json_type(data['noise_conditioned'])}"
            )
        for key in ("image_mean", "image_std"):
            if key in data:
                values = data[key]
                if not (isinstance(values, (list, tuple)) and len(values) == 3 and all(map(_is_number, values))):
                    raise InputError(f"config.{key}: expected a list of 3 finite numbers, found {_json_type(values)}")
                data[key] = tuple(float(v) for v in values)
                if key == "image_std" and min(data[key]) <= 0:
                    raise InputError(f"config.image_std: expected positive numbers, got {list(data[key])}")
        return cls(**data)

    @property
    def image_size(self) -> int:
        """Input resolution of the image tower."""
        size = self.model_cfg["vision_cfg"].get("image_size", 224)
        return int(size[0] if isinstance(size, (list, tuple)) else size)

    @property
    def context_length(self) -> int:
        """Token context length of the text tower."""
        return int(self.model_cfg["text_cfg"].get("context_length", 77))


#: How previews may be resized to the tower's input (``F.interpolate`` modes that take ``align_corners``).
INTERPOLATIONS = ("bilinear", "bicubic")


def _json_type(value: Any) -> str:
    from noisyclip_metrics.io.jsonfile import type_name

    return type_name(value)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def check_model_cfg(cfg: Any, where: str = "model_cfg") -> dict[str, Any]:
    """Check an open_clip model config's shape before anything is built from it; returns it.

    ``embed_dim`` a positive int; ``vision_cfg`` and ``text_cfg`` objects; ``vision_cfg.image_size`` a positive int
    or a pair of them and ``text_cfg.context_length`` a positive int (both read here). Other fields are open_clip's:
    a value it cannot build from fails when the model is built (a checkpoint's loader reports that as an error of
    its ``config.json``).

    Raises:
        InputError: naming the field (``<where>.vision_cfg.image_size: expected ...``).
    """
    if not isinstance(cfg, dict):
        raise InputError(
            f"{where}: expected an object with embed_dim, vision_cfg and text_cfg, found {_json_type(cfg)}"
        )
    missing = [k for k in ("embed_dim", "vision_cfg", "text_cfg") if k not in cfg]
    if missing:
        raise InputError(f"{where}: missing {missing}; expected keys embed_dim, vision_cfg, text_cfg")
    if not _positive_int(cfg["embed_dim"]):
        raise InputError(
            f"{where}.embed_dim: expected a positive integer, found {_json_type(cfg['embed_dim'])} "
            f"{str(cfg['embed_dim'])[:20]}"
        )
    for tower in ("vision_cfg", "text_cfg"):
        if not isinstance(cfg[tower], dict):
            raise InputError(f"{where}.{tower}: expected an object, found {_json_type(cfg[tower])}")
    size = cfg["vision_cfg"].get("image_size", 224)
    pair = isinstance(size, (list, tuple)) and len(size) == 2 and all(map(_positive_int, size))
    if not (_positive_int(size) or pair):
        raise InputError(
            f"{where}.vision_cfg.image_size: expected a positive integer or a pair of them, found "
            f"{_json_type(size)} {str(size)[:20]!r}"
        )
    length = cfg["text_cfg"].get("context_length", 77)
    if not _positive_int(length):
        raise InputError(
            f"{where}.text_cfg.context_length: expected a positive integer, found {_json_type(length)} "
            f"{str(length)[:20]!r}"
        )
    return cfg


def resolve_model_cfg(arch_or_cfg: str | Path | dict[str, Any]) -> tuple[dict[str, Any], str | None]:
    """Turn an open_clip architecture name, a JSON config file or a config dict into ``(model_cfg, arch)``.

    Raises:
        UnknownNameError: for an architecture open_clip does not know (with a did-you-mean).
        InputError: for a config without ``embed_dim``/``vision_cfg``/``text_cfg``.
    """
    import open_clip

    arch: str | None = None
    if isinstance(arch_or_cfg, dict):
        cfg = copy.deepcopy(arch_or_cfg)
    elif str(arch_or_cfg).endswith(".json") or Path(str(arch_or_cfg)).is_file():
        path = Path(arch_or_cfg)
        if not path.is_file():
            raise InputError(f"arch: config file {path} not found")
        from noisyclip_metrics.io.jsonfile import read_json_file

        cfg = read_json_file(path, "model config", InputError)
        if isinstance(cfg, dict) and "model_cfg" in cfg:  # open_clip_config.json nests it
            cfg = cfg["model_cfg"]
    else:
        arch = str(arch_or_cfg).replace("/", "-")
        cfg = open_clip.get_model_config(arch)
        if cfg is None:
            names = open_clip.list_models()
            raise UnknownNameError(
                f"unknown open_clip architecture {arch!r}{did_you_mean(arch, names)} "
                f"({len(names)} built-ins; or pass a JSON config path or dict)"
            )
    check_model_cfg(cfg, "arch")
    if "multimodal_cfg" in cfg:
        raise InputError("arch: CoCa models (multimodal_cfg) are not supported; use a CLIP-style dual encoder")
    return cfg, arch


def build_open_clip(model_cfg: dict[str, Any]) -> nn.Module:
    """Instantiate an open_clip ``CLIP``/``CustomTextCLIP`` from a config dict without loading any weights."""
    from open_clip.model import CLIP, CustomTextCLIP

    cfg = copy.deepcopy(model_cfg)
    text_cfg = cfg["text_cfg"]
    if "hf_model_name" in text_cfg:
        text_cfg["hf_model_pretrained"] = False  # never download text-tower weights
    if "timm_model_name" in cfg["vision_cfg"]:
        cfg["vision_cfg"]["timm_model_pretrained"] = False
    custom = cfg.pop("custom_text", False) or "hf_model_name" in text_cfg
    return (CustomTextCLIP if custom else CLIP)(**cfg)


TOKENIZERS: Registry[Callable[[NoisyCLIPConfig, Path | None], Callable[[list[str]], torch.Tensor]]] = Registry(
    "tokenizer type"
)


@TOKENIZERS.register("open_clip")
def _open_clip_tokenizer(config: NoisyCLIPConfig, folder: Path | None) -> Callable[[list[str]], torch.Tensor]:
    import open_clip

    if config.arch is not None and open_clip.get_model_config(config.arch) is not None:
        return open_clip.get_tokenizer(config.arch, context_length=config.context_length)
    return open_clip.SimpleTokenizer(context_length=config.context_length)


@TOKENIZERS.register("bpe")
def _bpe_tokenizer(config: NoisyCLIPConfig, folder: Path | None) -> Callable[[list[str]], torch.Tensor]:
    from noisyclip_metrics.scoring.tokenizers import ClipTextTokenizer

    if folder is None:
        raise InputError("tokenizer: a 'bpe' tokenizer needs the checkpoint folder that holds its files")
    return ClipTextTokenizer(folder / config.tokenizer.get("subdir", "tokenizer"), context_length=config.context_length)


class NoisyCLIPModel(nn.Module):
    """A CLIP dual encoder whose image tower scores latent previews (NoisyCLIP), or images (frozen CLIP).

    Args:
        config: architecture, tokenizer and preprocessing (:class:`NoisyCLIPConfig`).
        clip: the open_clip model; built from ``config.model_cfg`` with random weights when omitted.
        preview: the latent preview map.
        tokenizer: callable turning a list of strings into token ids; built from ``config.tokenizer`` when omitted.
    """

    def __init__(
        self,
        config: NoisyCLIPConfig,
        clip: nn.Module | None = None,
        preview: PreviewMap | str = "sdxl",
        tokenizer: Callable[[list[str]], torch.Tensor] | None = None,
        tokenizer_folder: Path | None = None,
    ) -> None:
        super().__init__()
        preview = get_preview_map(preview)
        if config.preview_name != preview.name:
            config = dataclasses.replace(config, preview_name=preview.name)
        self.config = config
        self.clip = clip if clip is not None else build_open_clip(config.model_cfg)
        self.clip.eval()
        # parameters (frozen unless training asks for a learned map) so optimisers and DDP can reach them
        self.preview_weight = nn.Parameter(preview.weight.clone(), requires_grad=False)
        self.preview_bias = nn.Parameter(preview.bias.clone(), requires_grad=False)
        self._preview_packed = preview.packed
        self._preview_r2 = preview.r2
        self.tokenizer = (
            tokenizer if tokenizer is not None else TOKENIZERS.get(config.tokenizer["type"])(config, tokenizer_folder)
        )
        self.register_buffer("_mean", torch.tensor(config.image_mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("_std", torch.tensor(config.image_std).view(1, 3, 1, 1), persistent=False)
        self.noise_embedding: NoiseEmbedding | None = None
        self._patch_shift: PatchShift | None = None
        if config.noise_conditioned:
            self._condition_on_noise()

    def _condition_on_noise(self) -> None:
        self._patch_shift = PatchShift(self.clip.visual)
        self.noise_embedding = NoiseEmbedding(self._patch_shift.width).to(
            device=self.preview_weight.device, dtype=self.preview_weight.dtype
        )

    def condition_on_noise(self) -> NoisyCLIPModel:
        """Make the image tower noise-conditioned (:mod:`~noisyclip_metrics.scoring.conditioning`), in place.

        The new embedding starts at zero, so scores are unchanged until it is trained. Returns the model.

        Raises:
            InputError: the model is already noise-conditioned, or its image tower is not an open_clip one.

        Examples:
            >>> import torch
            >>> model = NoisyCLIPModel.from_config(TINY_TEST_CONFIG, preview="sd1", seed=0)
            >>> z = torch.randn(2, 4, 16, 16)
            >>> before = model.score_latents(z, ["a", "b"])
            >>> after = model.condition_on_noise().score_latents(z, ["a", "b"], noise_std=0.5)
            >>> torch.equal(before, after), model.config.noise_conditioned
            (True, True)
        """
        if self.config.noise_conditioned:
            raise InputError("noise_conditioned: the model is already noise-conditioned")
        self._condition_on_noise()
        self.config = dataclasses.replace(self.config, noise_conditioned=True)
        return self

    # ----------------------------------------------------------------------------------------------------- building
    @classmethod
    def from_config(
        cls,
        arch_or_cfg: str | Path | dict[str, Any],
        preview: PreviewMap | str = "sdxl",
        weights: str | Path | None = None,
        seed: int | None = None,
        tokenizer_files: str | Path | None = None,
        **config_overrides: Any,
    ) -> NoisyCLIPModel:
        """Build from an open_clip architecture name, a JSON config file or a config dict.

        Args:
            arch_or_cfg: e.g. ``"ViT-B-32"``, ``"my_model.json"`` or a dict.
            preview: preview map name, file or object.
            weights: optional open_clip weights file (``.safetensors``, or a ``.pt``/``.bin`` read with
                ``weights_only=True``) for the CLIP part; random initialisation otherwise.
            seed: seed for the random initialisation (reproducible tiny models).
            tokenizer_files: a folder with ``vocab.json`` + ``merges.txt`` (e.g. a truncated CLIP BPE) to use instead
                of open_clip's tokenizer; the files are saved with the checkpoint.
            **config_overrides: fields of :class:`NoisyCLIPConfig` (``tokenizer``, ``image_mean``...).
        """
        model_cfg, arch = resolve_model_cfg(arch_or_cfg)
        preprocess = model_cfg.pop("preprocess_cfg", None) or {}
        kwargs: dict[str, Any] = {"model_cfg": model_cfg, "arch": arch}
        if "mean" in preprocess:
            kwargs["image_mean"] = tuple(preprocess["mean"])
        if "std" in preprocess:
            kwargs["image_std"] = tuple(preprocess["std"])
        kwargs.update(config_overrides)
        tokenizer = None
        if tokenizer_files is not None:
            from noisyclip_metrics.scoring.tokenizers import ClipTextTokenizer

            kwargs["tokenizer"] = {"type": "bpe", "subdir": "tokenizer"}
            tokenizer = ClipTextTokenizer(
                Path(tokenizer_files), context_length=int(model_cfg["text_cfg"].get("context_length", 77))
            )
        config = NoisyCLIPConfig(**kwargs)
        if seed is not None:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                clip = build_open_clip(config.model_cfg)
        else:
            clip = build_open_clip(config.model_cfg)
        if weights is not None:
            clip.load_state_dict(load_state_dict_file(weights), strict=True)
        return cls(config, clip=clip, preview=preview, tokenizer=tokenizer)

    @classmethod
    def from_pretrained(cls, path: str | Path, **kwargs: Any) -> NoisyCLIPModel:
        """Load a checkpoint folder (ours, or a Hugging Face ``CLIPModel``); see
        :mod:`noisyclip_metrics.scoring.checkpoint`."""
        return load_pretrained(path, **kwargs)

    def save_pretrained(self, path: str | Path) -> Path:
        """Write ``config.json`` + ``model.safetensors`` (+ tokenizer files) to ``path``."""
        return save_pretrained(self, path)

    # ------------------------------------------------------------------------------------------------------ preview
    @property
    def preview(self) -> PreviewMap:
        """The preview map as a :class:`PreviewMap` (on CPU)."""
        return PreviewMap(
            self.preview_weight.detach().cpu(),
            self.preview_bias.detach().cpu(),
            name=self.config.preview_name,
            packed=self._preview_packed,
            r2=self._preview_r2,
        )

    @property
    def latent_channels(self) -> int:
        """Number of latent channels the preview map reads."""
        return int(self.preview_weight.shape[1])

    def make_preview(self, latents: torch.Tensor, clamp: bool = True) -> torch.Tensor:
        """Latents ``(B, C, h, w)`` -> preview ``(B, 3, h, w)`` in ``[0, 1]`` (differentiable in the map's weights)."""
        check_latents(latents, self.latent_channels)
        x = latents.to(device=self.preview_weight.device, dtype=self.preview_weight.dtype)
        out = torch.einsum("oc,bchw->bohw", self.preview_weight, x) + self.preview_bias[None, :, None, None]
        return out.clamp(0.0, 1.0) if clamp else out

    # ----------------------------------------------------------------------------------------------------- encoders
    @property
    def device(self) -> torch.device:
        """Device of the weights."""
        return self.preview_weight.device

    def _prepare_images(self, images: torch.Tensor) -> torch.Tensor:
        size = self.config.image_size
        x = images.to(device=self.device, dtype=self._mean.dtype)
        if tuple(x.shape[-2:]) != (size, size):
            x = F.interpolate(
                x,
                size=(size, size),
                mode=self.config.interpolation,
                align_corners=False,
                antialias=x.shape[-1] > size,
            )
        return (x - self._mean) / self._std

    def encode_images(self, images: torch.Tensor, noise_std: torch.Tensor | float | None = None) -> torch.Tensor:
        """L2-normalised embeddings of ``(B, 3, H, W)`` images in ``[0, 1]`` (any size; resized to the tower's).

        ``noise_std`` (one value or ``(B,)``, in ``[0, 1]``): how noisy the latent behind each image was
        (:func:`noisyclip_metrics.scoring.x0.noise_std`; 0 for final images). A noise-conditioned model needs it; any
        other model ignores it.
        """
        if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[1] != 3:
            raise InputError(f"images: expected a (B, 3, H, W) tensor, got {getattr(images, 'shape', type(images))}")
        if not images.is_floating_point():
            raise InputError(f"images: expected floats in [0, 1], got dtype {images.dtype}")
        if not torch.isfinite(images).all():
            raise InputError("images: expected finite values, got NaN or Inf")
        return self.encode_prepared(self._prepare_images(images), noise_std)

    def encode_prepared(self, pixels: torch.Tensor, noise_std: torch.Tensor | float | None = None) -> torch.Tensor:
        """The image tower on resized, normalised ``pixels`` (no checks; differentiable): L2-normalised embeddings.

        Raises:
            InputError: a noise-conditioned model without ``noise_std``, or levels outside ``[0, 1]``.
        """
        if self._patch_shift is None:
            return F.normalize(self.clip.encode_image(pixels).float(), dim=-1)
        if noise_std is None:
            raise InputError(
                "noise_std: this model is noise-conditioned (config.noise_conditioned); expected the noise level of "
                "each latent (scoring.x0.noise_std; 0 for final images)"
            )
        assert self.noise_embedding is not None
        shift = self.noise_embedding(check_noise_std(noise_std, int(pixels.shape[0])).to(pixels.device))
        with self._patch_shift.active(shift):
            return F.normalize(self.clip.encode_image(pixels).float(), dim=-1)

    def encode_latents(self, latents: torch.Tensor, noise_std: torch.Tensor | float | None = None) -> torch.Tensor:
        """L2-normalised embeddings of the previews of ``(B, C, h, w)`` latents (``noise_std`` as in
        :meth:`encode_images`)."""
        return self.encode_images(self.make_preview(latents), noise_std)

    def tokenize(self, prompts: Sequence[str]) -> torch.Tensor:
        """Token ids ``(B, context_length)`` on the model's device."""
        return self.tokenizer(list(prompts)).to(self.device)

    def encode_text(self, prompts: Sequence[str]) -> torch.Tensor:
        """L2-normalised text embeddings; each distinct prompt is encoded once per call.

        Under ``torch.no_grad`` (scoring), embeddings are also kept across calls, so a prompt scored at every step of
        a denoising loop is encoded once; they are dropped as soon as the text tower's weights change (trained,
        loaded, moved or cast). At most :attr:`TEXT_CACHE_SIZE` prompts are kept, the least recently used go first.
        A kept embedding is its prompt encoded alone: one encoded in a batch can differ in its last bits with the
        batch, and a score must not depend on which earlier call first saw its prompt.
        """
        prompts = check_prompts(prompts)
        unique = list(dict.fromkeys(prompts))
        if torch.is_grad_enabled():
            emb = self._encode_text(unique)
        else:
            cache = self._text_cache()
            missing = [p for p in unique if p not in cache]
            for p in missing:
                cache[p] = self._encode_text([p])[0]
            for p in unique:
                cache.move_to_end(p)
            emb = torch.stack([cache[p] for p in unique])
            while len(cache) > self.TEXT_CACHE_SIZE:
                cache.popitem(last=False)
        index = {p: i for i, p in enumerate(unique)}
        return emb[torch.tensor([index[p] for p in prompts], device=emb.device)]

    #: Prompts whose embeddings :meth:`encode_text` keeps across calls.
    TEXT_CACHE_SIZE = 4096

    def clear_text_cache(self) -> None:
        """Forget the text embeddings kept across calls (they are dropped by themselves when the weights change)."""
        self.__dict__.pop("_text_embeddings", None)

    def _encode_text(self, prompts: list[str]) -> torch.Tensor:
        return F.normalize(self.clip.encode_text(self.tokenize(prompts)).float(), dim=-1)

    def _text_cache(self) -> OrderedDict[str, torch.Tensor]:
        """The embeddings cache of the text tower's current weights (a new, empty one when they changed)."""
        visual = {id(p) for p in self.clip.visual.parameters()}
        key = tuple((p.data_ptr(), p._version, p.dtype) for p in self.clip.parameters() if id(p) not in visual)
        cached = self.__dict__.get("_text_embeddings")
        if cached is None or cached[0] != key:
            cached = (key, OrderedDict())
            self.__dict__["_text_embeddings"] = cached
        return cached[1]

    # ------------------------------------------------------------------------------------------------------ scoring
    @torch.no_grad()
    def score_images(
        self, images: torch.Tensor, prompts: Sequence[str], noise_std: torch.Tensor | float | None = None
    ) -> torch.Tensor:
        """Per-sample cosine between ``(B, 3, H, W)`` images in ``[0, 1]`` and their prompts; shape ``(B,)``.

        A noise-conditioned model reads final images (``noise_std`` 0) unless told otherwise.
        """
        prompts = check_prompts(prompts, batch=int(images.shape[0]) if isinstance(images, torch.Tensor) else None)
        level = 0.0 if noise_std is None else noise_std
        return (self.encode_images(images, level) * self.encode_text(prompts)).sum(-1)

    @torch.no_grad()
    def score_latents(
        self, latents: torch.Tensor, prompts: Sequence[str], noise_std: torch.Tensor | float | None = None
    ) -> torch.Tensor:
        """Per-sample cosine between the previews of ``(B, C, h, w)`` latents and their prompts; shape ``(B,)``
        (``noise_std`` as in :meth:`encode_images`)."""
        check_latents(latents, self.latent_channels)
        prompts = check_prompts(prompts, batch=int(latents.shape[0]))
        return (self.encode_latents(latents, noise_std) * self.encode_text(prompts)).sum(-1)

    def vision_parameters(self) -> list[nn.Parameter]:
        """Parameters of the image tower and its projection, and the noise embedding of a noise-conditioned model
        (what NoisyCLIP fine-tunes)."""
        extra = list(self.noise_embedding.parameters()) if self.noise_embedding is not None else []
        return list(self.clip.visual.parameters()) + extra

    def extra_repr(self) -> str:
        return f"arch={self.config.arch!r}, preview={self.config.preview_name!r}, image_size={self.config.image_size}"


def load_pretrained(
    path: str | Path,
    preview: PreviewMap | str | None = None,
    device: str | torch.device | None = None,
) -> NoisyCLIPModel:
    """Load a :class:`NoisyCLIPModel` from a checkpoint folder (:mod:`noisyclip_metrics.scoring.checkpoint`).

    Args:
        path: a folder written by :func:`save_pretrained`, or a Hugging Face ``CLIPModel`` folder.
        preview: override the preview map (required to pick one for Hugging Face folders; default ``"sdxl"``).
        device: where to put the model.

    Raises:
        CheckpointError: missing files, pickle-only weights, or weights that do not match ``config.json``.
    """
    folder = Path(path)
    meta = _read_config(folder)
    architectures = meta.get("architectures")
    if meta.get("model_type") == "clip" or (isinstance(architectures, list) and "CLIPModel" in architectures):
        model = _load_hf_folder(folder, preview if preview is not None else "sdxl")
        return model.to(device) if device is not None else model
    if meta.get("format") != FORMAT:
        raise CheckpointError(
            f"{folder / CONFIG_NAME}: not a {FORMAT} checkpoint (format={meta.get('format')!r}) "
            "and not a Hugging Face CLIPModel (model_type='clip')"
        )
    if meta.get("format_version") != FORMAT_VERSION or isinstance(meta.get("format_version"), bool):
        raise CheckpointError(
            f"{folder / CONFIG_NAME}: format_version {meta.get('format_version')!r}, "
            f"this library reads {FORMAT_VERSION}"
        )
    weights = folder / WEIGHTS_NAME
    if not weights.is_file():
        pickles = sorted(p.name for p in folder.iterdir() if p.suffix in PICKLE_SUFFIXES)
        hint = (
            f"; found pickle files {pickles}, which are never loaded (convert them to safetensors)" if pickles else ""
        )
        raise CheckpointError(f"{weights}: missing{hint}")
    if "config" not in meta:
        raise CheckpointError(f"{folder / CONFIG_NAME}: field 'config': missing (the model config)")
    try:
        config = NoisyCLIPConfig.from_json(meta["config"])
    except (KeyError, TypeError, InputError) as err:
        raise CheckpointError(f"{folder / CONFIG_NAME}: malformed 'config' ({err})") from None
    if "text_from" in meta and not isinstance(meta["text_from"], str):
        raise CheckpointError(f"{folder / CONFIG_NAME}: field 'text_from': expected a relative folder path")
    tensors = load_state_dict_file(weights)
    if "text_from" in meta:
        tensors.update(_load_text_tower(folder, meta))
    with safe_open(str(weights), framework="pt") as f:
        file_meta = f.metadata() or {}
    try:
        stored_preview = PreviewMap.from_tensors(tensors, file_meta)
    except (ValueError, TypeError, InputError) as err:  # metadata that is not JSON, tensors of the wrong shape
        raise CheckpointError(f"{weights}: malformed preview map ({' '.join(str(err).split())})") from None
    clip_sd = {k.removeprefix("clip."): v for k, v in tensors.items() if k.startswith("clip.")}
    try:
        model = NoisyCLIPModel(
            config,
            preview=get_preview_map(preview) if preview is not None else stored_preview,
            tokenizer_folder=folder,
        )
    except (TypeError, ValueError, KeyError, IndexError, AttributeError, RuntimeError, AssertionError) as err:
        # open_clip builds whatever model_cfg describes: values it cannot build from are errors of config.json
        raise CheckpointError(
            f"{folder / CONFIG_NAME}: 'config.model_cfg' does not describe a model open_clip can "
            f"build ({type(err).__name__}: {' '.join(str(err).split())[:200]})"
        ) from None
    _load_part(model.clip, clip_sd, weights, "weights do not match config.json", "")
    noise_sd = {k.removeprefix(NOISE_PREFIX): v for k, v in tensors.items() if k.startswith(NOISE_PREFIX)}
    if model.noise_embedding is not None:
        why = "config.noise_conditioned is true but the noise embedding does not match"
        _load_part(model.noise_embedding, noise_sd, weights, why, NOISE_PREFIX)
    elif noise_sd:
        raise CheckpointError(
            f"{weights}: holds a noise embedding ({NOISE_PREFIX}*) but config.noise_conditioned is false"
        )
    model.eval()
    return model.to(device) if device is not None else model


def _load_part(module: nn.Module, state: dict[str, torch.Tensor], weights: Path, why: str, prefix: str) -> None:
    """Load ``state`` into ``module`` exactly: every key, each of the shape the config describes."""
    _check_shapes(module.state_dict(), state, weights)
    result = module.load_state_dict(state, strict=False)
    if result.missing_keys or result.unexpected_keys:
        missing = [prefix + k for k in result.missing_keys[:5]]
        raise CheckpointError(f"{weights}: {why} (missing {missing}, unexpected {result.unexpected_keys[:5]})")


def _check_shapes(expected: dict[str, torch.Tensor], found: dict[str, torch.Tensor], weights: Path) -> None:
    """Refuse weights whose shapes differ from the model config.json describes (torch would raise a RuntimeError)."""
    for key, tensor in found.items():
        want = expected.get(key)
        if want is not None and tuple(want.shape) != tuple(tensor.shape):
            raise CheckpointError(
                f"{weights}: weights do not match config.json: {key!r} has shape {tuple(tensor.shape)} in the file, "
                f"the config's model expects {tuple(want.shape)} "
                "(check embed_dim / width / layers in 'config.model_cfg')"
            )


def _load_hf_folder(folder: Path, preview: PreviewMap | str) -> NoisyCLIPModel:
    from noisyclip_metrics.scoring.convert import load_hf_clip

    clip, model_cfg = load_hf_clip(folder)
    mean, std = _hf_image_stats(folder)
    tokenizer = None
    tok_spec: dict[str, Any] = {"type": "open_clip"}
    if (folder / "vocab.json").is_file() and (folder / "merges.txt").is_file():
        from noisyclip_metrics.scoring.tokenizers import ClipTextTokenizer

        tokenizer = ClipTextTokenizer(folder, context_length=int(model_cfg["text_cfg"].get("context_length", 77)))
        tok_spec = {"type": "bpe", "subdir": "tokenizer"}
    elif int(model_cfg["text_cfg"].get("vocab_size", 49408)) != 49408:
        raise CheckpointError(
            f"{folder}: vocab.json/merges.txt missing and the vocabulary ({model_cfg['text_cfg'].get('vocab_size')} "
            "tokens) is not the standard CLIP one; save the tokenizer files into the folder"
        )
    config = NoisyCLIPConfig(
        model_cfg=model_cfg, image_mean=mean, image_std=std, source="transformers", tokenizer=tok_spec
    )
    return NoisyCLIPModel(config, clip=clip, preview=preview, tokenizer=tokenizer)


def _hf_image_stats(folder: Path) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
    """Image mean/std from a Hugging Face ``preprocessor_config.json`` if present (OpenAI values otherwise)."""
    pre = folder / "preprocessor_config.json"
    if pre.is_file():
        from noisyclip_metrics.io.jsonfile import read_json_file

        data = read_json_file(pre, "preprocessor config", CheckpointError)
        if not isinstance(data, dict):
            raise CheckpointError(f"{pre}: expected a JSON object")
        mean, std = data.get("image_mean", OPENAI_MEAN), data.get("image_std", OPENAI_STD)
        for name, values in (("image_mean", mean), ("image_std", std)):
            ok = isinstance(values, (list, tuple)) and len(values) == 3
            if not ok or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
                raise CheckpointError(f"{pre}: field {name!r}: expected a list of 3 numbers")
        return tuple(float(v) for v in mean), tuple(float(v) for v in std)  # type: ignore[return-value]
    return OPENAI_MEAN, OPENAI_STD
