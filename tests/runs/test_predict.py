"""visdet.runs.predict in process: every output file checked against Detector.predict on the
same images, unreadable images skipped and listed, bad options refused before any work."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_module
from PIL import Image

sys.path.insert(0, str(Path(__file__).parents[1] / "inference"))
from described_checkpoint import MASK_OVERRIDES, make_small_model, save_ckpt  # noqa: E402
from pycocotools import mask as mask_utils  # noqa: E402

from visdet.inference import Detector  # noqa: E402
from visdet.runs.predict import run_predict  # noqa: E402


@pytest.fixture(scope="module")
def small_model():
    return make_small_model()


def predict_config(tmp_path: Path, *overrides: str):
    import visdet.config  # noqa: F401 - the resolvers of the configs

    with initialize_config_module(config_module="visdet.conf", version_base="1.3"):
        return compose("predict", overrides=[f"paths.output_dir={tmp_path / 'run'}", *overrides])


def write_images(folder: Path) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    (folder / "sub").mkdir(parents=True)
    arrays = {}
    for name, size in (("a.png", (64, 80)), ("sub/b.png", (72, 56))):
        coarse = rng.random((size[0] // 8, size[1] // 8, 3))
        array = (np.kron(coarse, np.ones((8, 8, 1))) * 255).astype(np.uint8)
        Image.fromarray(array).save(folder / name)
        arrays[name] = array
    Image.fromarray(arrays["a.png"][..., 0]).save(folder / "grey.png")  # mode L
    arrays["grey.png"] = np.repeat(arrays["a.png"][..., :1], 3, axis=2)
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (folder / "notes.md").write_text("not an image")
    return arrays


def test_outputs_match_detector_predict(small_model, tmp_path, capsys):
    ckpt = save_ckpt(small_model, tmp_path / "best.ckpt")
    arrays = write_images(tmp_path / "src")
    cfg = predict_config(
        tmp_path,
        f"ckpt={ckpt}",
        f"source={tmp_path / 'src'}",
        "recursive=true",
        "max_det=4",
        "save_txt=true",
        "save_crops=true",
        "batch_size=1",
    )
    summary = run_predict(cfg)
    out = tmp_path / "run"
    assert summary["images"] == 3 and summary["skipped"][0]["file_name"] == "broken.png"
    assert json.loads((out / "summary.json").read_text()) == summary
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line.startswith("predict: 3 images, 12 detections, 1 skipped, ")
    assert line.endswith(f"images/s -> {out}")

    det = Detector.from_checkpoint(ckpt)
    names = ["a.png", "grey.png", "sub/b.png"]  # sorted relative paths
    expected = det.predict([arrays[n] for n in names], max_det=4, batch_size=1)
    records = json.loads((out / "predictions.json").read_text())
    assert [r["file_name"] for r in records] == [n for n in names for _ in range(4)]
    for i, name in enumerate(names):
        mine = [r for r in records if r["file_name"] == name]
        boxes = expected[i]["boxes"]
        xywh = torch.cat([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], 1)
        assert np.allclose([r["bbox"] for r in mine], xywh.numpy(), atol=2e-3)
        assert np.allclose([r["score"] for r in mine], expected[i]["scores"].numpy(), atol=1e-5)
        assert [r["category_id"] for r in mine] == expected[i]["category_ids"]
        assert [r["category_name"] for r in mine] == expected[i]["names"]
        drawn = Image.open(out / "images" / name)
        assert drawn.size == (arrays[name].shape[1], arrays[name].shape[0])
        h, w = arrays[name].shape[:2]
        label_file = out / "labels" / (name[: -len(".png")] + ".txt")
        rows = [line.split() for line in label_file.read_text().splitlines()]
        assert len(rows) == 4
        for row, record in zip(rows, mine):
            x, y, bw, bh = record["bbox"]
            cls = [c["name"] for c in small_model["description"]["classes"]].index(
                record["category_name"]
            )
            assert int(row[0]) == cls
            values = [float(v) for v in row[1:]]
            reference = [(x + bw / 2) / w, (y + bh / 2) / h, bw / w, bh / h, record["score"]]
            assert np.allclose(values, reference, atol=1e-4)
    crops = sorted(p.relative_to(out / "crops").as_posix() for p in (out / "crops").rglob("*.jpg"))
    assert len(crops) == 12
    first = next(r for r in records if r["file_name"] == "a.png")
    crop = Image.open(out / "crops" / first["category_name"] / "a_0.jpg")
    x, y, bw, bh = first["bbox"]
    assert crop.size == (
        min(80, int(np.ceil(x + bw))) - int(np.floor(x)),
        min(64, int(np.ceil(y + bh))) - int(np.floor(y)),
    )


def test_list_source_classes_filter_and_no_images_saved(small_model, tmp_path):
    ckpt = save_ckpt(small_model, tmp_path / "best.ckpt")
    write_images(tmp_path / "src")
    (tmp_path / "src" / "list.txt").write_text("# two images\nsub/b.png\n\na.png\n")
    cfg = predict_config(
        tmp_path,
        f"ckpt={ckpt}",
        f"source={tmp_path / 'src' / 'list.txt'}",
        "classes=[dog]",
        "save_images=false",
        "tile={size: 48, overlap: 0.25}",
    )
    summary = run_predict(cfg)
    records = json.loads((tmp_path / "run" / "predictions.json").read_text())
    assert summary["images"] == 2 and summary["skipped"] == []
    assert {r["category_name"] for r in records} <= {"dog"}
    assert [r["file_name"] for r in records][:1] in (["sub/b.png"], [])
    assert not (tmp_path / "run" / "images").exists()


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["classes=[horse]"], "classes: unknown class 'horse'; known: cat, dog, bird"),
        (["source=EMPTY"], "no images found"),
        (["ckpt=null"], "ckpt: missing; pass ckpt=PATH"),
        (["save_txt=maybe"], "save_txt must be true or false"),
        (["tile={size: 8}"], "tile.size must be >= 32"),
        (["batch_size=0"], "batch_size must be a positive int"),
        (["device=cude"], "device: 'cude' is not a device name"),
    ],
)
def test_bad_options_stop_before_any_output(small_model, tmp_path, overrides, message):
    ckpt = save_ckpt(small_model, tmp_path / "best.ckpt")
    write_images(tmp_path / "src")
    (tmp_path / "empty").mkdir()
    overrides = [o.replace("EMPTY", str(tmp_path / "empty")) for o in overrides]
    cfg = predict_config(tmp_path, f"ckpt={ckpt}", f"source={tmp_path / 'src'}", *overrides)
    with pytest.raises((ValueError, TypeError), match=message):
        run_predict(cfg)
    assert not (tmp_path / "run" / "predictions.json").exists()


@pytest.mark.slow  # a one-epoch training run
def test_predictions_of_a_trained_run_score_its_validation_map(tmp_path):
    """visdet predict on a run's validation images, scored by pycocotools, gives the mAP the
    run reported: same weights, same resize, boxes mapped back the same way."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    sys.path.insert(0, str(Path(__file__).parents[1]))
    from tiny_runs import tiny_cfg

    from visdet.runs.train_detector import train

    metrics = train(tiny_cfg(tmp_path, "trainer.max_epochs=1"))
    [dataset] = (tmp_path / "data").glob("shapes_*")
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    # every detection, as an evaluation counts them (predict keeps score >= 0.25 by default)
    cfg = predict_config(
        tmp_path / "p", f"ckpt={ckpt}", f"source={dataset / 'val'}", "score_thresh=null"
    )
    run_predict(cfg.copy())
    records = json.loads((tmp_path / "p" / "run" / "predictions.json").read_text())
    gt = COCO(str(dataset / "instances_val.json"))
    ids = {Path(im["file_name"]).name: im["id"] for im in gt.dataset["images"]}
    results = [{**r, "image_id": ids[r["file_name"]]} for r in records]
    evaluation = COCOeval(gt, gt.loadRes(results), "bbox")
    evaluation.evaluate()
    evaluation.accumulate()
    evaluation.summarize()
    assert evaluation.stats[0] == pytest.approx(metrics["val/mAP"], abs=2e-4)
    assert evaluation.stats[1] == pytest.approx(metrics["val/mAP50"], abs=2e-4)


