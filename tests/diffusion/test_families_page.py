"""docs/guides/families.md names every registered pipeline family, its preview map, and every supported scheduler."""

from __future__ import annotations

from pathlib import Path

PAGE = Path(__file__).resolve().parents[2] / "docs" / "guides" / "families.md"


def test_every_family_and_its_preview_map_is_in_the_table():
    from noisyclip_metrics.diffusion.trajectory import PIPELINE_FAMILIES

    rows = {line.split("|")[1].strip(): line for line in PAGE.read_text(encoding="utf-8").splitlines() if "| `" in line}
    for name in PIPELINE_FAMILIES:
        family = PIPELINE_FAMILIES.get(name)
        row = rows.get(f"`{name}`", "")
        assert f"`{family.preview}`" in row and f"`{family.denoiser}`" in row, name
        assert all(f"`{c}`" in row for c in family.classes), name


def test_every_supported_scheduler_is_listed():
    from noisyclip_metrics.scoring.x0 import SCHEDULERS

    page = PAGE.read_text(encoding="utf-8")
    assert [name for name in SCHEDULERS.names() if f"`{name}`" not in page] == []
