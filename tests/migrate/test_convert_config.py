"""``visdet convert-config`` on MMDetection configs of every family visdet has: what is
carried over, what is listed as not carried, the experiment composing and validating, and
the converted config plus a converted MMDetection checkpoint giving MMDetection's inference
settings."""

from pathlib import Path

import pytest
import torch
import yaml
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from visdet.cli import main as visdet_main
from visdet.config.validate import validate_config
from visdet.migrate.mmdet_config import load_config
from visdet.migrate.mmdet_to_visdet import convert
from visdet.models.weights.convert.mmdet_faster_rcnn import mmdet_settings_mismatch
from visdet.models.weights.pretrained import init_detector

CONFIGS = Path(__file__).parent / "mmdet_configs"
CONF = Path(__file__).parents[2] / "conf"
ALL = {
    "faster_rcnn": "faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py",
    "faster_rcnn_caffe": "faster_rcnn/faster-rcnn_r50-caffe_fpn_ms-1x_coco-person.py",
    "mask_rcnn": "mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py",
    "retinanet": "retinanet/retinanet_r18_fpn_1x_coco_v2.py",
    "atss": "atss/atss_r50_fpn_1x_coco_v2.py",
    "fcos": "fcos/fcos_r50-caffe_fpn_gn-head_1x_coco.py",
}