def test_a_mask_model_writes_rle_masks_and_draws_them(tmp_path):
    ckpt = save_ckpt(make_small_model(MASK_OVERRIDES), tmp_path / "mask.ckpt")
    arrays = write_images(tmp_path / "src")
    cfg = predict_config(tmp_path, f"ckpt={ckpt}", f"source={tmp_path / 'src' / 'a.png'}",
                         "max_det=3")  # fmt: skip
    summary = run_predict(cfg)
    records = json.loads((tmp_path / "run" / "predictions.json").read_text())
    assert summary["detections"] == len(records) == 3
    det = Detector.from_checkpoint(ckpt)
    expected = det.predict(arrays["a.png"], max_det=3)[0]
    decoded = mask_utils.decode([r["segmentation"] for r in records])  # [H, W, N]
    assert torch.equal(torch.from_numpy(decoded).permute(2, 0, 1).bool(), expected["masks"])
    assert det.predict(arrays["a.png"], max_det=3, mask_format="rle")[0]["masks"] == [
        r["segmentation"] for r in records
    ]
    with pytest.raises(ValueError, match="mask_format must be"):
        det.predict(arrays["a.png"], mask_format="polygons")
    drawn = np.asarray(Image.open(tmp_path / "run" / "images" / "a.png"))
    covered = expected["masks"].any(0).numpy()
    assert covered.any() and (drawn[covered] != arrays["a.png"][covered]).any(-1).all()
