"""CocoMeanAP with masks: segm AP equal to pycocotools' own COCOeval on the same RLE results
(1e-9), perfect masks scoring 1, and the masks surviving the byte-state round trip."""

import contextlib
import io
import json

import numpy as np
import pytest
import torch
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from visdet.metrics import CocoMeanAP

H, W = 40, 50


def _ellipse(cx, cy, rx, ry):
    ys, xs = np.mgrid[0:H, 0:W] + 0.5
    return (((xs - cx) / rx) ** 2 + ((ys - cy) / ry) ** 2 <= 1).astype(np.uint8)


def _gt(tmp_path):
    masks = {1: [_ellipse(15, 12, 8, 6), _ellipse(35, 28, 10, 8)], 2: [_ellipse(20, 25, 6, 9)]}
    images, anns = [], []
    for image_id, ms in masks.items():
        images.append({"id": image_id, "file_name": f"{image_id}.png", "width": W, "height": H})
        for m in ms:
            rle = mask_utils.encode(np.asfortranarray(m))
            x, y, w, h = mask_utils.toBbox(rle).tolist()
            segmentation = {"size": [H, W], "counts": rle["counts"].decode()}
            anns.append({"id": len(anns) + 1, "image_id": image_id, "category_id": 3,
                         "bbox": [x, y, w, h], "area": float(m.sum()), "iscrowd": 0,
                         "segmentation": segmentation})  # fmt: skip
    path = tmp_path / "gt.json"
    path.write_text(json.dumps({"images": images, "annotations": anns,
                                "categories": [{"id": 3, "name": "blob"}]}))  # fmt: skip
    return path, masks


def _pred(masks, shift, seed):
    """Probability masks: each gt mask (0.8 inside, noise below 0.5 outside) moved right by
    ``shift`` * (its index + 1) pixels (so the IoUs differ)."""
    g = torch.Generator().manual_seed(seed)
    out = torch.zeros(len(masks), 1, H, W)
    boxes = []
    for i, m in enumerate(masks):
        t = torch.from_numpy(m).float().roll(shift * (i + 1), dims=1)
        noise = torch.rand(H, W, generator=g) * 0.45
        out[i, 0] = torch.maximum(t * 0.8, noise)
        ys, xs = torch.nonzero(t, as_tuple=True)
        boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
    scores = torch.linspace(0.9, 0.5, len(masks))
    return {"boxes": torch.tensor(boxes, dtype=torch.float32), "scores": scores,
            "labels": torch.ones(len(masks), dtype=torch.int64), "masks": out}  # fmt: skip


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_segm_ap_equals_pycocotools_and_perfect_masks_score_one(tmp_path):
    path, masks = _gt(tmp_path)
    perfect = CocoMeanAP(path, masks=True)
    perfect.update([_pred(masks[1], 0, 0), _pred(masks[2], 0, 1)], [1, 2])
    assert perfect.compute()["mask_mAP"] == pytest.approx(1.0)

    metric = CocoMeanAP(path, masks=True)
    preds = [_pred(masks[1], 3, 2), _pred(masks[2], 3, 3)]
    metric.update(preds, [1, 2])
    ours = metric.compute()
    results = []
    for image_id, p in zip((1, 2), preds, strict=True):
        for m, s in zip(p["masks"][:, 0] > 0.5, p["scores"], strict=True):
            rle = mask_utils.encode(np.asfortranarray(m.numpy().astype(np.uint8)))
            segmentation = {"size": [H, W], "counts": rle["counts"].decode()}
            results.append({"image_id": image_id, "category_id": 3, "score": float(s),
                            "segmentation": segmentation})  # fmt: skip
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(path))
        evaluation = COCOeval(gt, gt.loadRes(results), "segm")
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    assert 0 < ours["mask_mAP"] < 1
    assert ours["mask_mAP"] == pytest.approx(evaluation.stats[0], abs=1e-9)
    assert ours["mask_mAP50"] == pytest.approx(evaluation.stats[1], abs=1e-9)
    assert "mAP" in ours and "mask_per_class" in ours


def test_predictions_without_masks_are_refused(tmp_path):
    path, masks = _gt(tmp_path)
    metric = CocoMeanAP(path, masks=True)
    pred = _pred(masks[1], 0, 0)
    del pred["masks"]
    with pytest.raises(ValueError, match="needs 'masks' in every prediction"):
        metric.update([pred], [1])
