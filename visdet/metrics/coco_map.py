"""COCO box (and mask) mAP as a torchmetrics Metric whose compute runs ``evaluate_coco``
(COCOeval)."""

from __future__ import annotations

import os
from collections import Counter

import numpy as np
import torch
from torch import Tensor
from torchmetrics import Metric

from visdet.data.instance_masks import encode_masks
from visdet.metrics.coco_eval import STAT_NAMES, evaluate_coco, prepare_ground_truth

SUMMARY_NAMES = (
    "mAP",
    "mAP50",
    "mAP75",
    "mAP_small",
    "mAP_medium",
    "mAP_large",
    "mAR_1",
    "mAR_10",
    "mAR_100",
    "mAR_small",
    "mAR_medium",
    "mAR_large",
)


class CocoMeanAP(Metric):
    """Accumulates detections (in original-image pixels, contiguous labels) and evaluates
    them against a COCO annotation file.

    ``update(preds, image_ids)``: per image a dict with ``boxes`` [D, 4] xyxy, ``scores`` [D]
    and ``labels`` [D] in 1..K, where label k is the k-th category id in sorted order.
    ``compute()`` returns ``mAP``, ``mAP50``, ``mAP75``, small/medium/large AP, AR@1/10/100
    and ``per_class`` (category name -> AP, nan for a class without ground truth), and
    ``num_images``, the number of images evaluated. Only images seen by ``update`` are
    evaluated. State is gathered from every process before the evaluation (DDP); an image
    seen twice (e.g. a sampler that pads shards by repeating images) is an error, since its
    detections would count twice.

    With ``masks=True`` each prediction also has ``masks`` [D, 1, H, W] or [D, H, W] in the
    original image's pixels (probabilities, thresholded at 0.5, or bool); they are kept as
    COCO RLE (bytes in a uint8 state, so they gather across processes) and ``compute()``
    adds the segm evaluation as ``mask_mAP``, ``mask_mAP50``, ... (the same names with
    ``mask_``) and ``mask_per_class``.
    """

    full_state_update = False

    def __init__(self, ann_file: str | os.PathLike, masks: bool = False, **kwargs) -> None:
        super().__init__(**kwargs)
        self.ann_file = str(ann_file)
        self.masks = masks
        if masks:
            self.add_state("rle_bytes", default=[], dist_reduce_fx="cat")
            self.add_state("rle_lengths", default=[], dist_reduce_fx="cat")
            self.add_state("rle_sizes", default=[], dist_reduce_fx="cat")
        self.coco_gt = prepare_ground_truth(ann_file)
        self.cat_ids = sorted(self.coco_gt.getCatIds())
        self.add_state("boxes", default=[], dist_reduce_fx="cat")
        self.add_state("scores", default=[], dist_reduce_fx="cat")
        self.add_state("labels", default=[], dist_reduce_fx="cat")
        self.add_state("det_image_ids", default=[], dist_reduce_fx="cat")
        self.add_state("seen_image_ids", default=[], dist_reduce_fx="cat")

    def update(self, preds: list[dict[str, Tensor]], image_ids: list[int]) -> None:
        if len(preds) != len(image_ids):
            raise ValueError(f"got {len(preds)} predictions for {len(image_ids)} image ids")
        for p, image_id in zip(preds, image_ids, strict=True):
            n = p["boxes"].shape[0]
            self.boxes.append(p["boxes"].detach().float().reshape(n, 4))
            self.scores.append(p["scores"].detach().float().reshape(n))
            self.labels.append(p["labels"].detach().long().reshape(n))
            self.det_image_ids.append(
                torch.full((n,), int(image_id), dtype=torch.long, device=self.device)
            )
            self.seen_image_ids.append(torch.tensor([int(image_id)], device=self.device))
            if self.masks:
                self._add_masks(p, n)

    def _add_masks(self, pred: dict[str, Tensor], n: int) -> None:
        if "masks" not in pred:
            raise ValueError("CocoMeanAP(masks=True) needs 'masks' in every prediction")
        masks = pred["masks"].detach()
        masks = masks[:, 0] if masks.dim() == 4 else masks
        if masks.shape[0] != n:
            raise ValueError(f"got {masks.shape[0]} masks for {n} boxes")
        h, w = masks.shape[-2:]
        counts = [r["counts"].encode() for r in encode_masks(masks)]
        data = np.frombuffer(b"".join(counts), dtype=np.uint8).copy()
        self.rle_bytes.append(torch.from_numpy(data).to(self.device))
        self.rle_lengths.append(torch.tensor([len(c) for c in counts], dtype=torch.long,
                                             device=self.device))  # fmt: skip
        self.rle_sizes.append(torch.tensor([[h, w]] * n, dtype=torch.long,
                                           device=self.device).reshape(n, 2))  # fmt: skip

    @staticmethod
    def _cat(states) -> Tensor:
        if isinstance(states, Tensor):
            return states
        return torch.cat(states) if len(states) else torch.zeros(0)

    def compute(self) -> dict:
        boxes = self._cat(self.boxes).cpu().reshape(-1, 4)
        scores = self._cat(self.scores).cpu().reshape(-1)
        labels = self._cat(self.labels).cpu().long().reshape(-1)
        det_ids = self._cat(self.det_image_ids).cpu().long().reshape(-1)
        seen_all = self._cat(self.seen_image_ids).cpu().long().tolist()
        seen = sorted(set(seen_all))
        if len(seen) != len(seen_all):
            repeated = sorted(i for i, n in Counter(seen_all).items() if n > 1)
            raise ValueError(
                f"COCO evaluation: {len(seen_all) - len(seen)} image(s) were evaluated more "
                f"than once (ids {repeated[:5]}); the evaluation sampler must give each image to "
                "exactly one process (visdet.data.distributed_sampling.EvaluationShardSampler)"
            )
        results = evaluate_detections(
            self.coco_gt, self.cat_ids, boxes, scores, labels, det_ids, seen
        )
        if self.masks:
            rles = self._rles()
            masked = evaluate_detections(self.coco_gt, self.cat_ids, boxes, scores, labels,
                                         det_ids, seen, rles)  # fmt: skip
            masked.pop("detections", None)
            results.update({f"mask_{k}": v for k, v in masked.items()})
            for det, rle in zip(results.get("detections", ()), rles if seen else (), strict=True):
                det["segmentation"] = rle  # for the report's segm evaluation
        results["num_images"] = len(seen)
        return results

    def _rles(self) -> list[dict]:
        data = self._cat(self.rle_bytes).cpu().to(torch.uint8).numpy().tobytes()
        lengths = self._cat(self.rle_lengths).cpu().long().tolist()
        sizes = self._cat(self.rle_sizes).cpu().long().reshape(-1, 2).tolist()
        out, start = [], 0
        for length, size in zip(lengths, sizes, strict=True):
            out.append({"size": size, "counts": data[start : start + length].decode()})
            start += length
        return out


