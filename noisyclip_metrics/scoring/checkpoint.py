"""Checkpoint folders: their format, writing them (``save_pretrained``), safe weight loading and shared text towers;
:func:`noisyclip_metrics.scoring.model.load_pretrained` builds a model from one (and imports Hugging Face CLIPs).

A checkpoint folder holds:

* ``config.json``: ``{"format": "noisyclip-metrics", "format_version": 1, "config": <NoisyCLIPConfig>,
  "preview": {"name", "packed", "r2"}}``;
* ``model.safetensors``: the open_clip weights under ``clip.`` and the preview map (``preview.weight`` (3, C),
  ``preview.bias`` (3,));
* ``tokenizer/`` (``vocab.json``, ``merges.txt``) when the model uses its own BPE files.

NoisyCLIP fine-tunes only the image tower, so a fine-tuned checkpoint may leave its text tower in the CLIP it started
from: :func:`share_text_tower` removes the text weights from ``model.safetensors`` and records
``"text_from": <relative path>`` and ``"text_sha256"`` in ``config.json``; loading reads them back from that folder
and refuses a text tower whose hash differs.

A folder whose ``config.json`` says ``"model_type": "clip"`` is a Hugging Face ``transformers`` ``CLIPModel`` (the
format of the official NoisyCLIP release); it is converted to open_clip on load and paired with a preview map
(``"sdxl"`` by default, the map the official model was trained with).

Nothing here unpickles arbitrary objects: weights come from safetensors, or from ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file

from noisyclip_metrics.errors import CheckpointError
from noisyclip_metrics.io.files import new_dir_mode, save_safetensors

if TYPE_CHECKING:
    from noisyclip_metrics.scoring.model import NoisyCLIPModel

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "load_state_dict_file",
    "save_pretrained",
    "share_text_tower",
    "text_tower_sha256",
]

FORMAT = "noisyclip-metrics"
FORMAT_VERSION = 1
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
#: Key prefix of a noise-conditioned model's noise embedding in ``model.safetensors``.
NOISE_PREFIX = "noise_embedding."
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")


def load_state_dict_file(path: str | Path) -> dict[str, torch.Tensor]:
    """Load a state dict from ``.safetensors``, or from a torch file with ``weights_only=True`` (never full pickle).

    A ``{"state_dict": ...}`` wrapper and DDP's ``module.`` prefixes are unwrapped.

    Raises:
        CheckpointError: if the file is missing or holds anything but tensors.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: weight file not found")
    if path.suffix == ".safetensors":
        try:
            return load_file(str(path))
        except Exception as err:  # safetensors raises its own error types for corrupt headers
            raise CheckpointError(f"{path}: not a valid safetensors file ({err})") from None
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as err:
        raise CheckpointError(
            f"{path}: refused to load: it is not a plain tensor checkpoint loadable with weights_only=True "
            f"({type(err).__name__}); convert it to .safetensors"
        ) from None
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{path}: expected a mapping of parameter names to tensors")
    return {k.removeprefix("module."): v for k, v in obj.items()}


