"""benchmarks/unet_step_time.py: one training step of a world UNet per head count, printed side by side."""

from __future__ import annotations


def test_prints_one_row_per_model_with_the_ratio_to_the_first_head_count(script, capsys):
    script("unet_step_time").main(["--steps", "1", "--heads", "8", "2", "--models", "sd-small"])
    lines = capsys.readouterr().out.splitlines()
    assert "| model | 8 heads ms/step | 2 heads ms/step | 2 / 8 heads |" in lines
    row = next(line for line in lines if line.startswith("| sd-small |"))
    ms8, ms2, ratio = (float(c) for c in row.strip("| ").split(" | ")[1:])
    assert ms8 > 0 and ms2 > 0 and abs(ratio - ms2 / ms8) < 0.02 + 1 / ms8