def checkpoint_layouts():
    """tests/models/test_checkpoint_converters.py: MMDetection's Faster R-CNN state layout."""
    import importlib.util

    path = Path(__file__).parents[1] / "models" / "test_checkpoint_converters.py"
    spec = importlib.util.spec_from_file_location("mmdet_layout_for_convert_config", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def converted(name):
    return convert(load_config(CONFIGS / ALL[name]))


def dropped(conversion):
    return dict(conversion.dropped)


def write_and_compose(tmp_path, name, *overrides):
    out = tmp_path / "cfgs"
    assert visdet_main_status(["convert-config", str(CONFIGS / ALL[name]), "--out-dir", str(out),
                               "--name", name]) == 0  # fmt: skip
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(
            "train",
            overrides=[
                f"hydra.searchpath=[file://{out}]",
                f"experiment={name}",
                f"paths.output_dir={tmp_path / 'run'}",
                f"data.source.root={tmp_path}",
                *overrides,
            ],
        )


def visdet_main_status(argv):
    with pytest.raises(SystemExit) as info:
        visdet_main(argv)
    return info.value.code


def test_faster_rcnn_3x_carries_model_data_and_schedule():
    c = converted("faster_rcnn")
    assert c.family == "faster_rcnn" and c.version == "3.x"
    assert {"override /model": "faster_rcnn_r50_fpn_mmdet"} in c.defaults
    v = c.values
    assert v["backbone"] == {
        "depth": 50,
        "frozen_stages": 1,
        "style": "pytorch",
        "norm": "frozen_bn",
    }
    d = v["model"]["detector"]
    assert d["anchor_sizes"] == [[32.0], [64.0], [128.0], [256.0], [512.0]]  # 8 x strides
    assert d["anchor_strides"] == [4, 8, 16, 32, 64] and d["aspect_ratios"] == [0.5, 1.0, 2.0]
    assert (d["rpn_pre_nms_top_n_train"], d["rpn_post_nms_top_n_train"]) == (2000, 1000)
    assert (d["rpn_pre_nms_top_n_test"], d["rpn_post_nms_top_n_test"]) == (1000, 1000)
    assert (d["roi_align_sampling_ratio"], d["roi_align_aligned"]) == (0, True)
    assert (d["box_score_thresh"], d["box_nms_thresh"], d["box_detections_per_img"]) == (
        0.05,
        0.5,
        100,
    )
    assert (d["rpn_batch_size_per_image"], d["box_batch_size_per_image"]) == (256, 512)
    assert v["data"]["num_classes"] == 80
    assert v["data"]["source"] == {
        "root": "data/coco",
        "train_ann": "annotations/instances_train2017.json",
        "train_images": "train2017",
        "val_ann": "annotations/instances_val2017.json",
        "val_images": "val2017",
    }
    assert v["aug"] == {"train_sizes": [800], "max_size": 1333, "hflip": 0.5, "val_size": 800}
    assert v["optim"] == {"lr": 0.02, "momentum": 0.9, "weight_decay": 0.0001}
    assert v["trainer"] == {"max_epochs": 12, "check_val_every_n_epoch": 1}
    # epochs 8 and 11 of 12 as fractions; 500 warm-up iterations from 0.001 x lr
    assert v["sched"] == {"milestones": [0.666667, 0.916667], "gamma": 0.1,
                          "warmup_steps": 500, "warmup_factor": 0.001}  # fmt: skip
    why = dropped(c)
    assert "frozen_bn" in why["model.backbone.norm_cfg.requires_grad"]
    assert "torchvision://resnet50" in why["model.backbone.init_cfg.checkpoint"]
    assert "set model.backbone.weights" in why["model.backbone.init_cfg.checkpoint"]
    assert "smooth L1" in why["model.rpn_head.loss_bbox.type"]
    assert "runtime setting" in why["default_hooks"] and "runtime setting" in why["visualizer"]
    # settings visdet does anyway are not listed: the RPN's 0.7 NMS, the box coder's stds
    assert not any("nms" in k or "bbox_coder" in k or "assigner" in k for k in why)


def test_caffe_multiscale_person_config():
    c = converted("faster_rcnn_caffe")
    v, why = c.values, dropped(c)
    assert v["aug"]["train_sizes"] == [640, 672, 704, 736, 768, 800]  # RandomChoiceResize
    assert v["backbone"]["style"] == "caffe" and v["backbone"]["norm"] == "frozen_bn"
    assert "model.backbone.norm_cfg.requires_grad" not in why  # requires_grad=False: exact
    assert v["data"]["num_classes"] == 1
    assert v["model"]["init_from"].endswith("faster_rcnn_r50_caffe_fpn_mstrain_3x_coco.pth")
    assert "only visdet's FCOS" in why["model.data_preprocessor"]
    assert "1 classes" in why["train_dataloader.dataset.metainfo.classes"]


def test_mask_rcnn_amp_and_gradient_clipping():
    v = converted("mask_rcnn").values
    d = v["model"]["detector"]
    assert d["mask_layers"] == [256] * 4 and d["mask_roi_size"] == 14
    assert d["mask_roi_sampling_ratio"] == 0 and d["mask_threshold"] == 0.5
    assert v["data"]["masks"] is True
    assert v["trainer"]["precision"] == "16-mixed" and v["trainer"]["gradient_clip_val"] == 35


def test_retinanet_2x_layout():
    c = converted("retinanet")
    v = c.values
    assert c.version == "2.x" and c.preset == "retinanet_r50_fpn_mmdet"
    assert v["backbone"]["depth"] == 18
    assert v["neck"] == {"out_channels": 256, "p6p7_from": "c5", "p7_relu": False}
    d = v["model"]["detector"]
    assert d["anchor_base_sizes"] == [32.0, 64.0, 128.0, 256.0, 512.0]  # 4 x strides
    assert d["scales_per_octave"] == 3 and d["anchor_strides"] == [8, 16, 32, 64, 128]
    assert (d["fg_iou_thresh"], d["bg_iou_thresh"], d["box_loss"]) == (0.5, 0.4, "l1")
    assert (d["focal_alpha"], d["focal_gamma"]) == (0.25, 2.0)
    assert (d["topk_candidates"], d["score_thresh"], d["nms_thresh"], d["detections_per_img"]) == (
        1000, 0.05, 0.5, 100)  # fmt: skip
    assert v["data"]["batch_size"] == 8 and v["optim"]["lr"] == 0.01
    assert v["data"]["source"]["train_images"] == "train2017"  # img_prefix minus data_root
    assert v["aug"]["val_size"] == 800 and v["trainer"]["max_epochs"] == 12
    assert v["sched"]["warmup_steps"] == 500


def test_atss_and_fcos():
    a = converted("atss").values
    assert a["model"]["detector"]["anchor_sizes"] == [64.0, 128.0, 256.0, 512.0, 1024.0]
    assert a["model"]["detector"]["topk"] == 9 and a["model"]["detector"]["box_loss_weight"] == 2.0
    assert a["neck"]["p6p7_from"] == "p5" and a["model"]["detector"]["nms_thresh"] == 0.6
    f = converted("fcos")
    d, why = f.values["model"]["detector"], dropped(f)
    assert d["channel_order"] == "bgr"
    assert d["image_mean"] == pytest.approx([102.9801 / 255, 115.9465 / 255, 122.7717 / 255])
    assert d["image_std"] == pytest.approx([1 / 255] * 3)
    assert f.values["neck"] == {"out_channels": 256, "p6p7_from": "p5", "p7_relu": True}
    assert "samples centres" in why["model.bbox_head.center_sampling"]
    assert "ConstantLR" in why["param_scheduler.0"]
    assert "optim.param_groups" in why["optim_wrapper.paramwise_cfg"]
    assert "GIoU" in why["model.bbox_head.loss_bbox.type"]  # IoULoss in this config


@pytest.mark.parametrize("name", sorted(ALL))
def test_every_converted_experiment_composes_validates_and_builds(tmp_path, name):
    cfg = write_and_compose(tmp_path, name)
    validate_config(cfg)
    detector = instantiate(cfg.model.detector, num_classes=cfg.data.num_classes)
    assert sum(p.numel() for p in detector.parameters()) > 1e6
    text = (tmp_path / "cfgs" / "experiment" / f"{name}.yaml").read_text()
    assert text.startswith("# @package _global_") and "# Not carried over (" in text
    yaml.safe_load(text)  # plain YAML


def test_converted_config_and_checkpoint_give_mmdetection_inference(tmp_path):
    """The converted Faster R-CNN config at MMDetection's test size, with an MMDetection
    checkpoint (random weights in its layout) as init_from: MMDetection's inference settings
    and the checkpoint's weights."""
    state = checkpoint_layouts().mmdet_state(80)
    ckpt = tmp_path / "mmdet_faster_rcnn.pth"
    torch.save({"state_dict": state, "meta": {}}, ckpt)
    cfg = write_and_compose(
        tmp_path, "faster_rcnn", "+model.detector.min_size=800", "+model.detector.max_size=1333"
    )
    detector = instantiate(cfg.model.detector, num_classes=cfg.data.num_classes)
    assert mmdet_settings_mismatch(detector) == []
    init_detector(detector, str(ckpt))
    w = state["roi_head.bbox_head.shared_fcs.0.weight"]
    torch.testing.assert_close(detector.roi_heads.box_head.fc6.weight, w)


def test_bad_configs_exit_with_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.py"
    bad.write_text("model = dict(type='YOLOX')\n")
    assert visdet_main_status(["convert-config", str(bad)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("convert-config: model.type 'YOLOX': visdet has no such family")
    bad.write_text("model = dict(\n")
    assert visdet_main_status(["convert-config", str(bad)]) == 1
    assert "bad.py:1: syntax error" in capsys.readouterr().err