def _atomic_dir_write(path: Path, write: Any) -> Path:
    """Write a folder's content into a temporary sibling, then swap it in (no half-written checkpoints)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        tmp.chmod(new_dir_mode())  # mkdtemp makes it private; a checkpoint gets the mode the umask gives
        write(tmp)
        if path.exists():
            old = path.with_name(f".{path.name}.old-{os.getpid()}")
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return path


def _is_text_key(key: str) -> bool:
    return key.startswith("clip.") and not key.startswith("clip.visual.")


def text_tower_sha256(tensors: dict[str, torch.Tensor]) -> str:
    """Hash of the text-tower tensors (every ``clip.`` key outside ``clip.visual.``: names, dtypes, shapes, bytes)."""
    import hashlib

    digest = hashlib.sha256()
    for key in sorted(k for k in tensors if _is_text_key(k)):
        t = tensors[key].detach().cpu().contiguous()
        digest.update(f"{key}|{t.dtype}|{tuple(t.shape)}|".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


def share_text_tower(folder: str | Path, base: str | Path) -> Path:
    """Drop the text tower from checkpoint ``folder`` and point it at the identical one in checkpoint ``base``.

    Raises:
        CheckpointError: if either folder is not a checkpoint, or the two text towers differ in any tensor.
    """
    folder, base = Path(folder), Path(base)
    meta, base_meta = _read_config(folder), _read_config(base)
    if "text_from" in base_meta:
        raise CheckpointError(f"{base}: itself takes its text tower from {base_meta['text_from']}; point at that one")
    if "text_from" in meta:
        raise CheckpointError(f"{folder}: already takes its text tower from {meta['text_from']}")
    tensors = load_state_dict_file(folder / WEIGHTS_NAME)
    base_tensors = load_state_dict_file(base / WEIGHTS_NAME)
    ours = {k for k in tensors if _is_text_key(k)}
    theirs = {k for k in base_tensors if _is_text_key(k)}
    differ = sorted(ours ^ theirs) or sorted(k for k in ours if not torch.equal(tensors[k], base_tensors[k]))
    if differ:
        raise CheckpointError(f"{folder}: its text tower differs from the one in {base} (e.g. {differ[0]!r})")
    with safe_open(str(folder / WEIGHTS_NAME), framework="pt") as f:
        file_meta = f.metadata() or {}
    kept = {k: v for k, v in tensors.items() if k not in ours}
    meta["text_from"] = os.path.relpath(base.resolve(), folder.resolve())
    meta["text_sha256"] = text_tower_sha256(base_tensors)
    tmp = folder / f".{WEIGHTS_NAME}.tmp"
    save_safetensors(kept, tmp, metadata=file_meta)
    os.replace(tmp, folder / WEIGHTS_NAME)
    (folder / CONFIG_NAME).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return folder


def _load_text_tower(folder: Path, meta: dict[str, Any]) -> dict[str, torch.Tensor]:
    base = (folder / str(meta["text_from"])).resolve()
    weights = base / WEIGHTS_NAME
    if not weights.is_file():
        raise CheckpointError(f"{folder}: takes its text tower from {base}, whose {WEIGHTS_NAME} is missing")
    tensors = load_state_dict_file(weights)
    if text_tower_sha256(tensors) != meta.get("text_sha256"):
        raise CheckpointError(
            f"{folder}: the text tower in {base} is not the one this checkpoint was trained with (text_sha256 differs)"
        )
    return {k: v for k, v in tensors.items() if _is_text_key(k)}


def save_pretrained(model: NoisyCLIPModel, path: str | Path) -> Path:
    """Write ``model`` to the folder ``path`` (created or replaced atomically) and return it."""

    def write(tmp: Path) -> None:
        preview = model.preview
        tensors = {f"clip.{k}": v.detach().cpu().contiguous() for k, v in model.clip.state_dict().items()}
        tensors.update({k: v.contiguous() for k, v in preview.to_dict().items()})
        if model.noise_embedding is not None:
            state = model.noise_embedding.state_dict()
            tensors.update({f"{NOISE_PREFIX}{k}": v.detach().cpu().contiguous() for k, v in state.items()})
        save_safetensors(tensors, tmp / WEIGHTS_NAME, metadata={"format": FORMAT, **preview.metadata()})
        meta = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "config": model.config.to_json(),
            "preview": {"name": preview.name, "packed": preview.packed, "r2": preview.r2},
        }
        (tmp / CONFIG_NAME).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        if model.config.tokenizer.get("type") == "bpe":
            src = Path(model.tokenizer.folder)
            dst = tmp / model.config.tokenizer.get("subdir", "tokenizer")
            dst.mkdir()
            for name in ("vocab.json", "merges.txt"):
                shutil.copyfile(src / name, dst / name)

    return _atomic_dir_write(Path(path), write)


def _read_config(folder: Path) -> dict[str, Any]:
    if not folder.is_dir():
        raise CheckpointError(f"{folder}: checkpoint folder not found")
    cfg_path = folder / CONFIG_NAME
    if not cfg_path.is_file():
        raise CheckpointError(f"{cfg_path}: missing; a checkpoint folder needs {CONFIG_NAME} and {WEIGHTS_NAME}")
    from noisyclip_metrics.io.jsonfile import read_json_file, type_name

    meta = read_json_file(cfg_path, "checkpoint config", CheckpointError)
    if not isinstance(meta, dict):
        raise CheckpointError(
            f'{cfg_path}: expected a JSON object ({{"format": ..., "config": ...}}), found {type_name(meta)}'
        )
    return meta
