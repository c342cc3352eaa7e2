"""An MMDetection config (read by visdet.migrate.mmdet_config) -> a visdet experiment.

``convert(cfg)`` maps what visdet supports: the detector family (Faster R-CNN, Mask R-CNN,
RetinaNet, FCOS, ATSS) on its ``*_mmdet`` preset (MMDetection's inference conventions:
unrounded anchors, fixed strides, aligned RoIAlign), ResNet depth / frozen stages / norm /
style, the FPN's channels and extra levels, anchors, RPN and RoI sampling sizes, proposal
counts and NMS settings, the dense heads' assignment, loss and test settings, the optimizer,
warm-up and step or cosine schedule, epochs, validation interval, image sizes and flips,
normalisation (FCOS), COCO / VOC paths and batch sizes, the checkpoint to start from.

Every other setting of the MMDetection config is listed with the reason it was not carried
over: a different fixed behaviour in visdet, no equivalent, or a runtime setting that
visdet's own groups (trainer, callbacks, logger) configure. A setting whose value is what
visdet does anyway is neither carried nor listed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

FAMILIES = {
    "FasterRCNN": ("faster_rcnn", "faster_rcnn_r50_fpn_mmdet"),
    "MaskRCNN": ("mask_rcnn", "mask_rcnn_r50_fpn_mmdet"),
    "RetinaNet": ("retinanet", "retinanet_r50_fpn_mmdet"),
    "FCOS": ("fcos", "fcos_r50_fpn_mmdet"),
    "ATSS": ("atss", "atss"),
}
DEPTHS = (18, 34, 50, 101)
# top-level keys of MMDetection's runtime: visdet's trainer / callbacks / logger groups do this
RUNTIME = {
    "default_scope",
    "default_hooks",
    "env_cfg",
    "vis_backends",
    "visualizer",
    "log_level",
    "log_processor",
    "log_config",
    "checkpoint_config",
    "dist_params",
    "workflow",
    "opencv_num_threads",
    "mp_start_method",
    "custom_hooks",
    "launcher",
    "work_dir",
    "val_evaluator",
    "test_evaluator",
    "evaluation",
    "val_cfg",
    "test_cfg",
    "tta_model",
    "tta_pipeline",
    "randomness",
    "gpu_ids",
    "seed",
    "device",
    "custom_imports",
    "resume_from",
}
# helper variables that configs reference from their dataloaders (read through those)
HELPERS = {
    "dataset_type",
    "data_root",
    "train_pipeline",
    "test_pipeline",
    "val_pipeline",
    "img_norm_cfg",
    "file_client_args",
    "backend_args",
    "metainfo",
    "classes",
    "img_scale",
}
MISSING = object()


@dataclass
class Conversion:
    """What ``convert`` made: the experiment's values, its defaults list, and the report."""

    family: str
    preset: str
    values: dict[str, Any] = field(default_factory=dict)
    defaults: list[dict[str, str]] = field(default_factory=list)
    carried: list[tuple[str, str]] = field(default_factory=list)  # (mmdet key, visdet key)
    dropped: list[tuple[str, str]] = field(default_factory=list)  # (mmdet key, reason)
    version: str = "3.x"


class _Reader:
    """The MMDetection config with bookkeeping: which settings were read, carried, dropped."""

    def __init__(self, cfg: dict[str, Any], out: Conversion) -> None:
        self.cfg, self.out = cfg, out
        self.seen: set[str] = set()

    def get(self, path: str, default: Any = MISSING) -> Any:
        node: Any = self.cfg
        for part in path.split("."):
            if isinstance(node, dict) and part in node:
                node = node[part]
            elif isinstance(node, list | tuple) and part.isdigit() and int(part) < len(node):
                node = node[int(part)]
            else:
                return None if default is MISSING else default
        self.mark(path)
        return node

    def mark(self, path: str) -> None:
        self.seen.add(path)

    def set(self, visdet_key: str, value: Any, source: str) -> None:
        """Carry ``value`` (from MMDetection's ``source``) to ``visdet_key`` (dotted)."""
        node = self.out.values
        *parents, last = visdet_key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[last] = _plain(value)
        self.out.carried.append((source, visdet_key))

    def carry(self, path: str, visdet_key: str, convert: Callable[[Any], Any] | None = None):
        value = self.get(path)
        if value is not None:
            self.set(visdet_key, convert(value) if convert else value, path)
        return value

    def drop(self, path: str, reason: str) -> None:
        self.mark(path)
        self.out.dropped.append((path, reason))

    def expect(self, path: str, expected: Any, reason: str) -> None:
        """A setting visdet has fixed at ``expected``: dropped (with ``reason``) if it differs."""
        value = self.get(path)
        if value is not None and _plain(value) != _plain(expected):
            self.out.dropped.append((path, f"{_plain(value)!r}: {reason}"))

    def leaves(self, node: Any, prefix: str) -> list[str]:
        if isinstance(node, dict) and node:
            return [p for k, v in node.items() for p in self.leaves(v, f"{prefix}.{k}")]
        return [prefix]

    def report_unread(self, prefix: str, reason: str) -> None:
        node = self.get(prefix)
        for leaf in self.leaves(node, prefix):
            if not any(leaf == s or leaf.startswith(s + ".") for s in self.seen - {prefix}):
                self.out.dropped.append((leaf, reason))


