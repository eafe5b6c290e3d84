"""Core subcommands: ``train``, ``wise-ft``, ``capture``, ``score``, ``info``."""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import re
import sys
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from noisyclip_metrics.cli import COMMANDS, Command
from noisyclip_metrics.errors import InputError

__all__ = ["add_dataclass_arguments", "dataclass_from_args", "field_docs", "read_config_file", "settings_command"]


def _field_type(hint: Any) -> tuple[Any, bool, bool]:
    """(element type, is_sequence, is_optional) of a config field's resolved type hint."""
    optional = False
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        optional, hint = True, args[0]
        origin = typing.get_origin(hint)
    if origin is tuple:
        return typing.get_args(hint)[0], True, optional
    return hint, False, optional


def _fields(cls: Any) -> list[tuple[dataclasses.Field, Any]]:
    """The settings of a config dataclass (upper-case names are constants) with their resolved type hints."""
    hints = typing.get_type_hints(cls)
    return [(f, hints[f.name]) for f in dataclasses.fields(cls) if not f.name.isupper()]


def field_docs(cls: Any) -> dict[str, str]:
    """Each field's description from the ``Args:`` / ``Attributes:`` section of a dataclass's docstring (read by
    ``docstring_parser``, the parser ``jsonargparse`` uses).

    Examples:
        >>> from noisyclip_metrics.evaluation.runner import EvalConfig
        >>> field_docs(EvalConfig)["seeds"]
        'seeds per prompt (candidates).'
    """
    import docstring_parser

    parsed = docstring_parser.parse(cls.__doc__ or "")
    return {p.arg_name: " ".join(p.description.split()) for p in parsed.params if p.description}


def _required(cls: Any, required: tuple[str, ...]) -> tuple[str, ...]:
    """``required`` and every field without a default, in that order."""
    missing = [f.name for f, _ in _fields(cls) if f.default is f.default_factory is dataclasses.MISSING]
    return tuple(dict.fromkeys((*required, *missing)))


def add_dataclass_arguments(parser: argparse.ArgumentParser, cls: Any, required: tuple[str, ...] = ()) -> None:
    """One ``--flag`` per field of a config dataclass, typed by its annotation and described from its docstring
    (defaults are the dataclass's; a ``--config`` JSON or YAML file in between). A ``Literal[...]`` field's values
    are the flag's choices; a boolean field gets ``--flag`` / ``--no-flag``. Fields without a default are required,
    and so are those named in ``required``."""
    required = _required(cls, required)
    parser.add_argument("--config", type=Path, help="JSON or YAML file of settings (command-line flags override it)")
    docs = field_docs(cls)
    for f, hint in _fields(cls):
        kind, many, _ = _field_type(hint)
        flag = "--" + f.name.replace("_", "-")
        default = None if f.default is dataclasses.MISSING else f.default
        help_text = "(required)" if f.name in required else "" if default is None else f"(default: {default!r})"
        if f.name in docs:
            help_text = f"{docs[f.name]} {help_text}".strip().replace("``", "").replace("%", "%%")
        if kind is bool:
            parser.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=None, help=help_text)
        elif typing.get_origin(kind) is typing.Literal:
            choices = typing.get_args(kind)
            parser.add_argument(flag, dest=f.name, choices=choices, type=type(choices[0]), default=None, help=help_text)
        else:
            parser.add_argument(flag, dest=f.name, type=kind, nargs="+" if many else None, default=None, help=help_text)


def settings_command(name: str, help: str, cls: Any, run: Callable[[Any], int], epilog: str | None = None) -> Command:
    """A subcommand whose settings are the frozen dataclass ``cls``: its flags come from the fields
    (:func:`add_dataclass_arguments`, with ``--config FILE``; fields without a default are required), and ``run``
    receives the built dataclass."""

    def configure(p: argparse.ArgumentParser) -> None:
        add_dataclass_arguments(p, cls)
        p.epilog = epilog

    return Command(name, help, configure, lambda args: run(dataclass_from_args(cls, args)))


