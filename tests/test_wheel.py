"""The package works from an installed wheel: built from a copy of the sources, installed outside the checkout, the
world's weights load through their registry ids."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
CHECK = """
import sys, torch
import noisyclip_metrics
from noisyclip_metrics.scoring.scorers import ScoreInputs, build_scorer
from noisyclip_metrics.world.assets import WORLD_IDS, load_world
assert noisyclip_metrics.__file__.startswith(sys.argv[1]), noisyclip_metrics.__file__
for name in WORLD_IDS:
    load_world(name)
model = load_world("world:noisyclip-x0")
inputs = ScoreInputs(prompts=["a red circle"], x0=torch.zeros(1, 4, 16, 16))
score = build_scorer("noisyclip-x0", model=model).score(inputs)
pipe = load_world("world:sd-small")
image = pipe(["a red circle"], num_inference_steps=2, height=32, width=32, output_type="pt").images
print("ok", len(list(WORLD_IDS)), tuple(score.shape), tuple(image.shape))
"""


def test_installed_wheel_loads_every_world_model(tmp_path):
    src = tmp_path / "src"  # build from a copy: setuptools writes build/ and *.egg-info next to the sources
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("noisyclip_metrics", "adapters"):
        shutil.copytree(ROOT / name, src / name, ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run(
        [*pip, "wheel", str(src), "--no-deps", "--no-build-isolation", "-w", str(tmp_path / "dist")],
        check=True,
        capture_output=True,
        timeout=600,
    )
    (wheel,) = (tmp_path / "dist").glob("noisyclip_metrics-*.whl")
    site = tmp_path / "site"
    subprocess.run(
        [*pip, "install", "--no-deps", "--target", str(site), str(wheel)], check=True, capture_output=True, timeout=600
    )
    proc = subprocess.run(
        [sys.executable, "-c", CHECK, str(site)],
        cwd=tmp_path,
        env={"PYTHONPATH": str(site), "HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split()[0] == "ok"