def convert(cfg: dict[str, Any]) -> Conversion:
    """The visdet experiment for MMDetection config ``cfg`` (see the module docstring)."""
    model = cfg.get("model")
    if not isinstance(model, dict) or "type" not in model:
        raise ValueError("model.type: the config defines no model (is it a detector config?)")
    kind = model["type"]
    if kind not in FAMILIES:
        raise ValueError(
            f"model.type {kind!r}: visdet has no such family; it converts {sorted(FAMILIES)}"
        )
    family, preset = FAMILIES[kind]
    out = Conversion(family, preset, version="3.x" if _is_v3(cfg) else "2.x")
    r = _Reader(cfg, out)
    r.mark("model.type")
    out.defaults.append({"override /model": preset})
    _backbone(r)
    _neck(r, family)
    _head(r, family)
    _data(r, family)
    _schedule(r)
    _runtime(r)
    r.report_unread("model", "no visdet setting for it")
    return out


def _is_v3(cfg: dict) -> bool:
    return any(k in cfg for k in ("train_dataloader", "optim_wrapper", "param_scheduler"))


def _plain(value: Any) -> Any:
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


# -- backbone and neck --------------------------------------------------------------------
def _backbone(r: _Reader) -> None:
    b = "model.backbone"
    kind = r.get(f"{b}.type")
    if kind != "ResNet":
        raise ValueError(f"{b}.type {kind!r}: convert-config reads ResNet backbones only")
    depth = r.get(f"{b}.depth")
    if depth not in DEPTHS:
        raise ValueError(f"{b}.depth {depth!r}: visdet's ResNet has depths {DEPTHS}")
    r.set("backbone.depth", depth, f"{b}.depth")
    r.carry(f"{b}.frozen_stages", "backbone.frozen_stages")
    r.carry(f"{b}.style", "backbone.style")
    r.expect(f"{b}.num_stages", 4, "visdet's ResNet has 4 stages")
    r.expect(f"{b}.out_indices", [0, 1, 2, 3], "visdet's FPN reads all four stages")
    norm = r.get(f"{b}.norm_cfg", {}) or {}
    norm_type = norm.get("type", "BN")
    trains = norm.get("requires_grad", True)
    norm_eval = r.get(f"{b}.norm_eval", False)
    r.mark(f"{b}.norm_cfg.requires_grad")
    r.mark(f"{b}.norm_cfg.type")
    if norm_type in ("BN", "SyncBN") and norm_eval:
        r.set("backbone.norm", "frozen_bn", f"{b}.norm_eval")
        if trains:
            r.out.dropped.append(
                (
                    f"{b}.norm_cfg.requires_grad",
                    "True with norm_eval=True trains the norm layers' scale and shift with "
                    "frozen statistics; visdet's frozen_bn (torchvision's choice) keeps both "
                    "fixed",
                )
            )
    elif norm_type in ("BN", "SyncBN"):
        r.set("backbone.norm", "bn", f"{b}.norm_cfg.type")
        if norm_type == "SyncBN":
            r.set("trainer.sync_batchnorm", True, f"{b}.norm_cfg.type")
    else:
        r.drop(f"{b}.norm_cfg.type", f"{norm_type!r}: visdet's ResNet has BN and frozen BN")
    checkpoint = r.get(f"{b}.init_cfg.checkpoint") or r.get("model.pretrained")
    r.mark(f"{b}.init_cfg")
    if checkpoint:
        r.drop(
            f"{b}.init_cfg.checkpoint",
            f"{checkpoint!r}: visdet downloads nothing; set model.backbone.weights to a local file "
            "of those ImageNet weights (torchvision ResNet weights load directly)",
        )
    for key in ("dcn", "stage_with_dcn", "plugins", "with_cp"):
        if r.get(f"{b}.{key}") not in (None, False, (), []):
            hint = " (gradient checkpointing: model.backbone.checkpoint_stages)" * (
                key == "with_cp"
            )
            r.drop(f"{b}.{key}", f"not supported by visdet's ResNet{hint}")


