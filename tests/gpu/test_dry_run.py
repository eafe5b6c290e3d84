"""The GPU checks of ``tests/gpu/test_gpu.py``, dry-run on the CPU in the normal suite so that they cannot rot."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

#: The checks cheap enough to dry-run on the CPU in the normal suite.
DRY_RUN = "monitor or cli or training or tiny or run_batch"


@pytest.mark.slow
def test_gpu_checks_dry_run_on_the_cpu(tmp_path: Path) -> None:
    """The checks above run on the CPU (in a child pytest, with ``--gpu-device cpu``) so that they cannot rot."""
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            *"-q -p no:randomly -m gpu --gpu-device cpu -k".split(),
            DRY_RUN,
            "--basetemp",
            str(tmp_path / "base"),
            str(Path(__file__).with_name("test_gpu.py")),
        ],
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "5 passed" in done.stdout, done.stdout[-1000:]
