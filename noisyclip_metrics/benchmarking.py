"""What the scripts in ``benchmarks/``, ``experiments/`` and ``tools/`` share: timing, their common flags, Markdown
tables, a :class:`Report` that prints a study's results and keeps them as a JSON document (a results page is rendered
from it), and Stable Diffusion 1.5-sized models with random weights for measuring cost at real size.

Examples:
    >>> parser = script_parser("A benchmark.", device=True, repeats=3)
    >>> args = parser.parse_args(["--repeats", "2"])
    >>> args.device, args.repeats, args.threads
    ('cpu', 2, 0)
    >>> seconds = timed(lambda: sum(range(100)), repeats=args.repeats)
    >>> seconds >= 0
    True
    >>> print(markdown_table(["op", "seconds"], [["sum", 0.5]], floats="{:.2f}"))
    | op | seconds |
    |---|---:|
    | sum | 0.50 |
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

__all__ = [
    "REPORT_SCHEMA",
    "Report",
    "apply_threads",
    "device_name",
    "device_sync",
    "markdown_table",
    "script_parser",
    "sd15_unet",
    "sd15_vae",
    "timed",
]


def script_parser(
    description: str | None, *, device: bool = False, repeats: int | None = None, threads: bool = True
) -> argparse.ArgumentParser:
    """An argument parser with the flags every script spells the same way: ``--threads N`` (torch threads, 0 = the
    default), and on request ``--device`` (default ``cpu``), ``--dtype`` and ``--repeats`` (default ``repeats``).
    The description is printed verbatim, so a module docstring keeps its layout."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    if threads:
        parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = the default)")
    if device:
        parser.add_argument("--device", default="cpu", help="torch device (cpu, cuda, cuda:1...)")
        parser.add_argument("--dtype", default="float32", help="float32, float16 or bfloat16")
    if repeats is not None:
        parser.add_argument("--repeats", type=int, default=repeats, help="timed repeats after one warm-up")
    return parser


def apply_threads(args: argparse.Namespace) -> None:
    """Set torch's thread count from ``--threads`` (0 leaves the default)."""
    if getattr(args, "threads", 0):
        torch.set_num_threads(args.threads)


def device_sync(device: torch.device | str | None) -> Callable[[], None]:
    """A function that waits for ``device`` (a no-op on the CPU): timings of GPU work must end with it."""
    device = torch.device(device) if device is not None else torch.device("cpu")
    if device.type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    return lambda: None


def device_name(device: torch.device | str | None) -> str:
    """``"NVIDIA H100 ..."`` or ``"CPU, 2 threads"``: where a table was measured, for its caption."""
    device = torch.device(device) if device is not None else torch.device("cpu")
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU, {torch.get_num_threads()} threads"


def timed(fn: Callable[[], object], repeats: int = 3, sync: Callable[[], None] = lambda: None) -> float:
    """Median seconds of ``repeats`` calls of ``fn`` after one warm-up call; ``sync`` runs after each call (see
    :func:`device_sync`)."""
    if repeats < 1:
        raise ValueError(f"repeats: expected >= 1, got {repeats}")
    fn()
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]], floats: str = "{:.4f}") -> str:
    """A Markdown table; the first column is left-aligned, the others right-aligned; floats formatted with
    ``floats``."""
    lines = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
    for row in rows:
        cells = [floats.format(c) if isinstance(c, float) else str(c) for c in row]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


REPORT_SCHEMA = "noisyclip-report"


def _cell(value: Any) -> Any:
    """A table cell as JSON: an estimate with an interval (anything with ``value``, ``low``, ``high``) as a dict,
    numbers and text as they are."""
    if all(hasattr(value, k) for k in ("value", "low", "high")):
        return {"value": float(value.value), "low": float(value.low), "high": float(value.high)}
    if isinstance(value, (bool, int, float, str)) or value is None:
        return value
    return str(value)