def _neck(r: _Reader, family: str) -> None:
    n = "model.neck"
    kind = r.get(f"{n}.type")
    if kind != "FPN":
        raise ValueError(f"{n}.type {kind!r}: convert-config reads FPN necks only")
    r.carry(f"{n}.out_channels", "neck.out_channels")
    r.mark(f"{n}.in_channels")  # visdet derives them from the backbone
    r.expect(f"{n}.num_outs", 5, "visdet's FPN has 5 levels")
    start = r.get(f"{n}.start_level", 0)
    extra = r.get(f"{n}.add_extra_convs", False)
    relu = r.get(f"{n}.relu_before_extra_convs", False)
    if family in ("faster_rcnn", "mask_rcnn"):
        if start != 0 or extra:
            r.drop(f"{n}.add_extra_convs", "two-stage presets use P2-P6 with a max-pooled P6")
    else:
        if start != 1:
            r.drop(f"{n}.start_level", f"{start}: visdet's dense detectors use P3-P7")
        if extra in ("on_input", True):
            r.set("neck.p6p7_from", "c5", f"{n}.add_extra_convs")
        elif extra in ("on_output", "on_lateral"):
            r.set("neck.p6p7_from", "p5", f"{n}.add_extra_convs")
            if extra == "on_lateral":
                r.out.dropped.append((f"{n}.add_extra_convs", "'on_lateral': read as on_output"))
        r.set("neck.p7_relu", bool(relu), f"{n}.relu_before_extra_convs")
    norm = r.get(f"{n}.norm_cfg")
    if norm:
        kinds = {"BN": "bn", "SyncBN": "bn", "GN": "gn"}
        if norm.get("type") in kinds:
            r.set("neck.norm", kinds[norm["type"]], f"{n}.norm_cfg")
        else:
            r.drop(f"{n}.norm_cfg", f"{norm.get('type')!r}: visdet's FPN norms are bn and gn")


# -- heads ------------------------------------------------------------------------------------
def _anchors(r: _Reader, path: str, family: str) -> None:
    g = f"{path}.anchor_generator"
    if r.get(f"{g}.type", "AnchorGenerator") != "AnchorGenerator":
        r.drop(f"{g}.type", "visdet's anchors are MMDetection's AnchorGenerator")
        return
    strides = [int(s) for s in r.get(f"{g}.strides", [])]
    ratios = _plain(r.get(f"{g}.ratios", [0.5, 1.0, 2.0]))
    scales = r.get(f"{g}.scales")
    base = r.get(f"{g}.octave_base_scale")
    per_octave = r.get(f"{g}.scales_per_octave", 1)
    d = "model.detector"
    if family in ("faster_rcnn", "mask_rcnn"):
        if not scales or len(scales) != 1:
            r.drop(f"{g}.scales", f"{scales!r}: visdet's RPN has one anchor size per level")
            return
        r.set(f"{d}.anchor_sizes", [[float(scales[0] * s)] for s in strides], f"{g}.scales")
        r.set(f"{d}.aspect_ratios", ratios, f"{g}.ratios")
        r.set(f"{d}.anchor_strides", strides, f"{g}.strides")
    elif family == "retinanet":
        r.set(
            f"{d}.anchor_base_sizes", [float(base * s) for s in strides], f"{g}.octave_base_scale"
        )
        r.set(f"{d}.scales_per_octave", int(per_octave), f"{g}.scales_per_octave")
        r.set(f"{d}.aspect_ratios", ratios, f"{g}.ratios")
        r.set(f"{d}.anchor_strides", strides, f"{g}.strides")
    elif family == "atss":
        r.set(f"{d}.anchor_sizes", [float(base * s) for s in strides], f"{g}.octave_base_scale")
        r.expect(f"{g}.scales_per_octave", 1, "visdet's ATSS has one anchor per location")
        r.expect(f"{g}.ratios", [1.0], "visdet's ATSS anchors are square")
        r.expect(f"{g}.strides", [8, 16, 32, 64, 128], "visdet's ATSS levels are P3-P7")
    r.mark(f"{g}.center_offset")
    r.expect(f"{g}.center_offset", 0.0, "visdet's anchors are centred at offset 0")


def _nms_iou(r: _Reader, path: str, visdet_key: str | None, fixed: float | None = None) -> None:
    kind = r.get(f"{path}.type", "nms")
    if kind != "nms":
        r.drop(f"{path}.type", f"{kind!r}: visdet runs plain NMS")
    if visdet_key:
        r.carry(f"{path}.iou_threshold", visdet_key)
    elif fixed is not None:
        r.expect(f"{path}.iou_threshold", fixed, "fixed in visdet")


LOSSES = {
    "L1Loss": "l1",
    "SmoothL1Loss": "smooth_l1",
    "GIoULoss": "giou",
    "DIoULoss": "diou",
    "CIoULoss": "ciou",
}
TORCHVISION_LOSSES = "visdet's two-stage losses are torchvision's (smooth L1, beta 1/9)"


