"""Every config option composes and validates; bad keys, types and missing values are named."""

import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from visdet.cli import main as visdet_main
from visdet.config.validate import ConfigError, validate_config

CONF = Path(__file__).parents[2] / "conf"
GROUPS = [
    "data",
    "model",
    "backbone",
    "neck",
    "aug",
    "optim",
    "sched",
    "trainer",
    "callbacks",
    "logger",
    "experiment",
    "debug",
]


def options(group):
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


def compose_cfg(overrides=()):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("train", overrides=["paths.output_dir=/tmp/visdet-test", *overrides])


@pytest.mark.parametrize("group,option", [(g, o) for g in GROUPS for o in options(g)])
def test_every_option_composes_and_validates(group, option):
    required = {
        ("data", "coco"): ["data.source.root=/data/coco"],
        ("data", "auto"): ["data.root=/data/x"],
        ("data", "voc"): ["data.source.root=/data/x"],
        ("data", "yolo"): ["data.source.data_yaml=/data/x/data.yaml"],
    }
    extra = required.get((group, option), [])
    cfg = compose_cfg([f"{group}={option}", *extra])
    validate_config(cfg)


@pytest.mark.parametrize(
    "addition",
    [
        "optim/param_groups=discriminative",
        "callbacks/lr_finder=default",
        "callbacks/freeze_unfreeze=default",
        "callbacks/progressive_resize=default",
        "model/lora=default",
        "callbacks/benchmark=default",
    ],
)
def test_technique_configs_compose_and_validate(addition):
    validate_config(compose_cfg([f"+{addition}"]))


def test_unknown_key_names_it_and_the_allowed_ones():
    cfg = compose_cfg(["+optim.lrr=0.1"])
    with pytest.raises(ConfigError, match=r"optim\.lrr: unknown key .*allowed: .*lr"):
        validate_config(cfg)


def test_wrong_type_and_missing_value():
    with pytest.raises(ConfigError, match=r"data\.batch_size: expected int, got str"):
        validate_config(compose_cfg(["data.batch_size=eight"]))
    with pytest.raises(ConfigError, match=r"data\.source\.root: missing value"):
        validate_config(compose_cfg(["data=coco"]))
    with pytest.raises(ConfigError, match=r"backbone\.depth: expected int"):
        validate_config(compose_cfg(["backbone.depth=[1]"]))
    with pytest.raises(ConfigError, match=r"model\.detector\.rpn_num_convs: expected int"):
        validate_config(compose_cfg(["+model.detector.rpn_num_convs=two"]))
    with pytest.raises(ConfigError, match=r"optim\.lr: expected float or int, got str 'abc'"):
        validate_config(compose_cfg(["optim.lr=abc"]))
    with pytest.raises(ConfigError, match=r"trainer\.max_epochs: 0 trains nothing"):
        validate_config(compose_cfg(["trainer.max_epochs=0"]))
    with pytest.raises(ConfigError, match=r"nonsense: unknown top-level key"):
        validate_config(compose_cfg(["+nonsense=1"]))


def test_help_lists_the_groups(capsys, monkeypatch):
    # in process (the same Hydra app as train.py; a subprocess spends ~10 s importing)
    monkeypatch.setattr(sys, "argv", list(sys.argv))
    with pytest.raises(SystemExit):
        visdet_main(["train", "--help"])
    out = capsys.readouterr().out
    for group in (
        "data: auto, coco, shapes, voc, yolo",
        "model: atss, atss_r18_fpn, faster_rcnn, faster_rcnn_r18_fpn, faster_rcnn_r50_fpn",
        "backbone: convnext_base, convnext_small, convnext_tiny, mobilenet_v3_large, resnet101, "
        "resnet18, resnet34, resnet50, resnet50_bn, swin_b, swin_s, swin_t, vit_b14, vit_b16, "
        "vit_s14, vit_s16",
        "neck: fpn, fpn_bn, fpn_p6p7, pafpn, pafpn_p6p7, simple_fpn, simple_fpn_p6p7",
        "optim: adamw, sgd",
        "trainer: cpu, ddp, ddp_cpu, deepspeed, default, fsdp, gpu",
        "logger: csv, mlflow, tensorboard, wandb",
    ):
        assert group in out, out


def test_train_stops_with_one_line_naming_the_key(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "argv", list(sys.argv))
    with pytest.raises(SystemExit) as stopped:
        visdet_main(["train", "+optim.lrr=0.1", f"hydra.run.dir={tmp_path}"])
    message = str(stopped.value.code)
    assert message.startswith("config error: optim.lrr: unknown key") and "\n" not in message


def test_family_backbone_and_neck_compose_n_plus_m_plus_k():
    from hydra.utils import instantiate

    cfg = compose_cfg(["model=faster_rcnn", "backbone=resnet50", "neck=fpn", "data.num_classes=3"])
    validate_config(cfg)
    detector = instantiate(cfg.model.detector)
    assert detector.backbone.depth == 50 and detector.neck.out_channels == 256
    assert detector.roi_heads.box_predictor.cls_score.out_features == 4
    # the main job's preset on another backbone keeps its own neck and head settings
    cfg = compose_cfg(["backbone=resnet34"])
    assert (cfg.backbone.depth, cfg.neck.out_channels) == (34, 128)
    assert cfg.model.detector.representation_size == 512