def read_config_file(path: Path) -> dict[str, Any]:
    """The settings of a ``--config`` file: a JSON object, or a YAML mapping for ``.yaml`` / ``.yml``.

    Raises:
        InputError: for a missing or unreadable file, bad JSON or YAML, or anything but an object of settings.
    """
    if path.suffix.lower() in (".yaml", ".yml"):
        import yaml

        try:
            values = yaml.safe_load(path.read_text(encoding="utf-8"))
        except OSError as err:
            raise InputError(f"--config: cannot read {path} ({err.strerror or err})") from None
        except (UnicodeDecodeError, yaml.YAMLError, RecursionError) as err:
            raise InputError(f"--config: {path} is not valid YAML ({' '.join(str(err).split())[:200]})") from None
    else:
        from noisyclip_metrics.io.jsonfile import read_json_file

        values = read_json_file(path, "--config file", InputError)  # missing, not UTF-8, not JSON, too deep
    if not isinstance(values, dict):
        raise InputError(f"--config: {path} must hold an object of settings")
    return values


@functools.cache
def _config_parser(cls: Any) -> Any:
    """A ``jsonargparse`` parser of ``cls``'s settings under the key ``config``: it type-checks a dict of settings
    (from a file and the flags) and builds the frozen dataclass."""
    import jsonargparse

    parser = jsonargparse.ArgumentParser(exit_on_error=False)
    parser.add_class_arguments(cls, "config")
    return parser


def _settings_error(err: Exception, source: str) -> InputError:
    """jsonargparse's ``Parser key "config.seeds": Expected a <class 'int'>. Got value: x`` as one line."""
    text = " ".join(str(err).split())
    text = re.sub(r"<class '([\w.]+)'>", r"\1", text)
    union = re.search(r"Subtypes: \[(.*?)\].*Given value type: (\w+) Given value: (.*)$", text)
    if union:  # "expected float or NoneType" instead of every subtype's own error
        kinds = " or ".join(k.strip().replace("NoneType", "null") for k in union.group(1).split(","))
        text = text[: text.index("Does not validate")] + f"expected {kinds}, got {union.group(2)} {union.group(3)}"
    key = re.match(r'Parser key "config\.(\w+)": ', text)
    if key:
        return InputError(f"{source}: setting {key.group(1)!r}: {text[key.end() :]}")
    return InputError(f"{source}: {text}")