def _head(r: _Reader, family: str) -> None:
    d = "model.detector"
    num_classes = None
    if family in ("faster_rcnn", "mask_rcnn"):
        rpn, roi, tr, te = "model.rpn_head", "model.roi_head", "model.train_cfg", "model.test_cfg"
        _anchors(r, rpn, family)
        r.mark(f"{rpn}.type")
        r.mark(f"{rpn}.in_channels")
        r.mark(f"{rpn}.feat_channels")
        r.expect(f"{rpn}.bbox_coder.target_stds", [1.0] * 4, "visdet's RPN box coding")
        r.expect(f"{rpn}.bbox_coder.target_means", [0.0] * 4, "visdet's RPN box coding")
        r.mark(f"{rpn}.bbox_coder.type")
        r.mark(f"{rpn}.loss_cls")
        r.expect(f"{rpn}.loss_bbox.type", "SmoothL1Loss", TORCHVISION_LOSSES)
        r.mark(f"{rpn}.loss_bbox")
        r.expect(f"{tr}.rpn.assigner.pos_iou_thr", 0.7, "visdet's RPN matcher")
        r.expect(f"{tr}.rpn.assigner.neg_iou_thr", 0.3, "visdet's RPN matcher")
        r.mark(f"{tr}.rpn.assigner")
        r.carry(f"{tr}.rpn.sampler.num", f"{d}.rpn_batch_size_per_image")
        r.expect(f"{tr}.rpn.sampler.pos_fraction", 0.5, "visdet's RPN sampler")
        r.mark(f"{tr}.rpn.sampler")
        for key in ("allowed_border", "pos_weight", "debug"):
            r.mark(f"{tr}.rpn.{key}")
        proposal = f"{tr}.rpn_proposal"
        r.carry(f"{proposal}.nms_pre", f"{d}.rpn_pre_nms_top_n_train")
        r.carry(f"{proposal}.max_per_img", f"{d}.rpn_post_nms_top_n_train")
        _nms_iou(r, f"{proposal}.nms", None, 0.7)
        r.mark(f"{proposal}.min_bbox_size")
        r.carry(f"{te}.rpn.nms_pre", f"{d}.rpn_pre_nms_top_n_test")
        r.carry(f"{te}.rpn.max_per_img", f"{d}.rpn_post_nms_top_n_test")
        _nms_iou(r, f"{te}.rpn.nms", None, 0.7)
        r.mark(f"{te}.rpn.min_bbox_size")
        ext = f"{roi}.bbox_roi_extractor"
        r.carry(f"{ext}.roi_layer.sampling_ratio", f"{d}.roi_align_sampling_ratio")
        r.set(f"{d}.roi_align_aligned", r.get(f"{ext}.roi_layer.aligned", True), f"{ext}.roi_layer")
        r.expect(f"{ext}.roi_layer.output_size", 7, "visdet's box head reads 7x7 RoIs")
        for key in ("type", "out_channels", "featmap_strides", "roi_layer.type"):
            r.mark(f"{ext}.{key}")
        head = f"{roi}.bbox_head"
        head_type = r.get(f"{head}.type")
        if head_type == "Shared2FCBBoxHead":
            r.set(f"{d}.box_head_convs", 0, f"{head}.type")
        elif head_type == "Shared4Conv1FCBBoxHead":
            r.set(f"{d}.box_head_convs", 4, f"{head}.type")
            norm = r.get(f"{head}.norm_cfg") or {}
            if norm.get("type") == "GN":
                r.drop(f"{head}.norm_cfg", "GN: visdet's conv box head uses BN")
        else:
            r.drop(f"{head}.type", f"{head_type!r}: visdet's box heads are 2fc and 4conv1fc")
        r.carry(f"{head}.fc_out_channels", f"{d}.representation_size")
        num_classes = r.get(f"{head}.num_classes")
        r.expect(f"{head}.reg_class_agnostic", False, "visdet regresses one box per class")
        r.expect(f"{head}.bbox_coder.target_stds", [0.1, 0.1, 0.2, 0.2], "visdet's box coding")
        r.expect(f"{head}.bbox_coder.target_means", [0.0] * 4, "visdet's box coding")
        r.expect(f"{head}.loss_bbox.type", "SmoothL1Loss", TORCHVISION_LOSSES)
        for key in ("in_channels", "roi_feat_size", "bbox_coder.type", "loss_cls", "loss_bbox"):
            r.mark(f"{head}.{key}")
        r.mark(f"{roi}.type")
        r.expect(f"{tr}.rcnn.assigner.pos_iou_thr", 0.5, "visdet's RoI matcher")
        r.expect(f"{tr}.rcnn.assigner.neg_iou_thr", 0.5, "visdet's RoI matcher")
        r.mark(f"{tr}.rcnn.assigner")
        r.carry(f"{tr}.rcnn.sampler.num", f"{d}.box_batch_size_per_image")
        r.expect(f"{tr}.rcnn.sampler.pos_fraction", 0.25, "visdet's RoI sampler")
        r.mark(f"{tr}.rcnn.sampler")
        for key in ("pos_weight", "debug", "mask_size"):
            r.mark(f"{tr}.rcnn.{key}")
        r.carry(f"{te}.rcnn.score_thr", f"{d}.box_score_thresh")
        _nms_iou(r, f"{te}.rcnn.nms", f"{d}.box_nms_thresh")
        r.carry(f"{te}.rcnn.max_per_img", f"{d}.box_detections_per_img")
        if family == "mask_rcnn":
            mask = f"{roi}.mask_head"
            convs = r.get(f"{mask}.num_convs", 4)
            width = r.get(f"{mask}.conv_out_channels", 256)
            r.set(f"{d}.mask_layers", [width] * convs, f"{mask}.num_convs")
            r.mark(f"{mask}.conv_out_channels")
            mext = f"{roi}.mask_roi_extractor"
            r.carry(f"{mext}.roi_layer.output_size", f"{d}.mask_roi_size")
            r.carry(f"{mext}.roi_layer.sampling_ratio", f"{d}.mask_roi_sampling_ratio")
            for key in ("type", "out_channels", "featmap_strides", "roi_layer.type"):
                r.mark(f"{mext}.{key}")
            for key in ("type", "in_channels", "num_classes", "loss_mask"):
                r.mark(f"{mask}.{key}")
            r.carry(f"{te}.rcnn.mask_thr_binary", f"{d}.mask_threshold")
    else:
        head = "model.bbox_head"
        _anchors(r, head, family)
        num_classes = r.get(f"{head}.num_classes")
        r.carry(f"{head}.stacked_convs", f"{d}.head_num_convs")
        for key in (
            "type",
            "in_channels",
            "feat_channels",
            "strides",
            "bbox_coder",
            "bbox_post_processes",
            "loss_centerness",
            "anchor_generator.type",
        ):
            r.mark(f"{head}.{key}")
        loss = r.get(f"{head}.loss_cls") or {}
        if loss.get("type") == "FocalLoss":
            r.carry(f"{head}.loss_cls.alpha", f"{d}.focal_alpha")
            r.carry(f"{head}.loss_cls.gamma", f"{d}.focal_gamma")
            r.mark(f"{head}.loss_cls")
        elif loss:
            r.drop(
                f"{head}.loss_cls.type",
                f"{loss.get('type')!r}: visdet's dense heads use focal loss",
            )
        box_loss = r.get(f"{head}.loss_bbox.type")
        if family == "retinanet" and box_loss in LOSSES:
            r.set(f"{d}.box_loss", LOSSES[box_loss], f"{head}.loss_bbox.type")
        elif family == "atss":
            r.expect(f"{head}.loss_bbox.type", "GIoULoss", "visdet's ATSS uses GIoU")
            r.carry(f"{head}.loss_bbox.loss_weight", f"{d}.box_loss_weight")
        elif family == "fcos":
            r.expect(f"{head}.loss_bbox.type", "GIoULoss", "visdet's FCOS box loss is GIoU")
        r.mark(f"{head}.loss_bbox")
        tr, te = "model.train_cfg", "model.test_cfg"
        if family == "retinanet":
            r.carry(f"{tr}.assigner.pos_iou_thr", f"{d}.fg_iou_thresh")
            r.carry(f"{tr}.assigner.neg_iou_thr", f"{d}.bg_iou_thresh")
            r.expect(f"{tr}.assigner.min_pos_iou", 0, "visdet keeps low-quality matches")
            r.mark(f"{tr}.assigner")
        elif family == "atss":
            r.carry(f"{tr}.assigner.topk", f"{d}.topk")
            r.mark(f"{tr}.assigner")
        elif family == "fcos":
            r.set(
                f"{d}.anchor_sizes",
                _plain(r.get(f"{head}.strides", [8, 16, 32, 64, 128])),
                f"{head}.strides",
            )
            r.set(
                f"{d}.anchor_strides",
                _plain(r.get(f"{head}.strides", [8, 16, 32, 64, 128])),
                f"{head}.strides",
            )
            if r.get(f"{head}.center_sampling", False):
                r.carry(f"{head}.center_sample_radius", f"{d}.center_sampling_radius")
            else:
                r.drop(
                    f"{head}.center_sampling",
                    "False (MMDetection's default): visdet samples centres",
                )
            # visdet's FCOS is MMDetection's center-normbbox-centeronreg-giou variant
            for key, what in (
                ("norm_on_bbox", "distances normalised by the stride"),
                ("centerness_on_reg", "centre-ness on the box branch"),
            ):
                if not r.get(f"{head}.{key}", False):
                    r.drop(f"{head}.{key}", f"False (the default): visdet's FCOS has {what}")
            r.expect(f"{head}.dcn_on_last_conv", False, "no deformable convs in visdet")
        for key in ("allowed_border", "pos_weight", "debug"):
            r.mark(f"{tr}.{key}")
        r.carry(f"{te}.nms_pre", f"{d}.topk_candidates")
        r.carry(f"{te}.score_thr", f"{d}.score_thresh")
        _nms_iou(r, f"{te}.nms", f"{d}.nms_thresh")
        r.carry(f"{te}.max_per_img", f"{d}.detections_per_img")
        r.mark(f"{te}.min_bbox_size")
    if num_classes is not None:
        r.set("data.num_classes", num_classes, "num_classes")
    _normalisation(r, family)


