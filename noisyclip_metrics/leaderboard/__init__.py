"""Leaderboards: results stores -> a self-contained ``index.html``, ``README.md`` with PNG charts, JSON and CSV.

``noisyclip leaderboard build RESULTS... --out DIR`` (or :func:`build_leaderboard`) writes:

- ``index.html``: one static page (no network at view time; inline SVG charts, a small inline script): the ranking
  table (sortable), a timestep-versus-accuracy chart per model with all scorers, overlays across models, per-skill
  tables, the Best-of-N cost/quality table when the results have one, provenance and a per-prompt drill-down. Every
  user string is escaped (jinja2 autoescape; drill-down data as escaped JSON rendered with ``textContent``).
- ``README.md`` with Markdown tables and ``charts/*.png`` (matplotlib).
- ``leaderboard.json`` (schema ``noisyclip-leaderboard``, version :data:`LEADERBOARD_SCHEMA_VERSION`),
  ``leaderboard.csv`` (the ranking, one row per model and scorer) and ``curves.csv`` (every curve point, overall
  and per skill).

Per-skill blocks include GenAI-Bench's two groups, ``basic`` (prompts with basic skills only) and ``advanced`` (at
least one advanced skill), derived with :func:`~noisyclip_metrics.evaluation.benchmarks.with_skill_groups` where a
benchmark's
files do not tag them. The curve definitions are in :mod:`noisyclip_metrics.evaluation.curves`.
"""

from __future__ import annotations

from noisyclip_metrics.leaderboard.build import (
    BON_COLUMNS,
    LEADERBOARD_SCHEMA,
    LEADERBOARD_SCHEMA_VERSION,
    BuildConfig,
    BuildResult,
    Entry,
    build_leaderboard,
    leaderboard_document,
    load_entries,
    read_bon,
)

__all__ = [
    "BON_COLUMNS",
    "LEADERBOARD_SCHEMA",
    "LEADERBOARD_SCHEMA_VERSION",
    "BuildConfig",
    "BuildResult",
    "Entry",
    "build_leaderboard",
    "leaderboard_document",
    "load_entries",
    "read_bon",
]
