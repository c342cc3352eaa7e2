"""The ``visdet`` command: subcommands listed, dispatched to their Hydra apps, bad usage and
tools not built yet exit with status 2 and one line."""

import subprocess
import sys

import pytest

from visdet.cli import COMMANDS, DATA_TOOLS, main


def visdet(*args, timeout=120):
    return subprocess.run(
        [sys.executable, "-m", "visdet", *args], capture_output=True, text=True, timeout=timeout
    )


NAMES = (
    "train",
    "eval",
    "predict",
    "export",
    "bench",
    "data",
    "train-encoder",
    "features",
    "convert-config",
    "config",
)


def test_help_lists_every_subcommand_with_one_line(capsys):
    main(["--help"])
    out = capsys.readouterr().out
    for name in NAMES:
        lines = [line for line in out.splitlines() if line.strip().startswith(f"{name} ")]
        assert len(lines) == 1, (name, out)
    assert tuple(COMMANDS) == NAMES


def test_a_tool_not_built_yet_says_so_with_status_2(capsys, monkeypatch):
    monkeypatch.setitem(DATA_TOOLS, "later", None)
    with pytest.raises(SystemExit) as exit_info:
        main(["data", "later", "x=1"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("visdet data later: not built yet") and err.count("\n") == 1
    with pytest.raises(SystemExit) as exit_info:
        main(["data", "nope"])
    assert exit_info.value.code == 2
    assert "visdet data: expected one of check, convert, preview, later, got 'nope'" in (
        capsys.readouterr().err
    )


def test_unknown_command_and_feature_tool_list_the_valid_ones(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["tarin"])
    assert exit_info.value.code == 2
    assert "unknown command 'tarin'; valid: train, eval, predict" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["features", "nope"])
    assert exit_info.value.code == 2
    assert "expected one of extract, preview, got 'nope'" in capsys.readouterr().err


@pytest.mark.slow  # subprocess runs of several seconds: make test-full
def test_subcommand_help_is_the_tools_hydra_app():
    via_visdet = visdet("train", "--help")
    assert via_visdet.returncode == 0, via_visdet.stderr
    for group in ("model: faster_rcnn, faster_rcnn_r18_fpn", "backbone: resnet101", "neck: fpn"):
        assert group in via_visdet.stdout
    direct = subprocess.run(
        [sys.executable, "-m", "visdet.cli.train", "--help"], capture_output=True, text=True
    )
    assert direct.stdout == via_visdet.stdout  # the same app
    export = visdet("export", "--help")
    encoders = "convnext_tiny, mobilenet_v3_large, resnet18, resnet50, swin_t, vit_b16, vit_s16"
    assert export.returncode == 0 and f"encoder: {encoders}" in export.stdout


def test_bench_compare_is_dispatched(tmp_path):
    out = visdet("bench", "compare", str(tmp_path / "a.json"), str(tmp_path / "b.json"))
    assert out.returncode == 2 and "a.json" in out.stderr