def _normalisation(r: _Reader, family: str) -> None:
    pre = r.get("model.data_preprocessor") or r.get("img_norm_cfg") or {}
    r.mark("model.data_preprocessor")
    mean = _plain(pre.get("mean", [123.675, 116.28, 103.53]))
    std = _plain(pre.get("std", [58.395, 57.12, 57.375]))
    rgb = pre.get("bgr_to_rgb", pre.get("to_rgb", True))
    imagenet = mean == [123.675, 116.28, 103.53] and std == [58.395, 57.12, 57.375] and rgb
    if pre.get("pad_size_divisor", 32) != 32:
        r.out.dropped.append(("model.data_preprocessor.pad_size_divisor", "visdet pads to 32"))
    if imagenet:
        return
    if family == "fcos":
        d = "model.detector"
        r.set(f"{d}.channel_order", "rgb" if rgb else "bgr", "model.data_preprocessor")
        r.set(f"{d}.image_mean", [m / 255 for m in mean], "model.data_preprocessor.mean")
        r.set(f"{d}.image_std", [s / 255 for s in std], "model.data_preprocessor.std")
    else:
        r.out.dropped.append(
            (
                "model.data_preprocessor",
                f"mean {mean}, std {std}, {'RGB' if rgb else 'BGR'}: only visdet's FCOS takes "
                "another normalisation; this family normalises RGB with ImageNet's statistics",
            )
        )


