"""``noisyclip demo``, the main job: every world diffusion model through evaluate -> BoN -> leaderboard.

``noisyclip demo --out DIR`` runs a documented subset of the world benchmark (the first :data:`DEMO_PROMPTS` prompts,
stratified by template, 6 seeds each, sized to finish within 10 minutes on a 2-core CPU); ``--full`` runs all 400
prompts and adds the expensive ``clip-x0-decoded`` scorer. It writes::

    DIR/results/        the results store (resumable: rerun the same command after an interruption)
    DIR/images/<model>/ every candidate's final image and its x̂0 at 0.2 and 0.5 of the trajectory (``pictures``)
    DIR/leaderboard/    index.html, README.md + charts, leaderboard.json, leaderboard.csv, curves.csv
    DIR/demo.json       the settings, timings and where the report is
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from noisyclip_metrics.cli import COMMANDS
from noisyclip_metrics.cli.core import settings_command
from noisyclip_metrics.errors import InputError
from noisyclip_metrics.io.files import write_json

if TYPE_CHECKING:
    from noisyclip_metrics.leaderboard.build import BuildConfig

__all__ = [
    "DEMO_MODELS",
    "DEMO_PROMPTS",
    "PICTURE_FRACTIONS",
    "DemoConfig",
    "demo_scorers",
    "report_config",
    "run_demo",
]

#: Prompts of the default (quick) demo: the first prompts of the world benchmark, stratified by template.
DEMO_PROMPTS = 40
DEMO_MODELS = ("world:sd-small", "world:sd-base", "world:sd-large")
#: Fractions of the trajectory at which the demo saves each candidate's x̂0 (``DemoConfig.pictures``).
PICTURE_FRACTIONS = (0.2, 0.5)


@dataclass(frozen=True)
class DemoConfig:
    """Settings of the demo.

    Args:
        out: output folder.
        full: the whole benchmark split (400 prompts) and every scorer; as results meant for publishing, it refuses a
            fine-tuned scorer trained on its seeds or prompts, or without a record of them (``require_disjoint``).
        prompts: override the number of benchmark prompts.
        seeds: seeds (candidates) per prompt.
        models: world diffusion models to evaluate.
        batch_size: candidates per pipeline call.
        overwrite: allow an output folder that holds other files.
        progress: progress bars.
        pictures: save every candidate's final image and the VAE decode of its x̂0 at 0.2 and 0.5 of the
            trajectory, and show them in the leaderboard's per-prompt drill-down (embedded thumbnails; the
            world's images are 32 pixels a side). Default: on for the quick demo, off for ``full`` (whose page would
            carry 21,600 of them).
    """

    out: str = "runs/demo"
    full: bool = False
    prompts: int | None = None
    seeds: int = 6
    models: tuple[str, ...] = DEMO_MODELS
    batch_size: int = 60
    overwrite: bool = False
    progress: bool = True
    pictures: bool | None = None

    @property
    def with_pictures(self) -> bool:
        """Whether images are saved and shown (``pictures``, by default not with ``full``)."""
        return (not self.full) if self.pictures is None else self.pictures

    @property
    def n_prompts(self) -> int | None:
        """Prompts evaluated (``None`` = all)."""
        return self.prompts if self.prompts is not None else (None if self.full else DEMO_PROMPTS)

    @property
    def scorers(self) -> tuple[str, ...]:
        """Scorers recorded at every step."""
        return demo_scorers(self.full)


def demo_scorers(full: bool) -> tuple[str, ...]:
    """Every registered scorer (``full``), or those that are not expensive (the quick demo), in registration order.

    Examples:
        >>> demo_scorers(full=False)
        ('noisyclip', 'noisyclip-x0', 'clip', 'clip-x0', 'clip-final')
    """
    from noisyclip_metrics.scoring.scorers import list_scorers, scorer_spec

    return tuple(n for n in list_scorers() if full or not scorer_spec(n).expensive)


def _check_out(cfg: DemoConfig) -> Path:
    out = Path(cfg.out)
    if out.exists() and not out.is_dir():
        raise InputError(f"--out: {out} is a file; expected a folder")
    if out.is_dir() and any(out.iterdir()) and not cfg.overwrite:
        marker = out / "demo.json"
        previous = json.loads(marker.read_text(encoding="utf-8")).get("settings") if marker.is_file() else None
        mine = {k: v for k, v in _settings(cfg).items() if k not in ("overwrite", "progress")}
        if previous is None or {k: v for k, v in previous.items() if k not in ("overwrite", "progress")} != mine:
            raise InputError(
                f"--out: {out} exists with other content; choose a new folder or pass --overwrite "
                "(a folder from the same demo command is resumed)"
            )
    return out


def _settings(cfg: DemoConfig) -> dict[str, Any]:
    data = asdict(cfg)
    data["models"] = list(cfg.models)
    data.pop("out")
    return data


def report_config(n_prompts: int | None) -> BuildConfig:
    """The leaderboard settings of a demo over ``n_prompts`` benchmark prompts (``None``: the full split).

    Examples:
        >>> report_config(None).title
        'ShapesWorld leaderboard (full benchmark split)'
    """
    from noisyclip_metrics.leaderboard.build import BuildConfig

    what = "full benchmark split" if n_prompts is None else f"{n_prompts} benchmark prompts"
    return BuildConfig(title=f"ShapesWorld leaderboard ({what})", overwrite=True)


def run_demo(cfg: DemoConfig) -> Path:
    """Run the demo; returns the path of ``index.html``."""
    from noisyclip_metrics.bon.offline import compute_bon
    from noisyclip_metrics.evaluation.runner import EvalConfig, evaluate
    from noisyclip_metrics.leaderboard.build import build_leaderboard

    out = _check_out(cfg)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "demo.json", {"settings": _settings(cfg), "status": "running"})
    t0 = time.perf_counter()
    timings: dict[str, float] = {}
    pictures = {model.split(":")[-1]: out / "images" / model.split(":")[-1] for model in cfg.models}
    for model in cfg.models:
        ts = time.perf_counter()
        name = model.split(":")[-1]
        evaluate(
            EvalConfig(
                model=model,
                out=str(out / "results"),
                benchmark="world",
                prompts=cfg.n_prompts,
                seeds=tuple(range(cfg.seeds)),
                scorers=cfg.scorers,
                batch_size=cfg.batch_size,
                name=name,
                progress=cfg.progress,
                require_disjoint=cfg.full,
                save_images=str(pictures[name]) if cfg.with_pictures else None,
                save_previews=PICTURE_FRACTIONS if cfg.with_pictures else (),
            )
        )
        timings[f"evaluate {model}"] = round(time.perf_counter() - ts, 1)
    ts = time.perf_counter()
    compute_bon(out / "results")
    timings["bon"] = round(time.perf_counter() - ts, 1)
    ts = time.perf_counter()
    board = report_config(cfg.n_prompts)
    if cfg.with_pictures:
        board = replace(board, images=tuple(f"{name}={folder}" for name, folder in pictures.items()))
    result = build_leaderboard([out / "results"], out / "leaderboard", board)
    timings["leaderboard"] = round(time.perf_counter() - ts, 1)
    timings["total"] = round(time.perf_counter() - t0, 1)
    index = result.out / "index.html"
    write_json(
        out / "demo.json",
        {"settings": _settings(cfg), "status": "done", "seconds": timings, "report": index.relative_to(out).as_posix()},
    )
    return index


def _run(cfg: DemoConfig) -> int:
    print(f"report: {run_demo(cfg)}")
    return 0


COMMANDS.register(
    "demo",
    settings_command(
        "demo", "run the world benchmark for every world model: evaluate, BoN, leaderboard", DemoConfig, _run
    ),
)