def _cell_text(value: Any) -> str:
    if isinstance(value, dict):
        return f"{value['value']:.3f} [{value['low']:.3f}, {value['high']:.3f}]"
    if isinstance(value, float):
        return f"{value:.3f}"
    return "-" if value is None else str(value)


@dataclass
class Report:
    """A study's results as Markdown blocks (headings, paragraphs, tables), printed as they are added and kept for
    :meth:`save`: a JSON document from which :meth:`load` and :meth:`markdown` give the same page again, so a results
    page is regenerated from committed data instead of typed. Table cells are text, numbers (printed with 3 decimals)
    or estimates with an interval (printed ``value [low, high]``).

    Examples:
        >>> from noisyclip_metrics.evaluation.stats import Estimate
        >>> report = Report("A study", "python experiments/study.py", echo=False)
        >>> report.text("What was measured.")
        >>> report.table(["scope", "Pearson"], [["all", Estimate(0.6861, 0.668, 0.704, 0.95)], ["mean", 0.5]])
        >>> print(report.markdown())
        # A study
        <BLANKLINE>
        What was measured.
        <BLANKLINE>
        | scope | Pearson |
        |---|---:|
        | all | 0.686 [0.668, 0.704] |
        | mean | 0.500 |
        <BLANKLINE>
        >>> Report.load(report.to_json()).markdown() == report.markdown()
        True
    """

    title: str
    command: str
    echo: bool = True
    blocks: list[dict[str, Any]] = field(default_factory=list)

    def _add(self, block: dict[str, Any]) -> None:
        self.blocks.append(block)
        if self.echo:
            print(self._render(block), flush=True)

    def heading(self, text: str, level: int = 2) -> None:
        self._add({"heading": text, "level": level})

    def text(self, text: str) -> None:
        self._add({"text": text})

    def table(self, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        self._add({"header": list(header), "rows": [[_cell(c) for c in r] for r in rows]})

    @staticmethod
    def _render(block: dict[str, Any]) -> str:
        if "heading" in block:
            return "#" * block["level"] + " " + block["heading"] + "\n"
        if "text" in block:
            return block["text"] + "\n"
        return markdown_table(block["header"], [[_cell_text(c) for c in r] for r in block["rows"]]) + "\n"

    def markdown(self) -> str:
        """The whole report as one Markdown page (its title as the first heading)."""
        return "\n".join([f"# {self.title}\n", *(self._render(b) for b in self.blocks)])

    def to_json(self) -> dict[str, Any]:
        return {"schema": REPORT_SCHEMA, "title": self.title, "command": self.command, "blocks": self.blocks}

    def save(self, path: str | Path) -> Path:
        """Write the JSON document."""
        path = Path(path)
        path.write_text(json.dumps(self.to_json(), indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        return path

    @classmethod
    def load(cls, doc: dict[str, Any]) -> Report:
        """A report from :meth:`to_json`'s document (not echoed)."""
        if doc.get("schema") != REPORT_SCHEMA:
            raise ValueError(f"not a {REPORT_SCHEMA} document: schema {doc.get('schema')!r}")
        return cls(doc["title"], doc["command"], echo=False, blocks=list(doc["blocks"]))


def sd15_unet() -> torch.nn.Module:
    """The Stable Diffusion 1.5 ``UNet2DConditionModel`` architecture with random weights (blocks
    320/640/1280/1280, cross-attention 768; 860 M parameters)."""
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        sample_size=64,
        in_channels=4,
        out_channels=4,
        layers_per_block=2,
        block_out_channels=(320, 640, 1280, 1280),
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=768,
        attention_head_dim=8,
    ).eval()


def sd15_vae() -> torch.nn.Module:
    """The Stable Diffusion 1.5 ``AutoencoderKL`` architecture with random weights (blocks 128/256/512/512, 4 latent
    channels; 84 M parameters)."""
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        block_out_channels=(128, 256, 512, 512),
        layers_per_block=2,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        sample_size=512,
        scaling_factor=0.18215,
    ).eval()
