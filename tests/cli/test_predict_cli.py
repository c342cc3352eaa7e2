"""``visdet predict`` as a user runs it: a subprocess writing into its run directory, and
known failures as one ``predict failed: ...`` line with status 1, no traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

sys.path.insert(0, str(Path(__file__).parents[1] / "inference"))
from described_checkpoint import make_small_model, save_ckpt  # noqa: E402


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("predict_cli")
    model = make_small_model()
    save_ckpt(model, root / "best.ckpt")
    save_ckpt(model, root / "old.ckpt", description={})
    (root / "src").mkdir()
    (root / "empty").mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray((rng.random((48, 64, 3)) * 255).astype(np.uint8)).save(root / "src" / "x.jpg")
    return root


def visdet_predict(root: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "VISDET_ROOT": str(root)}
    return subprocess.run(
        [sys.executable, "-m", "visdet", "predict", *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=root,
        env=env,
    )


@pytest.mark.slow  # a subprocess start of several seconds
def test_predict_writes_its_run_directory(files):
    done = visdet_predict(files, "ckpt=best.ckpt", "source=src", "max_det=3", "save_txt=true")
    assert done.returncode == 0, done.stderr
    line = done.stdout.strip().splitlines()[-1]
    assert line.startswith("predict: 1 images, 3 detections, 0 skipped, ")
    run_dir = Path(line.rsplit("-> ", 1)[1])
    assert run_dir.parent == files / "outputs" / "predict" / "runs"
    records = json.loads((run_dir / "predictions.json").read_text())
    assert len(records) == 3 and {r["file_name"] for r in records} == {"x.jpg"}
    assert Image.open(run_dir / "images" / "x.jpg").size == (64, 48)
    assert len((run_dir / "labels" / "x.txt").read_text().splitlines()) == 3


@pytest.mark.slow
@pytest.mark.parametrize(
    "args, message",
    [
        (["ckpt=missing.ckpt", "source=src"], "predict failed: ckpt: checkpoint not found"),
        (
            ["ckpt=old.ckpt", "source=src"],
            "predict failed: ckpt old.ckpt has no stored model description (made by an older "
            "visdet or another framework): pass model=<preset> and num_classes=N",
        ),
        (["ckpt=best.ckpt", "source=src", "classes=[horse]"], "predict failed: classes: unknown"),
        (["ckpt=best.ckpt", "source=empty"], "predict failed: source: empty: no images found"),
    ],
)
def test_failures_are_one_line(files, args, message):
    failed = visdet_predict(files, *args)
    assert failed.returncode == 1
    assert message in failed.stderr, failed.stderr
    assert "Traceback" not in failed.stderr
    assert failed.stderr.strip().splitlines()[-1].startswith("predict failed: ")