def evaluate_detections(
    coco_gt,
    cat_ids: list[int],
    boxes: Tensor,
    scores: Tensor,
    labels: Tensor,
    image_ids: Tensor,
    seen_ids: list[int],
    masks: list[dict] | None = None,
) -> dict:
    """COCO box evaluation (``evaluate_coco``) of detections given as flat tensors: ``boxes``
    [D, 4] xyxy, ``scores`` [D], ``labels`` [D] in 1..K (label k = ``cat_ids[k - 1]``),
    ``image_ids`` [D]; only the images ``seen_ids`` count. Stats absent for COCOeval (-1)
    and classes without ground truth are nan; ``detections`` holds the detections as COCO
    results (xywh, category ids), for the evaluation report. With ``masks`` (one COCO RLE
    per detection) the evaluation is segm instead."""
    results = {name: float("nan") for name in SUMMARY_NAMES}
    results["per_class"] = {coco_gt.cats[c].get("name", str(c)): float("nan") for c in cat_ids}
    if not seen_ids:
        return results
    xywh = boxes.detach().double().cpu().reshape(-1, 4).clone()
    xywh[:, 2:] -= xywh[:, :2]
    dets = [
        {"image_id": i, "category_id": cat_ids[lab - 1], "bbox": b, "score": s}
        for i, lab, b, s in zip(
            image_ids.tolist(), labels.tolist(), xywh.tolist(), scores.tolist(), strict=True
        )
    ]
    if masks is not None:  # segm results as torchvision's reference writes them: no bbox
        for det, rle in zip(dets, masks, strict=True):
            del det["bbox"]
            det["segmentation"] = rle
    results["detections"] = dets
    iou_type = "bbox" if masks is None else "segm"
    evaluation = evaluate_coco(coco_gt, dets, iou_type, image_ids=seen_ids)
    for name, stat in zip(SUMMARY_NAMES, STAT_NAMES, strict=True):
        value = evaluation.stats[stat]
        results[name] = value if value >= 0 else float("nan")
    for row in evaluation.per_class:
        results["per_class"][row["name"]] = row["AP"] if row["AP"] >= 0 else float("nan")
    return results
