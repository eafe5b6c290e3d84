"""Core subcommands: ``train``, ``wise-ft``, ``capture``, ``score``, ``info``."""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import json
import sys
import types
import typing
from pathlib import Path
from typing import Any

from noisyclip_metrics.cli import COMMANDS, Command
from noisyclip_metrics.errors import InputError

__all__ = ["add_dataclass_arguments", "dataclass_from_args", "field_docs"]


def _field_type(annotation: Any) -> tuple[Any, bool, bool]:
    """(element type, is_sequence, is_optional) of a config field annotation (string annotations resolved)."""
    if isinstance(annotation, str):
        annotation = eval(annotation, {"tuple": tuple, "str": str, "int": int, "float": float, "bool": bool})
    optional = False
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        optional, annotation = True, args[0]
        origin = typing.get_origin(annotation)
    if origin is tuple:
        return typing.get_args(annotation)[0], True, optional
    return annotation, False, optional


def field_docs(cls: Any) -> dict[str, str]:
    """Each field's description from the ``Args:`` / ``Attributes:`` section of a dataclass's docstring.

    Examples:
        >>> from noisyclip_metrics.evaluation.runner import EvalConfig
        >>> field_docs(EvalConfig)["seeds"]
        'seeds per prompt (candidates).'
    """
    docs: dict[str, str] = {}
    lines = inspect.cleandoc(cls.__doc__ or "").splitlines()
    inside, indent, name = False, None, None
    for line in lines:
        if line.strip() in ("Args:", "Attributes:"):
            inside, indent, name = True, None, None
            continue
        if not inside:
            continue
        if not line.strip():
            name = None
            continue
        depth = len(line) - len(line.lstrip())
        if depth == 0:
            inside = False
            continue
        indent = depth if indent is None else indent
        head, sep, text = line.strip().partition(": ")
        if depth == indent and sep and head.isidentifier():
            name = head
            docs[name] = text.strip()
        elif name is not None:
            docs[name] += " " + line.strip()
    return docs


def add_dataclass_arguments(parser: argparse.ArgumentParser, cls: Any, required: tuple[str, ...] = ()) -> None:
    """One ``--flag`` per field of a config dataclass, described from its docstring (defaults are the dataclass's;
    ``--config`` JSON in between)."""
    parser.add_argument("--config", type=Path, help="JSON file of settings (command-line flags override it)")
    docs = field_docs(cls)
    for f in dataclasses.fields(cls):
        if f.name.isupper():
            continue
        kind, many, _ = _field_type(f.type)
        flag = "--" + f.name.replace("_", "-")
        default = None if f.default is dataclasses.MISSING else f.default
        help_text = f"(default: {default!r})" if f.name not in required else "(required)"
        if f.name in docs:
            help_text = f"{docs[f.name]} {help_text}".replace("``", "").replace("%", "%%")
        if kind is bool:
            parser.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=None, help=help_text)
        else:
            parser.add_argument(flag, dest=f.name, type=kind, nargs="+" if many else None, default=None, help=help_text)


def _check_config_value(f: dataclasses.Field, value: Any, path: Path) -> None:
    """A ``--config`` JSON value has the type of its field (``int``, ``float``, ``str``, ``bool``, a list of them)."""
    try:
        kind, many, optional = _field_type(f.type)
    except Exception:
        return
    if kind not in (int, float, str, bool) or (value is None and optional):
        return

    def ok(v: Any) -> bool:
        if kind is float:
            return isinstance(v, (int, float)) and not isinstance(v, bool)
        return isinstance(v, kind) and (kind is bool or not isinstance(v, bool))

    if not (all(map(ok, value)) if many and isinstance(value, list) else (not many and ok(value))):
        from noisyclip_metrics.io.jsonfile import type_name

        expected = f"a list of {kind.__name__}" if many else kind.__name__
        raise InputError(
            f"--config {path}: setting {f.name!r}: expected {expected}"
            f"{' or null' if optional else ''}, found {type_name(value)}"
        )


