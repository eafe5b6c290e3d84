"""Weight conversion between Hugging Face ``transformers.CLIPModel`` checkpoints and open_clip's ``CLIP``.

NoisyCLIP checkpoints are released in the Hugging Face format (``config.json`` + ``model.safetensors``); the project
scores with open_clip's ``open_clip.model.CLIP``. This module maps one onto the other exactly (same outputs to float
rounding), and exports the text tower of an open_clip CLIP back to a ``transformers.CLIPTextModel`` so that a diffusers
``StableDiffusionPipeline`` can condition on it.

Key mapping (HF -> open_clip; ``V = vision_model``, ``T = text_model``, ``L = encoder.layers.{i}``):

=========================================================  ==========================================================
HF                                                         open_clip
=========================================================  ==========================================================
``V.embeddings.patch_embedding.weight``                    ``visual.conv1.weight``
``V.embeddings.class_embedding``                           ``visual.class_embedding``
``V.embeddings.position_embedding.weight``                 ``visual.positional_embedding``
``V.pre_layrnorm`` / ``V.post_layernorm``                  ``visual.ln_pre`` / ``visual.ln_post``
``visual_projection.weight`` (out, in)                     ``visual.proj`` (in, out), transposed
``T.embeddings.token_embedding.weight``                    ``token_embedding.weight``
``T.embeddings.position_embedding.weight``                 ``positional_embedding``
``T.final_layer_norm``                                     ``ln_final``
``text_projection.weight`` (out, in)                       ``text_projection`` (in, out), transposed
``logit_scale``                                            ``logit_scale``
``L.self_attn.{q,k,v}_proj.{weight,bias}``                 ``resblocks.{i}.attn.in_proj_{weight,bias}`` (q, k, v cat)
``L.self_attn.out_proj``                                   ``resblocks.{i}.attn.out_proj``
``L.layer_norm1`` / ``L.layer_norm2``                      ``resblocks.{i}.ln_1`` / ``resblocks.{i}.ln_2``
``L.mlp.fc1`` / ``L.mlp.fc2``                              ``resblocks.{i}.mlp.c_fc`` / ``resblocks.{i}.mlp.c_proj``
=========================================================  ==========================================================

(vision layers live under ``visual.transformer.``, text layers under ``transformer.``.)

The offline tokenizer utilities live in :mod:`noisyclip_metrics.scoring.tokenizers` and are re-exported here.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from noisyclip_metrics.errors import CheckpointError, InputError
from noisyclip_metrics.scoring.tokenizers import (
    ClipTextTokenizer,
    load_clip_tokenizer,
    minimal_merges_for,
    write_clip_bpe_files,
)

if TYPE_CHECKING:
    import open_clip
    import transformers

__all__ = [
    # re-exported from noisyclip_metrics.scoring.tokenizers for convenience
    "ClipTextTokenizer",
    # conversion
    "hf_clip_state_dict_to_open_clip",
    "load_clip_tokenizer",
    "load_hf_clip",
    "minimal_merges_for",
    "open_clip_config_from_hf",
    "open_clip_text_to_hf",
    "open_clip_text_token_features",
    "write_clip_bpe_files",
]

_OPEN_CLIP_LN_EPS = 1e-5
# HF hidden_act -> (open_clip quick_gelu flag, act_kwargs for nn.GELU)
_ACTIVATIONS: dict[str, tuple[bool, dict[str, str] | None]] = {
    "quick_gelu": (True, None),
    "gelu": (False, None),
    "gelu_pytorch_tanh": (False, {"approximate": "tanh"}),
    "gelu_new": (False, {"approximate": "tanh"}),
}
_IGNORED_SUFFIXES = ("position_ids",)  # non-persistent buffers that older checkpoints still contain


def _as_hf_config(hf_config: Any) -> transformers.CLIPConfig:
    import transformers

    if isinstance(hf_config, Mapping):
        try:
            return transformers.CLIPConfig.from_dict(dict(hf_config))
        except Exception as exc:  # strict dataclass validation raises assorted errors
            raise InputError(f"hf_config: not a valid CLIPConfig dict ({exc})") from exc
    if not isinstance(hf_config, transformers.CLIPConfig):
        raise InputError(f"hf_config must be a transformers.CLIPConfig or dict, got {type(hf_config).__name__}")
    return hf_config


def _square(value: Any, name: str) -> int:
    if isinstance(value, (list, tuple)):
        if len(value) != 2 or value[0] != value[1]:
            raise InputError(f"{name} must be square for open_clip/HF CLIP, got {value!r}")
        value = value[0]
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise InputError(f"{name} must be a positive int, got {value!r}")
    return value


def _mlp_ratio(width: int, intermediate: int, name: str) -> float:
    """Ratio r with ``int(width * r) == intermediate`` (open_clip computes the MLP width that way)."""
    ratio = intermediate / width
    for _ in range(4):
        if int(width * ratio) == intermediate:
            return ratio
        ratio = math.nextafter(ratio, math.inf)
    raise InputError(f"{name}: intermediate_size {intermediate} cannot be expressed as int(width * mlp_ratio)")


def _tower_cfg(sub: Any, name: str) -> tuple[dict[str, Any], bool]:
    act = getattr(sub, "hidden_act", None)
    if act not in _ACTIVATIONS:
        raise InputError(
            f"{name}.hidden_act={act!r} is not supported by open_clip; supported: {', '.join(_ACTIVATIONS)}"
        )
    quick, act_kwargs = _ACTIVATIONS[act]
    width, heads = sub.hidden_size, sub.num_attention_heads
    if width % heads:
        raise InputError(f"{name}: hidden_size {width} is not divisible by num_attention_heads {heads}")
    cfg: dict[str, Any] = {
        "width": width,
        "layers": sub.num_hidden_layers,
        "mlp_ratio": _mlp_ratio(width, sub.intermediate_size, name),
    }
    if act_kwargs is not None:
        cfg["act_kwargs"] = dict(act_kwargs)
    eps = sub.layer_norm_eps
    if eps is None or not float(eps) > 0:
        raise InputError(f"{name}.layer_norm_eps must be a positive float, got {eps!r}")
    if float(eps) != _OPEN_CLIP_LN_EPS:
        cfg["norm_kwargs"] = {"eps": float(eps)}
    return cfg, quick


def open_clip_config_from_hf(hf_config: transformers.CLIPConfig | Mapping[str, Any]) -> dict[str, Any]:
    """open_clip model config (``embed_dim``, ``vision_cfg``, ``text_cfg``, ``quick_gelu``) for an HF CLIP config.

    ``open_clip.model.CLIP(**cfg)`` then has exactly the HF architecture: patch/image size, widths, layers, heads,
    MLP width (``mlp_ratio = intermediate_size / hidden_size``), context length (``max_position_embeddings``),
    vocabulary, activation, layer-norm eps (as ``norm_kwargs`` when it is not 1e-5) and the text pooling rule (HF's
    legacy ``eos_token_id == 2`` means ``argmax`` pooling; otherwise the first ``eos_token_id`` position, which is
    open_clip's ``pool_type="eos"``). Dropout settings are ignored (they do not act in eval mode).

    Args:
        hf_config: a ``transformers.CLIPConfig`` (or its dict form, as in ``config.json``).

    Returns:
        A JSON-serialisable dict.

    Raises:
        InputError: for HF options open_clip cannot represent (another activation, quick_gelu in one tower only,
            ``num_channels != 3``, non-square images, an unusable ``eos_token_id``...).

    Examples:
        >>> import transformers
        >>> hf = transformers.CLIPConfig(
        ...     text_config=dict(vocab_size=600, hidden_size=64, intermediate_size=256, num_hidden_layers=2,
        ...                      num_attention_heads=4, max_position_embeddings=16, bos_token_id=598,
        ...                      eos_token_id=599, pad_token_id=599),
        ...     vision_config=dict(image_size=32, patch_size=8, hidden_size=64, intermediate_size=96,
        ...                        num_hidden_layers=2, num_attention_heads=4),
        ...     projection_dim=32)
        >>> cfg = open_clip_config_from_hf(hf)
        >>> cfg["embed_dim"], cfg["quick_gelu"], cfg["vision_cfg"]["head_width"], cfg["vision_cfg"]["mlp_ratio"]
        (32, True, 16, 1.5)
        >>> cfg["text_cfg"]["context_length"], cfg["text_cfg"]["pool_type"], cfg["text_cfg"]["eos_id"]
        (16, 'eos', 599)
    """
    hf_config = _as_hf_config(hf_config)
    vis, txt = hf_config.vision_config, hf_config.text_config
    if getattr(vis, "num_channels", 3) != 3:
        raise InputError(f"vision_config.num_channels={vis.num_channels} is not supported; open_clip expects 3")
    vision_cfg, quick_v = _tower_cfg(vis, "vision_config")
    text_cfg, quick_t = _tower_cfg(txt, "text_config")
    if quick_v != quick_t:
        raise InputError(
            f"vision_config.hidden_act={vis.hidden_act!r} and text_config.hidden_act={txt.hidden_act!r}: open_clip "
            "uses one quick_gelu flag for both towers"
        )
    image_size = _square(vis.image_size, "vision_config.image_size")
    patch_size = _square(vis.patch_size, "vision_config.patch_size")
    if patch_size > image_size:
        raise InputError(f"vision_config.patch_size {patch_size} is larger than image_size {image_size}")
    vision_cfg.update(
        image_size=image_size, patch_size=patch_size, head_width=vis.hidden_size // vis.num_attention_heads
    )
    eos = txt.eos_token_id
    if isinstance(eos, bool) or not isinstance(eos, int):
        raise InputError(f"text_config.eos_token_id must be one int (HF pools at it), got {eos!r}")
    if eos == 2:  # HF's legacy rule: pool at the largest token id, as OpenAI's CLIP does
        text_cfg.update(pool_type="argmax")
    else:
        if not 0 <= eos < txt.vocab_size:
            warnings.warn(
                f"text_config.eos_token_id={eos} is outside the vocabulary (size {txt.vocab_size}); HF (and the "
                "converted model) then pools the first position",
                stacklevel=2,
            )
        text_cfg.update(pool_type="eos", eos_id=eos)
    text_cfg.update(
        context_length=txt.max_position_embeddings, vocab_size=txt.vocab_size, heads=txt.num_attention_heads
    )
    return {
        "embed_dim": hf_config.projection_dim,
        "quick_gelu": quick_v,
        "vision_cfg": vision_cfg,
        "text_cfg": text_cfg,
    }


def _layer_map(hf_prefix: str, oc_prefix: str, sd: Mapping[str, torch.Tensor], out: dict[str, torch.Tensor]) -> None:
    for suffix in ("weight", "bias"):
        out[f"{oc_prefix}attn.in_proj_{suffix}"] = torch.cat(
            [sd[f"{hf_prefix}self_attn.{p}_proj.{suffix}"] for p in ("q", "k", "v")], dim=0
        )
        for hf_name, oc_name in (
            ("self_attn.out_proj", "attn.out_proj"),
            ("layer_norm1", "ln_1"),
            ("layer_norm2", "ln_2"),
            ("mlp.fc1", "mlp.c_fc"),
            ("mlp.fc2", "mlp.c_proj"),
        ):
            out[f"{oc_prefix}{oc_name}.{suffix}"] = sd[f"{hf_prefix}{hf_name}.{suffix}"]


def hf_clip_state_dict_to_open_clip(
    state_dict: Mapping[str, torch.Tensor], hf_config: transformers.CLIPConfig | Mapping[str, Any]
) -> dict[str, torch.Tensor]:
    """Map an HF ``CLIPModel`` state dict to open_clip ``CLIP`` keys (see the module docstring for the table).

    q/k/v projections are concatenated into ``in_proj_weight``/``in_proj_bias``; the two projection matrices are
    transposed. ``*position_ids`` buffers are ignored. Tensors are not copied unless they must be (cat, transpose).

    Args:
        state_dict: ``CLIPModel.state_dict()`` or the contents of ``model.safetensors``.
        hf_config: the matching ``transformers.CLIPConfig`` (layer counts are read from it).

    Raises:
        CheckpointError: naming the first missing key, or listing unexpected keys.

    Examples:
        >>> import torch, transformers
        >>> hf = transformers.CLIPConfig(
        ...     text_config=dict(vocab_size=600, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
        ...                      num_attention_heads=2, max_position_embeddings=8, eos_token_id=2),
        ...     vision_config=dict(image_size=16, patch_size=8, hidden_size=32, intermediate_size=64,
        ...                        num_hidden_layers=1, num_attention_heads=2), projection_dim=16)
        >>> sd = hf_clip_state_dict_to_open_clip(transformers.CLIPModel(hf).state_dict(), hf)
        >>> tuple(sd["visual.transformer.resblocks.0.attn.in_proj_weight"].shape), tuple(sd["visual.proj"].shape)
        ((96, 32), (32, 16))
    """
    hf_config = _as_hf_config(hf_config)
    sd = {k: v for k, v in state_dict.items() if not k.endswith(_IGNORED_SUFFIXES)}
    out: dict[str, torch.Tensor] = {}
    try:
        v, t = "vision_model.", "text_model."
        out["visual.conv1.weight"] = sd[f"{v}embeddings.patch_embedding.weight"]
        out["visual.class_embedding"] = sd[f"{v}embeddings.class_embedding"]
        out["visual.positional_embedding"] = sd[f"{v}embeddings.position_embedding.weight"]
        for suffix in ("weight", "bias"):
            out[f"visual.ln_pre.{suffix}"] = sd[f"{v}pre_layrnorm.{suffix}"]
            out[f"visual.ln_post.{suffix}"] = sd[f"{v}post_layernorm.{suffix}"]
            out[f"ln_final.{suffix}"] = sd[f"{t}final_layer_norm.{suffix}"]
        out["visual.proj"] = sd["visual_projection.weight"].t().contiguous()
        for i in range(hf_config.vision_config.num_hidden_layers):
            _layer_map(f"{v}encoder.layers.{i}.", f"visual.transformer.resblocks.{i}.", sd, out)
        out["token_embedding.weight"] = sd[f"{t}embeddings.token_embedding.weight"]
        out["positional_embedding"] = sd[f"{t}embeddings.position_embedding.weight"]
        out["text_projection"] = sd["text_projection.weight"].t().contiguous()
        for i in range(hf_config.text_config.num_hidden_layers):
            _layer_map(f"{t}encoder.layers.{i}.", f"transformer.resblocks.{i}.", sd, out)
        out["logit_scale"] = sd["logit_scale"]
    except KeyError as exc:
        raise CheckpointError(f"HF CLIP state dict: missing key {exc.args[0]!r}") from None
    used = _hf_keys_used(hf_config)
    unexpected = sorted(set(sd) - used)
    if unexpected:
        raise CheckpointError(
            f"HF CLIP state dict: {len(unexpected)} unexpected key(s) for this config, e.g. {unexpected[:5]}"
        )
    return out


def _hf_keys_used(hf_config: transformers.CLIPConfig) -> set[str]:
    keys = {"visual_projection.weight", "text_projection.weight", "logit_scale"}
    v, t = "vision_model.", "text_model."
    keys |= {f"{v}embeddings.{n}" for n in ("patch_embedding.weight", "class_embedding", "position_embedding.weight")}
    keys |= {f"{t}embeddings.{n}.weight" for n in ("token_embedding", "position_embedding")}
    layer = [f"self_attn.{p}_proj" for p in "qkv"] + ["self_attn.out_proj", "layer_norm1", "layer_norm2"]
    layer += ["mlp.fc1", "mlp.fc2"]
    for prefix, n_layers, norms in (
        (v, hf_config.vision_config.num_hidden_layers, ("pre_layrnorm", "post_layernorm")),
        (t, hf_config.text_config.num_hidden_layers, ("final_layer_norm",)),
    ):
        for s in ("weight", "bias"):
            keys |= {f"{prefix}{n}.{s}" for n in norms}
            keys |= {f"{prefix}encoder.layers.{i}.{n}.{s}" for i in range(n_layers) for n in layer}
    return keys


def _read_state_dict(folder: Path) -> dict[str, torch.Tensor]:
    candidates = (
        "model.safetensors",
        "model.safetensors.index.json",
        "pytorch_model.bin",
        "pytorch_model.bin.index.json",
    )
    for name in candidates:
        path = folder / name
        if not path.is_file():
            continue
        if name.endswith(".index.json"):
            try:
                weight_map = json.loads(path.read_text(encoding="utf-8"))["weight_map"]
                shards = sorted(set(weight_map.values()))
            except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
                raise CheckpointError(f"{path}: not a valid shard index with a 'weight_map' ({exc})") from exc
            merged: dict[str, torch.Tensor] = {}
            for shard in shards:
                shard_path = folder / shard
                if not shard_path.is_file():
                    raise CheckpointError(f"{shard_path}: shard listed in {path.name} is missing")
                merged.update(_read_weight_file(shard_path))
            return merged
        return _read_weight_file(path)
    raise CheckpointError(f"{folder}: no weights found; expected one of {', '.join(candidates)}")


def _read_weight_file(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device="cpu")
        except Exception as exc:  # safetensors raises SafetensorError / OSError for bad headers
            raise CheckpointError(f"{path}: cannot read safetensors file ({exc})") from exc
    try:  # never plain pickle: weights_only refuses to build arbitrary objects or call functions
        data = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(
            f"{path}: cannot be loaded with torch.load(weights_only=True) (unsafe pickle or corrupt file): {exc}"
        ) from exc
    if not isinstance(data, dict) or not all(isinstance(k, str) and torch.is_tensor(v) for k, v in data.items()):
        raise CheckpointError(f"{path}: expected a dict of str -> Tensor, got {type(data).__name__}")
    return data


def _load_into(model: nn.Module, state_dict: Mapping[str, torch.Tensor], source: str) -> None:
    own = model.state_dict()
    missing = sorted(set(own) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(own))
    if missing or unexpected:
        raise CheckpointError(
            f"{source}: state dict does not fit the model (missing {missing[:5]}, unexpected {unexpected[:5]})"
        )
    for key, value in state_dict.items():
        if tuple(value.shape) != tuple(own[key].shape):
            raise CheckpointError(
                f"{source}: {key} has shape {tuple(value.shape)} but the config implies {tuple(own[key].shape)}"
            )
    model.load_state_dict(dict(state_dict), strict=True)


def load_hf_clip(
    path_or_model: str | os.PathLike[str] | transformers.CLIPModel,
) -> tuple[open_clip.model.CLIP, dict[str, Any]]:
    """Build an open_clip ``CLIP`` (eval mode, float32 on CPU) from an HF ``CLIPModel`` folder or instance.

    The folder needs ``config.json`` (``model_type == "clip"``) and the weights: ``model.safetensors`` (preferred),
    a sharded ``model.safetensors.index.json``, or ``pytorch_model.bin`` / its index, the latter read only with
    ``torch.load(..., weights_only=True)``. Nothing is downloaded.

    Args:
        path_or_model: a local folder (as written by ``CLIPModel.save_pretrained``) or an in-memory ``CLIPModel``.

    Returns:
        ``(model, cfg)``: the open_clip model and its config dict (see :func:`open_clip_config_from_hf`).

    Raises:
        CheckpointError: missing/unreadable files, wrong ``model_type``, an unsafe pickle, keys or shapes that do not
            fit the config. InputError: an HF option open_clip cannot represent, or a wrong argument type.

    Examples:
        >>> import torch, transformers
        >>> hf = transformers.CLIPModel(transformers.CLIPConfig(
        ...     text_config=dict(vocab_size=600, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
        ...                      num_attention_heads=2, max_position_embeddings=8, eos_token_id=2),
        ...     vision_config=dict(image_size=16, patch_size=8, hidden_size=32, intermediate_size=64,
        ...                        num_hidden_layers=1, num_attention_heads=2), projection_dim=16)).eval()
        >>> model, cfg = load_hf_clip(hf)
        >>> image = torch.rand(2, 3, 16, 16)
        >>> out = hf.get_image_features(pixel_values=image)
        >>> ref = out if torch.is_tensor(out) else out.pooler_output
        >>> bool(torch.allclose(model.encode_image(image), ref, atol=1e-5))
        True
    """
    import open_clip
    import transformers

    if isinstance(path_or_model, transformers.CLIPModel):
        hf_config = path_or_model.config
        state_dict: Mapping[str, torch.Tensor] = {k: v.detach() for k, v in path_or_model.state_dict().items()}
        source = f"in-memory {type(path_or_model).__name__}"
    elif isinstance(path_or_model, (str, os.PathLike)):
        folder = Path(path_or_model)
        config_path = folder / "config.json"
        if not config_path.is_file():
            raise CheckpointError(f"{config_path}: missing; expected an HF CLIPModel folder (config.json + weights)")
        try:
            raw = json.loads(config_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise CheckpointError(f"{config_path}: not valid JSON ({exc})") from exc
        if not isinstance(raw, dict) or raw.get("model_type") != "clip":
            got = raw.get("model_type") if isinstance(raw, dict) else type(raw).__name__
            raise CheckpointError(f"{config_path}: model_type must be 'clip' (a CLIPModel checkpoint), got {got!r}")
        try:
            hf_config = transformers.CLIPConfig.from_dict(raw)
        except Exception as exc:
            raise CheckpointError(f"{config_path}: not a valid CLIPConfig ({exc})") from exc
        state_dict = _read_state_dict(folder)
        source = str(folder)
    else:
        raise InputError(
            f"path_or_model must be a folder path or a transformers.CLIPModel, got {type(path_or_model).__name__}"
        )
    cfg = open_clip_config_from_hf(hf_config)
    oc_state = hf_clip_state_dict_to_open_clip(state_dict, hf_config)
    model = open_clip.model.CLIP(**cfg)
    _load_into(model, oc_state, source)
    return model.eval(), cfg


# --------------------------------------------------------------------------------------------- text tower export


def _text_module(clip_model: nn.Module) -> nn.Module:
    """The module holding token_embedding / positional_embedding / transformer / ln_final / attn_mask."""
    for candidate in (clip_model, getattr(clip_model, "text", None)):
        if candidate is not None and all(
            hasattr(candidate, a) for a in ("token_embedding", "positional_embedding", "transformer", "ln_final")
        ):
            if getattr(candidate, "cls_emb", None) is not None:
                raise InputError("clip_model: text towers with a class token (CoCa, embed_cls) are not supported")
            return candidate
    raise InputError(
        "clip_model must be an open_clip CLIP (or CustomTextCLIP with a TextTransformer), "
        f"got {type(clip_model).__name__}"
    )


def open_clip_text_token_features(clip_model: nn.Module, tokens: torch.Tensor) -> torch.Tensor:
    """Per-token text features of an open_clip CLIP after ``ln_final``: ``(B, L, width)``, before pooling/projection.

    These are what ``CLIP.encode_text`` pools (and what a converted ``CLIPTextModel`` returns as
    ``last_hidden_state``). ``L`` may be shorter than the context length (positional embeddings and the causal mask
    are cut to ``L``). Gradients flow (no ``no_grad`` here).

    Args:
        clip_model: ``open_clip.model.CLIP`` (or ``CustomTextCLIP`` with a plain ``TextTransformer``).
        tokens: int64 ids ``(B, L)``, e.g. from :class:`noisyclip_metrics.scoring.tokenizers.ClipTextTokenizer`.

    Raises:
        InputError: wrong shape/dtype, ids out of range, or ``L`` above the context length.

    Examples:
        >>> import open_clip, torch
        >>> m = open_clip.model.CLIP(16, dict(image_size=16, patch_size=8, width=32, layers=1, head_width=16),
        ...                          dict(context_length=8, vocab_size=600, width=32, heads=2, layers=1))
        >>> open_clip_text_token_features(m, torch.tensor([[598, 5, 599, 0, 0, 0, 0, 0]])).shape
        torch.Size([1, 8, 32])
    """
    text = _text_module(clip_model)
    if not torch.is_tensor(tokens) or tokens.ndim != 2 or tokens.dtype not in (torch.int64, torch.int32):
        raise InputError(f"tokens must be an int64 tensor of shape (B, L), got {getattr(tokens, 'shape', tokens)!r}")
    n_ctx, vocab = text.positional_embedding.shape[0], text.token_embedding.num_embeddings
    length = tokens.shape[1]
    if not 1 <= length <= n_ctx:
        raise InputError(f"tokens: sequence length must be in [1, {n_ctx}] (the context length), got {length}")
    if tokens.numel() and (int(tokens.min()) < 0 or int(tokens.max()) >= vocab):
        raise InputError(f"tokens: ids must be in [0, {vocab}), got [{int(tokens.min())}, {int(tokens.max())}]")
    cast_dtype = text.transformer.get_cast_dtype()
    x = text.token_embedding(tokens.long()).to(cast_dtype)
    x = x + text.positional_embedding[:length].to(cast_dtype)
    attn_mask = getattr(text, "attn_mask", None)
    x = text.transformer(x, attn_mask=None if attn_mask is None else attn_mask[:length, :length])
    return text.ln_final(x)


def _activation_name(act: nn.Module) -> str:
    from open_clip.transformer import QuickGELU

    if isinstance(act, QuickGELU):
        return "quick_gelu"
    if isinstance(act, nn.GELU):
        return {"none": "gelu", "tanh": "gelu_pytorch_tanh"}[act.approximate]
    raise InputError(f"clip_model: activation {type(act).__name__} has no transformers CLIP equivalent")


def _cfg_get(cfg: Any, key: str, default: Any = None) -> Any:
    if cfg is None:
        return default
    if isinstance(cfg, Mapping):
        return cfg.get(key, default)
    return getattr(cfg, key, default)


def open_clip_text_to_hf(
    clip_model: nn.Module,
    model_cfg: Mapping[str, Any],
    *,
    bos_token_id: int | None = None,
    eos_token_id: int | None = None,
    pad_token_id: int | None = None,
) -> transformers.CLIPTextModel:
    """Export the text tower of an open_clip CLIP as a ``transformers.CLIPTextModel`` (eval, same dtype and device).

    ``CLIPTextModel(input_ids).last_hidden_state`` equals :func:`open_clip_text_token_features` (same tokens, float
    rounding only), which is what Stable Diffusion conditions on. The architecture (widths, heads, MLP width,
    activation, layer-norm eps, context length) is read from the modules and checked against ``model_cfg``;
    LayerScale (``ls_init_value``) is folded into ``out_proj``/``fc2``. The text projection is not exported
    (``CLIPTextModel`` has none); ``projection_dim`` is recorded in the config.

    Token ids default to the convention of :func:`~noisyclip_metrics.scoring.tokenizers.write_clip_bpe_files`:
    ``bos = vocab_size - 2``, ``eos = vocab_size - 1`` (the eot; HF pools at its first occurrence, which equals
    open_clip's argmax pooling because eot is the largest id; with ``pool_type="eos"`` the cfg's ``eos_id`` is used)
    and ``pad = eos`` (what ``CLIPTokenizer`` pads with).

    Args:
        clip_model: ``open_clip.model.CLIP`` (or ``CustomTextCLIP`` with a plain ``TextTransformer``).
        model_cfg: its open_clip config dict (``embed_dim``, ``text_cfg``, ``quick_gelu``).
        bos_token_id: overrides the default.
        eos_token_id: overrides the default.
        pad_token_id: overrides the default.

    Raises:
        InputError: a text tower HF cannot represent (bidirectional, custom attention blocks, mixed eps...), or a
            ``model_cfg`` that disagrees with the model.

    Examples:
        >>> import open_clip, torch
        >>> cfg = dict(embed_dim=16, vision_cfg=dict(image_size=16, patch_size=8, width=32, layers=1, head_width=16),
        ...            text_cfg=dict(context_length=8, vocab_size=600, width=32, heads=2, layers=1))
        >>> m = open_clip.model.CLIP(**cfg).eval()
        >>> hf = open_clip_text_to_hf(m, cfg)
        >>> ids = torch.tensor([[598, 5, 7, 599, 0, 0, 0, 0]])
        >>> bool(torch.allclose(hf(ids).last_hidden_state, open_clip_text_token_features(m, ids), atol=1e-5))
        True
    """
    import transformers
    from open_clip.transformer import ResidualAttentionBlock

    text = _text_module(clip_model)
    if not isinstance(model_cfg, Mapping):
        raise InputError(f"model_cfg must be an open_clip config dict, got {type(model_cfg).__name__}")
    text_cfg = model_cfg.get("text_cfg")
    if _cfg_get(text_cfg, "hf_model_name"):
        raise InputError("model_cfg.text_cfg.hf_model_name: HF-backbone text towers are not CLIP text transformers")
    if getattr(text, "attn_mask", None) is None:
        raise InputError("clip_model: the text tower has no causal mask (no_causal_mask); CLIPTextModel is causal")
    blocks = list(text.transformer.resblocks)
    if not blocks:
        raise InputError("clip_model: the text transformer has no layers")
    for i, blk in enumerate(blocks):
        if type(blk) is not ResidualAttentionBlock or hasattr(blk, "ln_1_kv"):
            raise InputError(f"clip_model: text block {i} is {type(blk).__name__}; only the default block converts")
    vocab, width = text.token_embedding.weight.shape
    n_ctx = text.positional_embedding.shape[0]
    heads = blocks[0].attn.num_heads
    inter = blocks[0].mlp.c_fc.out_features
    act = _activation_name(blocks[0].mlp.gelu)
    norms = [m for blk in blocks for m in (blk.ln_1, blk.ln_2)] + [text.ln_final]
    eps_values = {float(m.eps) for m in norms}
    if len(eps_values) != 1:
        raise InputError(f"clip_model: text layer norms use several eps values {sorted(eps_values)}; HF has one")
    eps = eps_values.pop()
    if any(_activation_name(blk.mlp.gelu) != act for blk in blocks):
        raise InputError("clip_model: text blocks use different activations")
    expected = {
        "vocab_size": vocab,
        "width": width,
        "context_length": n_ctx,
        "heads": heads,
        "layers": len(blocks),
    }
    for key, value in expected.items():
        cfg_value = _cfg_get(text_cfg, key)
        if cfg_value is not None and cfg_value != value:
            raise InputError(f"model_cfg.text_cfg.{key}={cfg_value!r} but the model has {value}")
    quick_cfg = model_cfg.get("quick_gelu")
    if quick_cfg is not None and bool(quick_cfg) != (act == "quick_gelu"):
        raise InputError(f"model_cfg.quick_gelu={quick_cfg!r} but the text tower's activation is {act}")

    eos_default = vocab - 1
    if _cfg_get(text_cfg, "pool_type", "argmax") == "eos":
        eos_default = int(_cfg_get(text_cfg, "eos_id", 2))
    ids = {
        "bos_token_id": vocab - 2 if bos_token_id is None else bos_token_id,
        "eos_token_id": eos_default if eos_token_id is None else eos_token_id,
    }
    ids["pad_token_id"] = ids["eos_token_id"] if pad_token_id is None else pad_token_id
    for key, value in ids.items():
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < vocab:
            raise InputError(f"{key} must be an int in [0, {vocab}), got {value!r}")
    projection = getattr(text, "text_projection", None)
    proj_dim = model_cfg.get("embed_dim") or (projection.shape[-1] if torch.is_tensor(projection) else width)
    hf_cfg = transformers.CLIPTextConfig(
        vocab_size=vocab,
        hidden_size=width,
        intermediate_size=inter,
        projection_dim=int(proj_dim),
        num_hidden_layers=len(blocks),
        num_attention_heads=heads,
        max_position_embeddings=n_ctx,
        hidden_act=act,
        layer_norm_eps=eps,
        attention_dropout=0.0,
        **ids,
    )
    hf = transformers.CLIPTextModel(hf_cfg)
    sd: dict[str, torch.Tensor] = {
        "embeddings.token_embedding.weight": text.token_embedding.weight,
        "embeddings.position_embedding.weight": text.positional_embedding,
        "final_layer_norm.weight": text.ln_final.weight,
        "final_layer_norm.bias": text.ln_final.bias,
    }
    for i, blk in enumerate(blocks):
        p = f"encoder.layers.{i}."
        for suffix in ("weight", "bias"):
            q, k, v = getattr(blk.attn, f"in_proj_{suffix}").chunk(3, dim=0)
            sd.update({f"{p}self_attn.q_proj.{suffix}": q, f"{p}self_attn.k_proj.{suffix}": k})
            sd[f"{p}self_attn.v_proj.{suffix}"] = v
            sd[f"{p}layer_norm1.{suffix}"] = getattr(blk.ln_1, suffix)
            sd[f"{p}layer_norm2.{suffix}"] = getattr(blk.ln_2, suffix)
            sd[f"{p}mlp.fc1.{suffix}"] = getattr(blk.mlp.c_fc, suffix)
            for hf_name, linear, ls in (
                ("self_attn.out_proj", blk.attn.out_proj, blk.ls_1),
                ("mlp.fc2", blk.mlp.c_proj, blk.ls_2),
            ):
                tensor = getattr(linear, suffix)
                gamma = getattr(ls, "gamma", None)  # LayerScale: y = gamma * (W x + b)
                if gamma is not None:
                    tensor = tensor * (gamma[:, None] if suffix == "weight" else gamma)
                sd[f"{p}{hf_name}.{suffix}"] = tensor
    dtype = text.token_embedding.weight.dtype
    # transformers 5 dropped the ``text_model.`` wrapper inside CLIPTextModel; 4.x still has it
    prefix = "text_model." if any(k.startswith("text_model.") for k in hf.state_dict()) else ""
    sd = {prefix + k: t.detach().to(device="cpu", dtype=dtype).clone() for k, t in sd.items()}
    hf = hf.to(dtype)
    _load_into(hf, sd, "open_clip text tower")
    return hf.to(text.token_embedding.weight.device).eval()