# -- data ---------------------------------------------------------------------------------------
def _data(r: _Reader, family: str) -> None:
    v3 = r.out.version == "3.x"
    train = "train_dataloader.dataset" if v3 else "data.train"
    val = "val_dataloader.dataset" if v3 else "data.val"
    for split in (train, val):
        if r.get(f"{split}.type") in ("RepeatDataset", "ClassBalancedDataset"):
            r.drop(f"{split}.type", "dataset wrapper: visdet repeats by epochs / data.sampler")
            if split == train:
                train = f"{split}.dataset"
            else:
                val = f"{split}.dataset"
    kind = r.get(f"{train}.type")
    root = r.get(f"{train}.data_root") or r.get("data_root") or ""
    if kind == "CocoDataset":
        r.out.defaults.append({"override /data": "coco"})
        r.set("data.source.root", str(root).rstrip("/") or "???", "data_root")
        for split, name in ((train, "train"), (val, "val")):
            ann = str(r.get(f"{split}.ann_file") or "")
            images = r.get(f"{split}.data_prefix.img") or r.get(f"{split}.img_prefix") or ""
            r.mark(f"{split}.data_prefix")
            r.set(f"data.source.{name}_ann", _relative(ann, root), f"{split}.ann_file")
            r.set(
                f"data.source.{name}_images",
                _relative(str(images), root).rstrip("/"),
                f"{split}.data_prefix",
            )
    elif kind == "VOCDataset":
        r.out.defaults.append({"override /data": "voc"})
        r.set("data.source.root", str(root).rstrip("/") or "???", "data_root")
        r.drop(f"{train}.ann_file", "visdet's VOC source reads data.source.train_split/val_split")
        r.drop(f"{val}.ann_file", "visdet's VOC source reads data.source.train_split/val_split")
    elif kind is not None:
        r.drop(
            f"{train}.type",
            f"{kind!r}: visdet reads COCO, VOC and YOLO folders (data=coco|voc|yolo)",
        )
    classes = r.get(f"{train}.metainfo.classes") or r.get(f"{train}.classes")
    if classes:
        r.drop(
            f"{train}.metainfo.classes",
            f"{len(classes)} classes: visdet takes the classes of the annotation file "
            "(keep only those in it)",
        )
    r.mark(f"{train}.metainfo")
    r.mark(f"{val}.metainfo")
    r.mark(f"{val}.classes")
    for split in (train, val):
        for key in ("type", "data_root", "test_mode", "backend_args", "file_client_args"):
            r.mark(f"{split}.{key}")
    filt = r.get(f"{train}.filter_cfg") or {}
    if filt.get("filter_empty_gt", True) is False:
        r.drop(f"{train}.filter_cfg.filter_empty_gt", "visdet keeps images without boxes")
    r.mark(f"{train}.filter_cfg")
    if v3:
        r.carry("train_dataloader.batch_size", "data.batch_size")
        r.carry("train_dataloader.num_workers", "data.num_workers")
        for key in ("persistent_workers", "sampler", "batch_sampler", "drop_last"):
            r.mark(f"train_dataloader.{key}")
        r.mark("val_dataloader")
        r.mark("test_dataloader")
    else:
        r.carry("data.samples_per_gpu", "data.batch_size")
        r.carry("data.workers_per_gpu", "data.num_workers")
        r.mark("data.test")
        r.mark("data")
    _pipeline(r, r.get(f"{train}.pipeline") or [], f"{train}.pipeline", train=True)
    _pipeline(r, r.get(f"{val}.pipeline") or [], f"{val}.pipeline", train=False)
    if family == "mask_rcnn":
        r.set("data.masks", True, "model.type")