def dataclass_from_args(cls: Any, args: argparse.Namespace, required: tuple[str, ...] = ()) -> Any:
    """Build ``cls`` with precedence command line > ``--config`` JSON > dataclass defaults."""
    values: dict[str, Any] = {}
    if getattr(args, "config", None) is not None:
        from noisyclip_metrics.io.jsonfile import read_json_file

        values = read_json_file(args.config, "--config file", InputError)  # missing, not UTF-8, not JSON, too deep
        if not isinstance(values, dict):
            raise InputError(f"--config: {args.config} must hold a JSON object")
    names = {f.name for f in dataclasses.fields(cls) if not f.name.isupper()}
    unknown = sorted(set(values) - names)
    if unknown:
        raise InputError(f"--config: unknown settings {unknown}")
    for f in dataclasses.fields(cls):
        if f.name in values:
            _check_config_value(f, values[f.name], args.config)
    for name in names:
        value = getattr(args, name, None)
        if value is not None:
            values[name] = tuple(value) if isinstance(value, list) else value
    missing = [n for n in required if values.get(n) in (None, ())]
    if missing:
        raise InputError(f"missing required settings: {', '.join('--' + m.replace('_', '-') for m in missing)}")
    return cls(**values)


# ------------------------------------------------------------------------------------------------------------- train
_TRAIN_REQUIRED = ("init", "trajectories", "out_dir")


def _configure_train(p: argparse.ArgumentParser) -> None:
    from noisyclip_metrics.training.trainer import TrainConfig

    add_dataclass_arguments(p, TrainConfig, _TRAIN_REQUIRED)
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.epilog = "Runs under torchrun for DDP: torchrun --nproc-per-node=2 -m noisyclip_metrics.cli train ..."


def _run_train(args: argparse.Namespace) -> int:
    from noisyclip_metrics.training.trainer import TrainConfig, train

    result = train(dataclass_from_args(TrainConfig, args, _TRAIN_REQUIRED), progress=not args.no_progress)
    if result is not None:
        print(f"model: {result.out_dir / 'model'}")
        for row in result.evaluation:
            print(
                f"step {row['step']:>4} ({row['fraction']:.2f}): recall@1 {row['recall@1']:.3f}  "
                f"recall@5 {row['recall@5']:.3f}  pairwise {row['pairwise_accuracy']:.3f}"
            )
    return 0


COMMANDS.register(
    "train", Command("train", "fine-tune a CLIP image tower on noisy trajectory latents", _configure_train, _run_train)
)


# ----------------------------------------------------------------------------------------------------------- wise-ft
def _configure_wise_ft(p: argparse.ArgumentParser) -> None:
    p.add_argument("--finetuned", required=True, help="the fine-tuned NoisyCLIP (folder or registered id)")
    p.add_argument("--base", required=True, help="the CLIP it was fine-tuned from (folder or registered id)")
    p.add_argument("--alpha", required=True, type=float, help="weight of the fine-tuned image tower, in [0, 1]")
    p.add_argument("--out", required=True, type=Path, help="checkpoint folder to write (replaced atomically)")


def _run_wise_ft(args: argparse.Namespace) -> int:
    from noisyclip_metrics.training.wise import interpolate_image_tower

    model = interpolate_image_tower(args.finetuned, args.base, args.alpha)
    print(f"model: {model.save_pretrained(args.out)}")
    return 0


COMMANDS.register(
    "wise-ft",
    Command(
        "wise-ft",
        "interpolate a fine-tuned image tower with the CLIP it started from (WiSE-FT)",
        _configure_wise_ft,
        _run_wise_ft,
    ),
)


