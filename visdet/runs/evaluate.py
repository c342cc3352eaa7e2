"""The run behind ``visdet eval``: evaluate a checkpoint on a dataset split, or any COCO
results file against its annotations, and write the evaluation outputs
(visdet.runs.evaluation_report) into the run directory.

    visdet eval ckpt=PATH [data=coco data.source.root=DIR] [split=val] [tile.size=512 ...]
    visdet eval detections=RESULTS.json annotations=GT.json [images=DIR] [iou_type=bbox]

A checkpoint is evaluated on the data of its own run (the ``config`` stored in it) unless
``data=`` selects another dataset; its detections are written to ``detections.json`` (COCO
results format, the dataset's category ids).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader
from tqdm import tqdm

from visdet.config.validate import validate_config
from visdet.data.coco import CocoDetection, DatasetError, load_coco
from visdet.data.datamodule import collate_detection
from visdet.data.instance_masks import encode_masks
from visdet.inference import Detector
from visdet.metrics.results_file import load_results, read_results
from visdet.models.families import predicts_masks
from visdet.runs.evaluation_report import EvalSettings, write_evaluation
from visdet.runs.model_choice import chosen_preset, tool_settings

log = logging.getLogger(__name__)

TOP_LEVEL = {
    "ckpt", "model", "num_classes", "data", "split", "device", "batch_size", "num_workers",
    "score_thresh", "max_det", "tile", "detections", "annotations", "images", "iou_type",
    "area_ranges", "backend", "confusion", "tide", "report", "paths", "hydra", "task_name",
}  # fmt: skip
SUMMARY_KEYS = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR100")
PREFIX = {"bbox": "", "segm": "mask_"}  # of the stats in the printed summary


def run_eval(cfg: DictConfig) -> dict:
    """Evaluate as configured; returns what metrics.json holds."""
    validate_config(tool_settings(cfg), top_level=TOP_LEVEL, required=())
    start = time.perf_counter()
    out = Path(cfg.paths.output_dir)
    has_ckpt, has_results = cfg.get("ckpt") is not None, cfg.get("detections") is not None
    if has_ckpt == has_results:
        raise ValueError(
            "give either ckpt=PATH (evaluate a checkpoint on a dataset) or "
            "detections=RESULTS.json annotations=GT.json (evaluate a results file)"
        )
    if has_results:
        if cfg.get("annotations") is None:
            raise ValueError("detections= needs annotations=GT.json (the COCO annotation file)")
        coco_gt = load_coco(cfg.annotations)
        raw = read_results(cfg.detections)
        entries = [r for r in raw if isinstance(r, dict)]
        masks = bool(raw) and len(entries) == len(raw) and all("segmentation" in r for r in raw)
        boxes = not masks or all("bbox" in r for r in entries)
        settings = eval_settings(cfg, masks, boxes)
        names = Path(cfg.annotations).name, Path(cfg.detections).name
        for iou_type in sorted(settings.iou_types):  # checked for each; segm (RLEs) kept
            results = load_results(raw, coco_gt, iou_type, *names)
        image_dir = cfg.get("images")
        source = {"detections": str(cfg.detections), "annotations": str(cfg.annotations)}
        title = f"Evaluation of {Path(cfg.detections).name}"
    else:
        detector = Detector.from_checkpoint(
            cfg.ckpt, model=chosen_preset(cfg), num_classes=cfg.get("num_classes"),
            device=cfg.get("device", "cpu"),
        )  # fmt: skip
        masks = predicts_masks(detector.detector)
        settings = eval_settings(cfg, masks)
        if "segm" in settings.iou_types and not masks:
            raise ValueError(
                f"iou_type=segm needs a model that predicts instance masks; {cfg.ckpt} holds a "
                f"{type(detector.detector).__name__}"
            )
        dataset = eval_dataset(cfg, detector)
        coco_gt, image_dir = dataset.coco, dataset.image_dir
        predicting = time.perf_counter()
        results = predict_dataset(detector, dataset, cfg)
        speed = len(dataset) / max(time.perf_counter() - predicting, 1e-9)
        source = {"checkpoint": str(cfg.ckpt), "annotations": str(dataset.ann_file),
                  "images_per_s": round(speed, 2)}  # fmt: skip
        title = f"Evaluation of {Path(cfg.ckpt).name} on {Path(dataset.ann_file).name}"
    # time_s: everything up to the evaluation (reading or predicting the detections)
    extra = {"source": source, "time_s": round(time.perf_counter() - start, 1)}
    settings = EvalSettings(**{**settings.__dict__, "extra": extra})
    metrics = write_evaluation(coco_gt, results, out, image_dir, settings, title, has_ckpt)
    summary = " ".join(
        f"{PREFIX[t]}{k}={metrics[t][k]:.4f}" for t in settings.iou_types for k in SUMMARY_KEYS
    )
    speed = f" ({source['images_per_s']} images/s)" if "images_per_s" in source else ""
    print(f"eval: {summary} images={metrics['num_images']}{speed} -> {out}", flush=True)
    return metrics


def eval_settings(cfg: DictConfig, masks: bool = False, boxes: bool = True) -> EvalSettings:
    """The evaluation settings of ``cfg``; ``masks``: the detections have instance masks (a
    mask model's, or a results file's) and ``boxes`` boxes, so ``iou_type=null`` evaluates
    segm beside bbox, or segm alone for a results file of masks without boxes."""
    iou_type = cfg.get("iou_type")
    if iou_type is None:
        iou_types = ("bbox",) * boxes + ("segm",) * masks
    else:
        iou_types = tuple(iou_type) if OmegaConf.is_list(iou_type) else (str(iou_type),)
    area = cfg.get("area_ranges")
    confusion, tide, report = (cfg.get(k) or {} for k in ("confusion", "tide", "report"))
    return EvalSettings(
        iou_types=iou_types,
        area_ranges=OmegaConf.to_container(area) if area is not None else None,
        backend=cfg.get("backend", "auto"),
        confusion_iou=float(confusion.get("iou_thresh", 0.5)),
        confusion_score=float(confusion.get("score_thresh", 0.3)),
        tide_pos=float(tide.get("pos_thresh", 0.5)),
        tide_bg=float(tide.get("bg_thresh", 0.1)),
        gallery=int(report.get("gallery", 12)),
    )


def eval_dataset(cfg: DictConfig, detector: Detector):
    """The split ``cfg.split`` of ``cfg.data`` (``data=...`` on the command line) or of the
    data config stored in the checkpoint; the detector must predict each of its categories."""
    data_cfg = cfg.get("data")
    if data_cfg is None:
        stored = stored_data_config(detector)
        if stored is None:
            raise ValueError(
                f"ckpt {cfg.ckpt} stores no data config: choose the dataset with data=coco "
                "data.source.root=DIR (or data=shapes)"
            )
        data_cfg = OmegaConf.create(stored)
    if "source" not in data_cfg:
        raise ValueError("data: expected a dataset config with a source (data=coco, data=shapes)")
    source = instantiate(data_cfg.source)
    source.prepare()  # the shapes dataset is generated if it is not there
    split = cfg.get("split", "val")
    splits = source.splits()
    if split not in splits:
        raise ValueError(f"split must be one of {sorted(splits)}, got {split!r}")
    dataset = CocoDetection(
        splits[split].ann_file, splits[split].image_dir, data_cfg.get("max_image_pixels")
    )
    check_dataset_classes(dataset, detector)
    return dataset


def check_dataset_classes(dataset, detector: Detector) -> None:
    """DatasetError when the annotations have category ids the detector does not predict
    (it may know more: a COCO model's 90 ids, 80 in use), or, for a detector whose classes
    come from its training data (a described checkpoint), when an id names another class."""
    unknown = sorted(set(dataset.cat_ids) - set(detector.category_ids))
    if unknown:
        raise DatasetError(
            f"{dataset.ann_file} has category ids the detector does not predict: {unknown[:10]}"
            f" (the detector's ids: {list(detector.category_ids)[:10]}"
            f"{', ...' if len(detector.category_ids) > 10 else ''})"
        )
    if detector.description is None:  # names made up for a bare state dict: ids only
        return
    trained = dict(zip(detector.category_ids, detector.class_names, strict=True))
    for cat_id, name in zip(dataset.cat_ids, dataset.class_names, strict=True):
        if trained[cat_id] != name:
            raise DatasetError(
                f"{dataset.ann_file} names category id {cat_id} {name!r}, but the detector "
                f"was trained with {trained[cat_id]!r} for that id"
            )


def stored_data_config(detector: Detector) -> dict | None:
    """The ``data`` config of the training run stored in the checkpoint, or None."""
    return (detector.description or {}).get("config", {}).get("data")


def eval_batch_size(cfg: DictConfig, detector: Detector) -> int:
    """``cfg.batch_size``, or when null the training run's ``data.batch_size`` stored in the
    checkpoint (a batch pads its images to the largest, which shifts the numbers a little for
    mixed-size images, so the training's batch reproduces its validation numbers), else 8."""
    size = cfg.get("batch_size")
    if size is None:
        size = (stored_data_config(detector) or {}).get("batch_size", 8)
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValueError(f"batch_size must be an integer >= 1, got {size!r}")
    return size


def predict_dataset(detector: Detector, dataset, cfg: DictConfig) -> list[dict]:
    """COCO results (xywh in original pixels, the dataset's category ids) for every image
    of ``dataset``, in batches, with a progress bar; unreadable images are skipped (named)."""
    loader = DataLoader(
        dataset,
        batch_size=eval_batch_size(cfg, detector),
        num_workers=int(cfg.get("num_workers", 0)),
        collate_fn=collate_detection,
    )
    tile = cfg.get("tile")
    tile = OmegaConf.to_container(tile) if tile is not None else None
    results, skipped = [], []
    known = set(dataset.cat_ids)  # detections of classes the annotations lack are left out
    with tqdm(total=len(dataset), desc="eval", unit="img") as bar:
        for batch in loader:
            skipped += [f"{p} ({why})" for p, why in batch["skipped_files"]]
            if batch["images"]:
                preds = detector.predict(
                    batch["images"],
                    score_thresh=cfg.get("score_thresh"),
                    batch_size=len(batch["images"]),
                    tile=tile,
                    max_det=cfg.get("max_det"),
                )
                for pred, target in zip(preds, batch["targets"], strict=True):
                    results += coco_results(pred, target["image_id"], known)
            bar.update(len(batch["images"]) + batch["skipped"])
    if skipped:
        log.warning("%d unreadable images were skipped: %s", len(skipped), "; ".join(skipped[:5]))
    return results


def coco_results(pred: dict, image_id: int, category_ids: set[int]) -> list[dict]:
    """One image's prediction (``boxes`` xyxy, ``scores``, ``category_ids``, and ``masks``
    [N, H, W] bool for a mask model) as COCO results (``segmentation`` a compressed RLE
    with string counts), keeping the categories in ``category_ids``."""
    boxes = pred["boxes"].detach().to("cpu", torch.float64)
    xywh = torch.cat([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], 1).tolist()
    scores = pred["scores"].detach().cpu().tolist()
    out = [
        {"image_id": int(image_id), "category_id": int(c), "bbox": b, "score": float(s)}
        for b, s, c in zip(xywh, scores, pred["category_ids"], strict=True)
    ]  # fmt: skip
    if "masks" in pred:
        for det, rle in zip(out, encode_masks(pred["masks"]), strict=True):
            det["segmentation"] = rle
    return [det for det in out if det["category_id"] in category_ids]
