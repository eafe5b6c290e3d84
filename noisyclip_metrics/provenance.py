"""Provenance helpers: the git revision of the code, hashes of weight folders, and what a checkpoint was trained on.

A seed fixes the initial noise of a trajectory, so a scorer fine-tuned on the trajectories of some seeds and evaluated
on the same seeds can learn what those noises tend to become instead of reading the latent. Training data is
therefore drawn from :data:`TRAINING_SEEDS` (:func:`training_seeds`, one reproducible seed per (prompt, candidate)),
a range no evaluation run uses by default; a fine-tuned checkpoint records its seeds and prompts
(:func:`describe_training_data`, stored as :attr:`NoisyCLIPConfig.trained_on
<noisyclip_metrics.scoring.model.NoisyCLIPConfig>`), and :func:`check_disjoint` compares them with a run's.
"""

from __future__ import annotations

import hashlib
import subprocess
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from noisyclip_metrics.errors import InputError, LeakageError, LeakageWarning

__all__ = [
    "TRAINING_SEEDS",
    "check_disjoint",
    "consecutive_runs",
    "describe_training_data",
    "git_revision",
    "prompt_overlap",
    "seed_overlap",
    "training_seeds",
    "weights_hash",
]

#: Where training trajectories draw their seeds (:func:`training_seeds`): disjoint from every seed below 10^9, so
#: from ``--seeds 0 1 2 ...`` and any replicate seeds an evaluation uses.
TRAINING_SEEDS = range(1_000_000_000, 2_000_000_000)
#: Seed intervals kept verbatim in a training record up to this many (beyond, only min/max/count/hash).
_MAX_INTERVALS = 64