# ----------------------------------------------------------------------------------------------------------- capture
def _configure_capture(p: argparse.ArgumentParser) -> None:
    p.add_argument("--pipeline", required=True, help="diffusers pipeline folder (or a registered model id)")
    p.add_argument("--prompts", required=True, type=Path, help="text file, one prompt per line")
    p.add_argument("--seeds", type=int, nargs="+", default=[0], help="seeds per prompt")
    p.add_argument("--steps", type=int, default=20, help="denoising steps T")
    p.add_argument("--guidance-scale", type=float, default=None)
    p.add_argument("--height", type=int, default=None)
    p.add_argument("--width", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--device", default=None, help="torch device of the pipeline (cpu, cuda, cuda:1...)")
    p.add_argument("--dtype", default=None, help="pipeline dtype: float32, float16 or bfloat16")
    p.add_argument("--out", required=True, type=Path, help="trajectory store folder (created, or resumed)")


def _run_capture(args: argparse.Namespace) -> int:
    from noisyclip_metrics.diffusion.pipelines import load_pipeline
    from noisyclip_metrics.diffusion.trajectory_store import record_trajectories
    from noisyclip_metrics.io.files import read_prompt_file

    prompts = read_prompt_file(args.prompts)
    pipe = load_pipeline(args.pipeline, args.device, args.dtype)
    store = record_trajectories(
        pipe,
        args.out,
        prompts,
        args.seeds,
        batch_size=args.batch_size,
        num_inference_steps=args.steps,
        guidance_scale=args.guidance_scale,
        height=args.height,
        width=args.width,
    )
    print(f"{len(store)} trajectories in {store.root}")
    return 0


COMMANDS.register(
    "capture", Command("capture", "record the trajectories of a diffusers pipeline", _configure_capture, _run_capture)
)


# ------------------------------------------------------------------------------------------------------------- score
def _configure_score(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="NoisyCLIP checkpoint folder or model id")
    p.add_argument("--trajectories", required=True, type=Path, help="trajectory store folder")
    from noisyclip_metrics.scoring.scorers import list_scorers, scorer_spec

    choices = [n for n in list_scorers() if not scorer_spec(n).needs_vae]  # a trajectory store holds no VAE
    p.add_argument("--scorer", default="noisyclip", choices=choices)
    p.add_argument("--steps", type=int, nargs="+", default=None, help="step indices (default: every step)")


def _run_score(args: argparse.Namespace) -> int:
    import torch

    from noisyclip_metrics.diffusion.trajectory_store import TrajectoryStore
    from noisyclip_metrics.scoring.factory import resolve_model
    from noisyclip_metrics.scoring.scorers import ScoreInputs, build_scorer

    store = TrajectoryStore.open(args.trajectories)
    scorer = build_scorer(args.scorer, model=resolve_model(args.model))
    steps = args.steps if args.steps is not None else list(range(store.num_steps + 1))
    bad = [k for k in steps if not 0 <= k <= store.num_steps]
    if bad:
        raise InputError(f"--steps: {bad} outside 0..{store.num_steps}")
    for recs, t in store.iter_shards():
        prompts = [r.prompt for r in recs]
        for k in steps:
            inputs = ScoreInputs(
                prompts=prompts,
                latents=t["latents"][:, k],
                x0=t["x0"][:, k],
                images=t["images"],
                latent_scale=t["latent_scale"][k].expand(len(recs)),
                step=k,
            )
            with torch.no_grad():
                scores = scorer.score(inputs).tolist()
            for rec, s in zip(recs, scores):
                print(
                    json.dumps(
                        {"prompt_id": rec.prompt_id, "seed": rec.seed, "step": k, "scorer": args.scorer, "score": s}
                    )
                )
    return 0


COMMANDS.register(
    "score", Command("score", "score stored trajectories step by step (JSON lines)", _configure_score, _run_score)
)


# -------------------------------------------------------------------------------------------------------------- info
def _run_info(args: argparse.Namespace) -> int:
    from noisyclip_metrics.diffusion.trajectory import PIPELINE_FAMILIES
    from noisyclip_metrics.plugins import load_plugins, registered_ids
    from noisyclip_metrics.scoring.preview import list_preview_maps
    from noisyclip_metrics.scoring.scorers import list_scorers
    from noisyclip_metrics.training.steps import STEP_STRATEGIES
    from noisyclip_metrics.training.targets import TARGETS

    rows = {
        "plugins": list(load_plugins()),
        "model ids": registered_ids(),
        "scorers": list_scorers(),
        "preview maps": list_preview_maps(),
        "pipeline families": PIPELINE_FAMILIES.names(),
        "training targets": TARGETS.names(),
        "step sampling": STEP_STRATEGIES.names(),
        "commands": COMMANDS.names(),
    }
    for name, values in rows.items():
        sys.stdout.write(f"{name + ':':<20}{', '.join(values)}\n")
    return 0


COMMANDS.register(
    "info", Command("info", "list the registered scorers, preview maps, pipelines and more", lambda p: None, _run_info)
)
