"""``visdet data check`` in process (the same Hydra app as the command): exit status, the
one-line error naming the problem, and the report files."""

from __future__ import annotations

import json
import sys

import pytest
from PIL import Image

from visdet.cli import main as visdet_main
from visdet.runs.data_check import PLOTS


def write_set(root, broken: bool):
    images = root / "images"
    images.mkdir(parents=True)
    Image.new("RGB", (64, 48)).save(images / "a.png")
    entries = [{"id": 1, "file_name": "a.png", "width": 64, "height": 48}]
    if broken:
        entries.append({"id": 2, "file_name": "gone.png", "width": 64, "height": 48})
    coco = {
        "images": entries,
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [4, 4, 30, 20]}],
        "categories": [{"id": 1, "name": "thing"}],
    }
    ann = root / "gt.json"
    ann.write_text(json.dumps(coco))
    return ann, images


def check(monkeypatch, *args):
    monkeypatch.setattr(sys, "argv", list(sys.argv))  # Hydra reads sys.argv: restored after
    visdet_main(["data", "check", *args])


def test_a_set_with_errors_exits_1_naming_them_and_writes_the_report(tmp_path, monkeypatch):
    ann, images = write_set(tmp_path, broken=True)
    run = tmp_path / "run"
    with pytest.raises(SystemExit) as stopped:
        check(monkeypatch, f"annotations={ann}", f"images={images}", f"hydra.run.dir={run}")
    message = str(stopped.value.code)
    assert message.startswith("data check failed: gt: missing_file (1), e.g. gone.png")
    assert "\n" not in message
    report = json.loads((run / "data_report.json").read_text())
    assert report["gt"]["problems"]["missing_file"]["severity"] == "error"
    assert "distributions" not in report["gt"]
    assert "| missing_file | 1 | gone.png: file not found |" in (run / "data_report.md").read_text()
    for name in PLOTS:
        assert (run / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_clean_set_exits_0_and_prints_the_summary(tmp_path, monkeypatch, capsys):
    ann, images = write_set(tmp_path, broken=False)
    run = tmp_path / "run"
    check(monkeypatch, f"annotations={ann}", f"images={images}", f"hydra.run.dir={run}")
    out = capsys.readouterr().out
    assert "data check: splits gt; 1 images, 1 boxes; 0 errors, 0 warnings" in out
    assert (run / "data_report.md").is_file()


def test_every_split_of_a_data_source(tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    check(monkeypatch, "data=shapes", f"data.source.cache_dir={tmp_path / 'shapes'}",
          "data.source.num_train=6", "data.source.num_val=3", f"hydra.run.dir={run}")  # fmt: skip
    assert "data check: splits train, val; 9 images" in capsys.readouterr().out
    assert set(json.loads((run / "data_report.json").read_text())) == {"train", "val"}


def test_bad_usage_is_one_line(tmp_path, monkeypatch):
    with pytest.raises(SystemExit) as stopped:
        check(monkeypatch, f"hydra.run.dir={tmp_path / 'run'}")
    assert str(stopped.value.code).startswith("data check failed: give either data=<group>")
    with pytest.raises(SystemExit) as stopped:
        check(monkeypatch, f"annotations={tmp_path / 'no.json'}", f"images={tmp_path}",
              f"hydra.run.dir={tmp_path / 'run'}")  # fmt: skip
    assert "not found" in str(stopped.value.code) and "no.json" in str(stopped.value.code)


def test_annotations_and_images_at_urls_are_fetched_and_checked(tmp_path, monkeypatch, capsys):
    fsspec = pytest.importorskip("fsspec")
    from fsspec.implementations.memory import MemoryFileSystem

    ann, images = write_set(tmp_path / "src", broken=True)
    fs = fsspec.filesystem("memory")
    fs.put(str(tmp_path / "src"), "/check_set", recursive=True)
    monkeypatch.setenv("VISDET_REMOTE_CACHE", str(tmp_path / "cache"))
    try:
        run = tmp_path / "run"
        with pytest.raises(SystemExit) as stopped:
            check(monkeypatch, "annotations=memory://check_set/gt.json",
                  "images=memory://check_set/images", f"hydra.run.dir={run}")  # fmt: skip
        assert str(stopped.value.code).startswith(
            "data check failed: gt: missing_file (1), e.g. gone.png"
        )
        assert (run / "data_report.md").is_file()
        assert list((tmp_path / "cache").rglob("a.png"))  # the image went through the cache
        with pytest.raises(SystemExit) as stopped:
            check(monkeypatch, "annotations=nosuchfs://x/gt.json", "images=/tmp",
                  f"hydra.run.dir={tmp_path / 'run2'}")  # fmt: skip
        assert "nosuchfs" in str(stopped.value.code) and "\n" not in str(stopped.value.code)
    finally:
        MemoryFileSystem.store.clear()
        MemoryFileSystem.pseudo_dirs[:] = [""]