def git_revision() -> str:
    """``git rev-parse HEAD`` of the source tree (``-dirty`` if tracked files changed), or ``"unknown"``."""
    try:
        root = Path(__file__).resolve().parents[1]
        rev = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], check=False, capture_output=True, text=True, timeout=10
        )
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            check=False,
            capture_output=True,
            text=True,
            timeout=10,
        )
        return rev.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "") if rev.returncode == 0 else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def weights_hash(*paths: str | Path | None) -> str:
    """SHA-256 (first 16 hex digits) of every ``*.safetensors`` / ``*.json`` file under ``paths`` (or ``""``).

    Examples:
        >>> weights_hash(None)
        ''
    """
    roots = [Path(p) for p in paths if p is not None and Path(p).exists()]
    if not roots:
        return ""
    h = hashlib.sha256()
    for root in roots:
        candidates = [root] if root.is_file() else root.rglob("*")
        for f in sorted(p for p in candidates if p.suffix in (".safetensors", ".json")):
            h.update(str(f.relative_to(root) if root.is_dir() else f.name).encode())
            with f.open("rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    h.update(block)
    return h.hexdigest()[:16]


def training_seeds(prompt: str, n: int, salt: int = 0, seeds: range = TRAINING_SEEDS) -> list[int]:
    """``n`` distinct seeds for the candidates of one training prompt, drawn reproducibly from ``seeds``.

    Seed ``j`` depends only on (``salt``, ``prompt``, ``j``): every prompt gets its own noises, so no initial noise
    recurs across the training set the way ``range(n)`` would make it.

    Examples:
        >>> s = training_seeds("a red circle", 3)
        >>> len(set(s)), all(x in TRAINING_SEEDS for x in s), s == training_seeds("a red circle", 3)
        (3, True, True)
        >>> s == training_seeds("a blue circle", 3)
        False
    """
    if not isinstance(n, int) or isinstance(n, bool) or n < 0:
        raise InputError(f"n: expected an int >= 0 (candidates per prompt), got {n!r}")
    if n > len(seeds):
        raise InputError(f"n: expected at most {len(seeds)} seeds from {seeds}, got {n}")
    out: list[int] = []
    j = 0
    while len(out) < n:
        digest = hashlib.sha256(f"{int(salt)}\0{prompt}\0{j}".encode()).digest()
        seed = seeds.start + int.from_bytes(digest[:8], "big") % len(seeds)
        if seed not in out:
            out.append(seed)
        j += 1
    return out


def consecutive_runs(values: Iterable[int]) -> list[list[int]]:
    """The sorted distinct ``values`` as ``[first, last]`` runs of consecutive integers.

    Examples:
        >>> consecutive_runs([5, 0, 1, 2, 9])
        [[0, 2], [5, 5], [9, 9]]
    """
    out: list[list[int]] = []
    for v in sorted(set(values)):
        if out and v == out[-1][1] + 1:
            out[-1][1] = v
        else:
            out.append([v, v])
    return out


def _prompt_digest(prompt: str) -> str:
    return hashlib.sha256(prompt.encode()).hexdigest()[:16]


def describe_training_data(seeds: Iterable[int], prompts: Iterable[str]) -> dict[str, Any]:
    """A JSON record of the seeds and prompts a component was trained on (stored in its checkpoint).

    ``seeds``: count, min, max, SHA-256 of the sorted list and, when they form at most 64 runs of consecutive
    integers, those runs (``intervals``); ``prompts``: count, SHA-256 of the sorted list and a 16-hex digest of
    each prompt (enough to tell whether an evaluation prompt was trained on, without storing the text).

    Examples:
        >>> rec = describe_training_data([0, 1, 2, 5], ["a red circle", "two squares"])
        >>> rec["seeds"]["intervals"], rec["seeds"]["count"], rec["prompts"]["count"]
        ([[0, 2], [5, 5]], 4, 2)
    """
    s = sorted({int(x) for x in seeds})
    p = sorted(set(prompts))
    if not s or not p:
        raise InputError(f"training data: expected at least one seed and one prompt, got {len(s)} and {len(p)}")
    runs = consecutive_runs(s)
    return {
        "seeds": {
            "count": len(s),
            "min": s[0],
            "max": s[-1],
            "intervals": runs if len(runs) <= _MAX_INTERVALS else None,
            "sha256": hashlib.sha256(",".join(map(str, s)).encode()).hexdigest(),
        },
        "prompts": {
            "count": len(p),
            "sha256": hashlib.sha256("\n".join(p).encode()).hexdigest(),
            "digests": sorted(_prompt_digest(x) for x in p),
        },
    }


def seed_overlap(trained_on: Mapping[str, Any], seeds: Iterable[int]) -> list[int]:
    """The ``seeds`` that may have been trained on: inside a recorded interval, or (when the record keeps only a
    range) inside [min, max].

    Examples:
        >>> rec = describe_training_data(range(6), ["a red circle"])
        >>> seed_overlap(rec, [0, 1, 100]), seed_overlap(rec, [100, 101])
        ([0, 1], [])
    """
    rec = trained_on["seeds"]
    spans = rec.get("intervals") or [[rec["min"], rec["max"]]]
    return [int(s) for s in seeds if any(lo <= int(s) <= hi for lo, hi in spans)]


def prompt_overlap(trained_on: Mapping[str, Any], prompts: Iterable[str]) -> list[str]:
    """The ``prompts`` a component was trained on (by digest).

    Examples:
        >>> rec = describe_training_data([1], ["a red circle"])
        >>> prompt_overlap(rec, ["a red circle", "a blue square"])
        ['a red circle']
    """
    digests = set(trained_on["prompts"]["digests"])
    return [p for p in dict.fromkeys(prompts) if _prompt_digest(p) in digests]


def check_disjoint(
    models: Mapping[str, Any],
    seeds: Sequence[int],
    prompts: Sequence[str],
    require: bool = False,
    fine_tuned: Iterable[str] = (),
) -> list[str]:
    """Compare every model's recorded training data (``model.config.trained_on``) with a run's seeds and prompts.

    Each overlap is a warning (returned, and issued with :func:`warnings.warn`); with ``require=True`` it is a
    :class:`~noisyclip_metrics.errors.LeakageError` instead (what publishing uses). A model without a record (a
    frozen CLIP, an external checkpoint) is not checked, except that with ``require=True`` the models named in
    ``fine_tuned`` must have one: nothing else shows that they are disjoint from the run.
    """
    problems: list[str] = []
    fine_tuned = set(fine_tuned)
    for ref, model in models.items():
        record = getattr(getattr(model, "config", None), "trained_on", None)
        if record is None:
            if require and ref in fine_tuned:
                problems.append(f"{ref}: fine-tuned, but its checkpoint records no training seeds and prompts")
            continue
        bad_seeds = seed_overlap(record, seeds)
        bad_prompts = prompt_overlap(record, prompts)
        if bad_seeds:
            problems.append(
                f"{ref}: trained on trajectories of seeds {bad_seeds[:6]} that this run evaluates "
                f"({len(bad_seeds)} of {len(seeds)} seeds)"
            )
        if bad_prompts:
            problems.append(
                f"{ref}: trained on {len(bad_prompts)} of this run's {len(prompts)} prompts, e.g. {bad_prompts[0]!r}"
            )
    if problems and require:
        raise LeakageError("require_disjoint: " + "; ".join(problems))
    for message in problems:
        warnings.warn(
            message + "; its scores on this run are not evidence of generalisation", LeakageWarning, stacklevel=2
        )
    return problems