def _relative(path: str, root: Any) -> str:
    root = str(root or "")
    return path[len(root) :].lstrip("/") if root and path.startswith(root) else path


def _short_side(scale: Any) -> tuple[int, int]:
    """MMDetection's (long, short) scale -> (short, long) in pixels."""
    a, b = (int(x) for x in scale)
    return min(a, b), max(a, b)


def _pipeline(r: _Reader, steps: list, path: str, train: bool) -> None:
    ignored = {
        "LoadImageFromFile",
        "LoadAnnotations",
        "PackDetInputs",
        "DefaultFormatBundle",
        "Collect",
        "ImageToTensor",
        "Normalize",
        "Pad",
        "MultiScaleFlipAug",
        "LoadImageFromWebcam",
    }
    for i, step in enumerate(steps):
        kind = step.get("type") if isinstance(step, dict) else None
        where = f"{path}.{i}"
        r.mark(where)
        if kind == "MultiScaleFlipAug":  # 2.x test pipelines wrap the real steps
            scale = step.get("img_scale")
            if scale and not train:
                short, long = _short_side(scale)
                r.set("aug.val_size", short, f"{where}.img_scale")
                r.set("aug.max_size", long, f"{where}.img_scale")
            continue
        if kind in ("Resize", "RandomResize", "RandomChoiceResize"):
            scales = step.get("scales") or step.get("img_scale") or step.get("scale")
            scales = (
                scales
                if isinstance(scales, list) and isinstance(scales[0], list | tuple)
                else [scales]
            )
            if kind == "RandomResize" or step.get("multiscale_mode") == "range":
                (s0, l0), (s1, l1) = _short_side(scales[0]), _short_side(scales[-1])
                sizes = list(range(min(s0, s1), max(s0, s1) + 1, 32))
                r.out.dropped.append(
                    (
                        where,
                        f"a size range {min(s0, s1)}-{max(s0, s1)}: "
                        "visdet samples from the list aug.train_sizes (every 32 px)",
                    )
                )
                long = max(l0, l1)
            else:
                pairs = [_short_side(s) for s in scales]
                sizes, long = sorted({s for s, _ in pairs}), max(lg for _, lg in pairs)
            if not step.get("keep_ratio", True):
                r.out.dropped.append((where, "keep_ratio=False: visdet keeps the aspect ratio"))
            if train:
                r.set("aug.train_sizes", sizes, f"{where}.scale")
                r.set("aug.max_size", long, f"{where}.scale")
            else:
                r.set("aug.val_size", sizes[-1], f"{where}.scale")
            continue
        if kind == "RandomFlip":
            prob = step.get("prob", step.get("flip_ratio", 0.5))
            direction = step.get("direction", "horizontal")
            if direction != "horizontal":
                r.out.dropped.append(
                    (where, f"flip direction {direction!r}: visdet flips horizontally")
                )
            if train:
                r.set("aug.hflip", float(prob), f"{where}.prob")
            continue
        if kind in ignored:
            continue
        r.out.dropped.append(
            (
                where,
                f"pipeline step {kind!r}: no visdet augmentation of that name "
                "(docs/augmentation.md lists visdet's)",
            )
        )


