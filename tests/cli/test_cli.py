"""The ``noisyclip`` command line: help everywhere, one-line errors with exit status 2, core commands end to end."""

from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import sys

import pytest
import torch

from noisyclip_metrics.cli import COMMANDS, main
from noisyclip_metrics.errors import InputError
from noisyclip_metrics.scoring.model import TINY_TEST_CONFIG, NoisyCLIPModel
from noisyclip_metrics.testing import tiny_pipeline


def _run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_help_for_every_command(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    for name in COMMANDS:
        with pytest.raises(SystemExit) as exc:
            main([name, "--help"])
        assert exc.value.code == 0
        assert name in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "match"),
    [
        (["train", "--init", "x"], "missing required settings"),
        (["score", "--model", "/nope", "--trajectories", "/nope"], "not a trajectory store"),
        (["train", "--init", "x", "--trajectories", "t", "--out-dir", "o", "--target", "distil"], "did you mean"),
        (["capture", "--pipeline", "/nope", "--prompts", "/nope.txt", "--out", "/tmp/x"], "prompt file not found"),
        (["wise-ft", "--finetuned", "f", "--base", "b", "--alpha", "1.5", "--out", "/tmp/x"], "alpha: expected"),
    ],
)
def test_errors_are_one_line_with_status_2(capsys, argv, match):
    code, _out, err = _run(capsys, *argv)
    assert code == 2
    assert err.count("\n") == 1 and match in err and err.startswith("noisyclip ")


def test_world_build_from_a_folder_that_is_not_weights_is_one_line(capsys, tmp_path):
    code, _, err = _run(
        capsys,
        "world",
        "build",
        "--preset",
        "ci",
        "--work",
        str(tmp_path / "w"),
        "--out",
        str(tmp_path / "o"),
        "--from-weights",
        str(tmp_path),
        "--no-progress",
    )
    assert code == 2 and err.count("\n") == 1 and "from_weights:" in err and "no BUILD.json" in err
    assert not (tmp_path / "o").exists()


def test_usage_errors_are_one_line_with_status_2(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["train", "--steps", "many"])
    assert exc.value.code == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_bad_prompt_file(tmp_path, capsys):
    bad = tmp_path / "p.txt"
    bad.write_bytes(b"a red circle\n\xff\xfe\n")
    code, _, err = _run(
        capsys, "capture", "--pipeline", str(tmp_path), "--prompts", str(bad), "--out", str(tmp_path / "o")
    )
    assert code == 2 and "p.txt:2: prompt file is not valid UTF-8 (byte 0xff" in err
    bad.write_text("a red circle\n\nb\n")
    assert (
        "line 2: blank line"
        in _run(capsys, "capture", "--pipeline", str(tmp_path), "--prompts", str(bad), "--out", str(tmp_path / "o"))[2]
    )
    bad.write_text("a\nb\na\n")
    assert (
        "line 3: duplicate of line 1"
        in _run(capsys, "capture", "--pipeline", str(tmp_path), "--prompts", str(bad), "--out", str(tmp_path / "o"))[2]
    )


def test_capture_score_train_end_to_end(tmp_path, capsys):
    tiny_pipeline("sd", tmp_path / "pipe")
    (tmp_path / "prompts.txt").write_text("a red circle\ntwo blue squares\na green triangle\nfour white squares\n")
    NoisyCLIPModel.from_config(TINY_TEST_CONFIG, preview="sd1", seed=0).save_pretrained(tmp_path / "base")
    code, out, err = _run(
        capsys,
        "capture",
        "--pipeline",
        str(tmp_path / "pipe"),
        "--prompts",
        str(tmp_path / "prompts.txt"),
        "--seeds",
        "0",
        "1",
        "--steps",
        "3",
        "--height",
        "32",
        "--width",
        "32",
        "--out",
        str(tmp_path / "traj"),
    )
    assert code == 0, err
    assert "8 trajectories" in out
    code, out, err = _run(
        capsys,
        "score",
        "--model",
        str(tmp_path / "base"),
        "--trajectories",
        str(tmp_path / "traj"),
        "--steps",
        "0",
        "3",
    )
    assert code == 0, err
    rows = [json.loads(line) for line in out.splitlines()]
    assert len(rows) == 16 and {r["step"] for r in rows} == {0, 3} and all(-1 <= r["score"] <= 1 for r in rows)
    code, out, err = _run(
        capsys,
        "train",
        "--init",
        str(tmp_path / "base"),
        "--trajectories",
        str(tmp_path / "traj"),
        "--out-dir",
        str(tmp_path / "run"),
        "--steps",
        "3",
        "--batch-size",
        "4",
        "--val-fraction",
        "0.1",
        "--no-progress",
    )
    assert code == 0, err
    assert (tmp_path / "run" / "model" / "model.safetensors").is_file() and "model:" in out
    code, out, err = _run(
        capsys,
        "wise-ft",
        "--finetuned",
        str(tmp_path / "run" / "model"),
        "--base",
        str(tmp_path / "base"),
        "--alpha",
        "0.5",
        "--out",
        str(tmp_path / "wise"),
    )
    assert code == 0, err
    tuned, base, wise = (
        NoisyCLIPModel.from_pretrained(tmp_path / p).clip.visual.state_dict() for p in ("run/model", "base", "wise")
    )
    assert all(torch.allclose(wise[k], (tuned[k] + base[k]) / 2) for k in wise)
    assert any(not torch.equal(tuned[k], base[k]) for k in wise)


