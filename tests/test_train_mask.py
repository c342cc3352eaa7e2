"""Mask R-CNN end to end through the Hydra compose API: a tiny run of ``mask_rcnn_r18_fpn``
on the built-in shapes data with its instance masks (COCO RLE from the dataset, rasterised
on the device, augmented with the images), ``loss_mask`` logged, and the checkpoint's
detector predicting masks in the input image's pixels."""

import json

import pytest
import torch
from hydra import compose, initialize_config_dir
from tiny_runs import CONF, tiny_overrides

from visdet.inference import Detector
from visdet.runs.train_detector import train


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_tiny_mask_rcnn_run_learns_masks_and_predicts_them(tmp_path):
    overrides = tiny_overrides(tmp_path, "model=mask_rcnn_r18_fpn", "trainer.max_epochs=2",
                               "test=false", "model.detector.mask_layers=[32,32]",
                               "model.detector.mask_dim_reduced=32", "analysis=true")  # fmt: skip
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=[f"paths.output_dir={tmp_path / 'run'}", *overrides])
    assert cfg.data.masks is True
    metrics = train(cfg)
    assert metrics["epochs"] == 2 and 0 <= metrics["val/mAP"] <= 1
    assert -1 <= metrics["val/mask_mAP"] <= 1  # the segm evaluation ran (-1: nan)
    report = json.loads((tmp_path / "run" / "evaluation" / "metrics.json").read_text())
    assert {"bbox", "segm", "tide", "tide_segm"} <= set(report)  # the report covers masks
    assert report["segm"]["AP"] == pytest.approx(max(metrics["val/mask_mAP"], -1), abs=1e-9)
    header = (tmp_path / "run" / "csv" / "version_0" / "metrics.csv").read_text().splitlines()[0]
    assert "train/loss_mask" in header.split(",")
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    detector = Detector.from_checkpoint(ckpt)
    assert type(detector.detector).__name__ == "MaskRCNN"
    with torch.no_grad():
        out = detector.detector.eval()([torch.rand(3, 50, 70)])[0]
    assert out["masks"].shape == (len(out["boxes"]), 1, 50, 70)
    detector.detector.roi_heads.score_thresh = 0.0  # an untrained model: take every box
    found = detector.predict(torch.rand(3, 50, 70))[0]
    assert found["masks"].dtype == torch.bool
    assert found["masks"].shape == (len(found["boxes"]), 50, 70) and len(found["boxes"]) > 0
    with pytest.raises(ValueError, match="tiled inference does not merge instance masks"):
        detector.predict(torch.rand(3, 50, 70), tile={"size": 32})