# -- optimizer and schedule -----------------------------------------------------------------------
def _schedule(r: _Reader) -> None:
    v3 = r.out.version == "3.x"
    opt = "optim_wrapper.optimizer" if v3 else "optimizer"
    kind = r.get(f"{opt}.type")
    if kind == "SGD":
        r.out.defaults.append({"override /optim": "sgd"})
        r.carry(f"{opt}.lr", "optim.lr")
        r.carry(f"{opt}.momentum", "optim.momentum")
        r.carry(f"{opt}.weight_decay", "optim.weight_decay")
    elif kind == "AdamW":
        r.out.defaults.append({"override /optim": "adamw"})
        r.carry(f"{opt}.lr", "optim.lr")
        r.carry(f"{opt}.weight_decay", "optim.weight_decay")
        r.carry(f"{opt}.betas", "optim.betas")
    elif kind is not None:
        r.drop(f"{opt}.type", f"{kind!r}: visdet's optimizers are sgd and adamw")
    if r.get(f"{opt}.lr") is not None:
        r.out.dropped.append(
            (
                f"{opt}.lr",
                "kept as is; MMDetection sets it for its total batch (8 GPUs x "
                "samples per GPU, auto_scale_lr.base_batch_size): scale it with yours",
            )
        )
    wrapper_type = r.get("optim_wrapper.type")
    if wrapper_type == "AmpOptimWrapper" or r.get("fp16"):
        r.set("trainer.precision", "16-mixed", "optim_wrapper.type" if v3 else "fp16")
        r.mark("fp16")
    clip = r.get("optim_wrapper.clip_grad") if v3 else r.get("optimizer_config.grad_clip")
    if clip:
        r.set("trainer.gradient_clip_val", clip.get("max_norm"), "clip_grad.max_norm")
    r.mark("optimizer_config")
    r.mark("optim_wrapper.type")
    if r.get("optim_wrapper.paramwise_cfg") or r.get("paramwise_cfg"):
        r.drop("optim_wrapper.paramwise_cfg", "per-parameter settings: use optim.param_groups")
    r.mark("auto_scale_lr")
    epochs = (
        r.get("train_cfg.max_epochs")
        if v3
        else (r.get("runner.max_epochs") or r.get("total_epochs"))
    )
    r.mark("runner")
    r.mark("total_epochs")
    r.mark("train_cfg.type")
    if epochs:
        r.set("trainer.max_epochs", int(epochs), "max_epochs")
    iters = r.get("train_cfg.max_iters") if v3 else r.get("runner.max_iters")
    if iters:
        r.set("trainer.max_steps", int(iters), "max_iters")
    interval = r.get("train_cfg.val_interval") if v3 else r.get("evaluation.interval")
    if interval:
        r.set("trainer.check_val_every_n_epoch", int(interval), "val_interval")
    warmup_steps, warmup_factor, milestones, gamma, policy = None, None, None, 0.1, None
    if v3:
        for i, s in enumerate(r.get("param_scheduler") or []):
            r.mark(f"param_scheduler.{i}")
            if s.get("type") == "LinearLR" and not s.get("by_epoch", True):
                warmup_steps, warmup_factor = (
                    s.get("end", 0) - s.get("begin", 0),
                    s.get("start_factor", 1 / 3),
                )
            elif s.get("type") == "MultiStepLR":
                policy, milestones, gamma = "step", s.get("milestones"), s.get("gamma", 0.1)
            elif s.get("type") in ("CosineAnnealingLR",):
                policy = "cosine"
            else:
                r.out.dropped.append(
                    (
                        f"param_scheduler.{i}",
                        f"{s.get('type')!r}: visdet's schedules: warm-up + steps, cosine",
                    )
                )
    else:
        lr = r.get("lr_config") or {}
        r.mark("lr_config")
        policy = {"step": "step", "CosineAnnealing": "cosine"}.get(lr.get("policy"))
        if lr.get("policy") and policy is None:
            r.out.dropped.append(
                (
                    "lr_config.policy",
                    f"{lr['policy']!r}: visdet's schedules are step, cosine, one-cycle",
                )
            )
        if lr.get("warmup") == "linear":
            warmup_steps, warmup_factor = lr.get("warmup_iters"), lr.get("warmup_ratio")
        milestones, gamma = lr.get("step"), lr.get("gamma", 0.1)
    if policy == "cosine":
        r.out.defaults.append({"override /sched": "cosine"})
    elif policy == "step":
        r.out.defaults.append({"override /sched": "warmup_multistep"})
        if milestones and epochs:
            fractions = [round(m / epochs, 6) for m in milestones]
            r.set("sched.milestones", fractions, "milestones (epochs / max_epochs)")
        r.set("sched.gamma", gamma, "gamma")
    if warmup_steps is not None:
        r.set("sched.warmup_steps", int(warmup_steps), "warm-up iterations")
        r.set("sched.warmup_factor", warmup_factor, "warm-up start factor")


def _runtime(r: _Reader) -> None:
    load_from = r.get("load_from")
    if load_from:
        r.set("model.init_from", load_from, "load_from")
    if r.get("resume"):
        r.drop("resume", "visdet resumes with ckpt_path=<last.ckpt> or resume_if_exists=true")
    for key in sorted(r.cfg):
        if key in RUNTIME:
            if key not in r.seen:
                r.drop(key, "runtime setting: visdet's trainer, callbacks and logger groups")
        elif key in HELPERS or key == "model":
            continue
        elif not any(s == key or s.startswith(key + ".") for s in r.seen):
            r.drop(key, "no visdet setting for it")