def test_console_script_entry_point(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "noisyclip_metrics.cli", "info"], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0 and "scorers:" in proc.stdout
    proc = subprocess.run(
        [sys.executable, "-m", "noisyclip_metrics.cli", "score", "--model", "m", "--trajectories", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1


def test_config_flags_are_described_from_the_dataclass_docstrings(capsys):
    from noisyclip_metrics.cli.core import field_docs
    from noisyclip_metrics.evaluation.runner import EvalConfig
    from noisyclip_metrics.training.trainer import TrainConfig

    for cls in (EvalConfig, TrainConfig):
        docs = field_docs(cls)
        undocumented = [f.name for f in dataclasses.fields(cls) if not f.name.isupper() and f.name not in docs]
        assert not undocumented, f"{cls.__name__}: {undocumented}"
    with pytest.raises(SystemExit):
        main(["evaluate", "--help"])
    out = capsys.readouterr().out
    assert "score every this many steps" in out and "``" not in out


def test_bon_run_flags_come_from_the_policy_dataclasses(monkeypatch, tmp_path):
    """A policy is declared once: its dataclass fields are `noisyclip bon run`'s settings (flags and ``--config``
    keys, with type and help), so a policy registered by a plugin gets its flags without touching the CLI."""
    import argparse
    from dataclasses import dataclass, field

    from noisyclip_metrics.bon.policies import POLICIES, OneShotPolicy
    from noisyclip_metrics.cli.bon import _policy, run_settings
    from noisyclip_metrics.cli.core import add_dataclass_arguments, dataclass_from_args
    from noisyclip_metrics.errors import InputError

    @dataclass(frozen=True)
    class EveryOther(OneShotPolicy):
        stride: int = field(default=2, metadata={"help": "steps between looks"})
        name: str = "every-other"

    monkeypatch.setitem(POLICIES._items, "every-other", EveryOther)
    parser = argparse.ArgumentParser()
    cls = run_settings()
    add_dataclass_arguments(parser, cls)
    assert "every-other: steps between looks (default: 2)" in " ".join(parser.format_help().split())
    base = ["--pipeline", "p", "--prompt", "a", "--out", "o"]

    def settings(*flags: str):
        return dataclass_from_args(cls, parser.parse_args([*base, *flags]))

    assert _policy(settings("--policy", "every-other", "--stride", "3", "--k", "4"), steps=20) == EveryOther(
        k=4, stride=3
    )
    assert _policy(settings("--policy", "every-other"), steps=20) == EveryOther(k=10)  # k's fallback: T/2
    (tmp_path / "s.yaml").write_text("policy: every-other\nstride: 5\n")
    assert _policy(settings("--config", str(tmp_path / "s.yaml")), steps=20) == EveryOther(k=10, stride=5)
    with pytest.raises(InputError, match=r"--schedule: the halving policy needs increasing decision steps"):
        _policy(settings("--policy", "halving"), steps=20)
    with pytest.raises(InputError, match=r"--policy: expected one of .*every-other.*, got 'nope'"):
        settings("--policy", "nope")
    monkeypatch.delitem(POLICIES._items, "every-other")
    assert "stride" not in {f.name for f in dataclasses.fields(run_settings())}  # built from today's registry


def test_the_warning_format_is_restored_after_a_command(capsys):
    """Inside a command, warnings read `noisyclip <command>: warning: ...`; after it, a caller's warnings keep their
    own format (the suite's warnings were labelled with whichever command ran last)."""
    import warnings

    from noisyclip_metrics.cli import main

    before = warnings.formatwarning
    assert main(["info"]) == 0
    assert warnings.formatwarning is before


def test_settings_come_from_flags_over_a_json_or_yaml_file_over_the_defaults(tmp_path):
    """One mechanism for a command's settings: the frozen dataclass, its flags, and a JSON or YAML file, type-checked
    and built by jsonargparse; flags win over the file, the file over the dataclass's defaults."""
    from noisyclip_metrics.cli.core import dataclass_from_args
    from noisyclip_metrics.evaluation.runner import EvalConfig

    (tmp_path / "s.yaml").write_text("seeds: [7, 8]\nguidance_scale: 3\nbatch_size: 4\nprogress: false\n")
    (tmp_path / "s.json").write_text(json.dumps({"seeds": [7, 8], "guidance_scale": 3, "batch_size": 4}))
    for name in ("s.yaml", "s.json"):
        args = argparse.Namespace(config=tmp_path / name, model="m", out="o", batch_size=16, seeds=None)
        cfg = dataclass_from_args(EvalConfig, args, ("model", "out"))
        assert (cfg.seeds, cfg.guidance_scale, cfg.batch_size) == ((7, 8), 3.0, 16)
        assert isinstance(cfg.guidance_scale, float) and cfg.score_every == EvalConfig.score_every
    with pytest.raises(InputError, match="missing required settings: --out"):
        dataclass_from_args(EvalConfig, argparse.Namespace(config=None, model="m"), ("model", "out"))


#: Commands that have no settings at all.
NO_SETTINGS = {"info", "world info", "world list"}


def test_every_command_takes_its_settings_from_a_dataclass_with_a_config_file():
    from noisyclip_metrics.cli import build_parser

    parser = build_parser()  # every command configured, nested actions too
    leaves = {}
    for name, sub in parser._subparsers._group_actions[0].choices.items():
        nested = [a for a in sub._actions if isinstance(a, argparse._SubParsersAction)]
        if nested:
            leaves.update({f"{name} {action}": p for action, p in nested[0].choices.items()})
        else:
            leaves[name] = sub
    with_config = {name for name, p in leaves.items() if any("--config" in a.option_strings for a in p._actions)}
    assert with_config == set(leaves) - NO_SETTINGS