def dataclass_from_args(cls: Any, args: argparse.Namespace, required: tuple[str, ...] = ()) -> Any:
    """Build ``cls`` with precedence command line > ``--config`` file > dataclass defaults; the values are
    type-checked and the dataclass built by ``jsonargparse``.

    Raises:
        InputError: for an unreadable config file, an unknown setting, a missing required one or a value of the
            wrong type (one line naming the setting).
    """
    values: dict[str, Any] = {}
    config = getattr(args, "config", None)
    if config is not None:
        values = read_config_file(config)
    names = {f.name for f, _ in _fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise InputError(f"--config: unknown settings {unknown}")
    for name in names:
        value = getattr(args, name, None)
        if value is not None:
            values[name] = tuple(value) if isinstance(value, list) else value
    missing = [n for n in _required(cls, required) if values.get(n) in (None, ())]
    if missing:
        raise InputError(f"missing required settings: {', '.join('--' + m.replace('_', '-') for m in missing)}")
    import jsonargparse

    parser = _config_parser(cls)
    try:
        return parser.instantiate(parser.parse_object({"config": values})).config
    except jsonargparse.ArgumentError as err:
        raise _settings_error(err, f"--config {config}" if config is not None else "settings") from None


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
@dataclass(frozen=True)
class WiseSettings:
    """Settings of ``noisyclip wise-ft``.

    Args:
        finetuned: the fine-tuned NoisyCLIP (folder or registered id).
        base: the CLIP it was fine-tuned from (folder or registered id).
        alpha: weight of the fine-tuned image tower, in [0, 1].
        out: checkpoint folder to write (replaced atomically).
    """

    finetuned: str
    base: str
    alpha: float
    out: Path


def _run_wise_ft(args: WiseSettings) -> int:
    from noisyclip_metrics.training.wise import interpolate_image_tower

    model = interpolate_image_tower(args.finetuned, args.base, args.alpha)
    print(f"model: {model.save_pretrained(args.out)}")
    return 0


COMMANDS.register(
    "wise-ft",
    settings_command(
        "wise-ft",
        "interpolate a fine-tuned image tower with the CLIP it started from (WiSE-FT)",
        WiseSettings,
        _run_wise_ft,
    ),
)


# ----------------------------------------------------------------------------------------------------------- capture
@dataclass(frozen=True)
class CaptureSettings:
    """Settings of ``noisyclip capture``.

    Args:
        pipeline: diffusers pipeline folder (or a registered model id).
        prompts: text file, one prompt per line.
        out: trajectory store folder (created, or resumed).
        seeds: seeds per prompt.
        steps: denoising steps T.
        guidance_scale: classifier-free guidance scale (default: the pipeline's).
        height: image height (default: the pipeline's).
        width: image width (default: the pipeline's).
        batch_size: candidates per pipeline call.
        device: torch device of the pipeline (cpu, cuda, cuda:1...).
        dtype: pipeline dtype: float32, float16 or bfloat16.
    """

    pipeline: str
    prompts: Path
    out: Path
    seeds: tuple[int, ...] = (0,)
    steps: int = 20
    guidance_scale: float | None = None
    height: int | None = None
    width: int | None = None
    batch_size: int = 8
    device: str | None = None
    dtype: str | None = None


def _run_capture(args: CaptureSettings) -> int:
    from noisyclip_metrics.diffusion.pipelines import load_pipeline
    from noisyclip_metrics.diffusion.trajectory_store import record_trajectories
    from noisyclip_metrics.io.files import read_prompt_file

    prompts = read_prompt_file(args.prompts)
    pipe = load_pipeline(args.pipeline, args.device, args.dtype)
    store = record_trajectories(
        pipe,
        args.out,
        prompts,
        list(args.seeds),
        batch_size=args.batch_size,
        num_inference_steps=args.steps,
        guidance_scale=args.guidance_scale,
        height=args.height,
        width=args.width,
    )
    print(f"{len(store)} trajectories in {store.root}")
    return 0


COMMANDS.register(
    "capture",
    settings_command(
        "capture",
        "record the trajectories of a diffusers pipeline",
        CaptureSettings,
        _run_capture,
    ),
)


# ------------------------------------------------------------------------------------------------------------- score
@dataclass(frozen=True)
class ScoreSettings:
    """Settings of ``noisyclip score``.

    Args:
        model: NoisyCLIP checkpoint folder or model id.
        trajectories: trajectory store folder.
        scorer: a scorer that reads what a trajectory store holds (``noisyclip info`` lists them; scorers that
            decode with a VAE do not apply).
        steps: step indices (default: every step).
    """

    model: str
    trajectories: Path
    scorer: str = "noisyclip"
    steps: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        from noisyclip_metrics.scoring.scorers import list_scorers, scorer_spec

        choices = [n for n in list_scorers() if not scorer_spec(n).needs_vae]  # a trajectory store holds no VAE
        if self.scorer not in choices:
            raise InputError(f"--scorer: expected one of {', '.join(choices)}, got {self.scorer!r}")


def _run_score(args: ScoreSettings) -> int:
    import torch

    from noisyclip_metrics.diffusion.trajectory_store import TrajectoryStore
    from noisyclip_metrics.scoring.factory import resolve_model
    from noisyclip_metrics.scoring.scorers import ScoreInputs, build_scorer

    store = TrajectoryStore.open(args.trajectories)
    model = resolve_model(args.model)
    scorer = build_scorer(args.scorer, model=model)
    levels = store.noise_std() if model.config.noise_conditioned else None  # read only where a tower needs them
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
                noise_std=None if levels is None else float(levels[k]),
            )
            with torch.no_grad():
                scores = scorer.score(inputs).tolist()
            for rec, s in zip(recs, scores, strict=True):
                print(
                    json.dumps(
                        {"prompt_id": rec.prompt_id, "seed": rec.seed, "step": k, "scorer": args.scorer, "score": s}
                    )
                )
    return 0


COMMANDS.register(
    "score",
    settings_command(
        "score",
        "score stored trajectories step by step (JSON lines)",
        ScoreSettings,
        _run_score,
    ),
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
