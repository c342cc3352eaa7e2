"""Detection errors (boxes, or instance masks with ``iou_type="segm"``) broken down in the
manner of TIDE (Bolya et al., ECCV 2020; the ``tidecv`` package, reimplemented on numpy).

Detections are matched to ground truth as COCOeval does at one IoU threshold ``pos_thresh``:
per image and category, the ``max_dets`` highest-scoring detections in score order, each taking
the unmatched non-crowd box of its category with the highest IoU >= ``pos_thresh`` (ties: the
later box, as COCOeval); a detection left unmatched that overlaps a crowd region of its category
by intersection / detection area >= ``pos_thresh`` is ignored. So the base ``AP`` is COCOeval's
AP at that threshold (AP50 for 0.5): 101-point interpolation, mean over the categories that have
ground truth in the evaluated images.

Every other detection is a false positive of one type, tested in TIDE's order:
  loc   right category, bg_thresh <= IoU < pos_thresh with a box of that category;
  cls   IoU >= pos_thresh with a box of another category;
  dupe  IoU >= pos_thresh with a box of its category already matched by a higher score;
  bkg   IoU < bg_thresh with every box (and every detection on an image without boxes);
  both  the rest (wrong category and bg_thresh <= IoU < pos_thresh).
A ground-truth box never matched and not the target of a cls or loc error is a **miss**.

dAP of a type = AP after fixing every error of that type (an oracle) minus the base AP, 0 where
negative (as TIDE): cls/loc errors become true positives (relabelled to the box's category) if
their box was unmatched and they are the highest-scoring error aimed at it, otherwise they are
removed; dupe, bkg and both errors are removed; a missed box is removed from the ground-truth
count of its category (TIDE's MissedError.fix; a category whose every box is removed scores 0
if it still has detections, and leaves the mean otherwise; with no category left, 1.0). Values
are fractions (TIDE prints them x100).

Where this differs from tidecv's code, it follows COCOeval: ``max_dets`` is per image and
category (tidecv: per image), and crowd overlap counts from ``>= pos_thresh`` (tidecv: ``>``).
tidecv tests IoU <= pos_thresh for loc and <= bg_thresh for bkg; here a detection at exactly
pos_thresh on a matched box is a dupe and one at exactly bg_thresh is not background. tidecv
also drops every detection of a category whose only boxes in an image are crowd regions; here
only those overlapping a crowd region are ignored, as COCOeval. Checked by hand against tidecv
1.0.1 on a generated 300-image set without crowd regions: the same AP, dAP and counts.
"""

from __future__ import annotations

import os
from collections import Counter
from functools import partial

import numpy as np
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from visdet.metrics.coco_eval import evaluated_image_ids, prepare_ground_truth
from visdet.metrics.results_file import load_results

ERROR_TYPES = ("cls", "loc", "both", "dupe", "bkg", "miss")
_CODE = {name: i for i, name in enumerate(ERROR_TYPES)}  # detection error codes; -1: none
_REC_THRS = np.linspace(0.0, 1.0, 101)


def tide_errors(
    coco_gt: COCO | str | os.PathLike,
    results: list[dict] | str | os.PathLike,
    image_ids: list[int] | None = None,
    pos_thresh: float = 0.5,
    bg_thresh: float = 0.1,
    max_dets: int = 100,
    iou_type: str = "bbox",
) -> dict:
    """TIDE's error breakdown of box ``results`` against ``coco_gt`` (see the module doc);
    ``iou_type="segm"`` matches by mask IoU instead (pycocotools' ``maskUtils.iou``, crowd
    regions by intersection over the detection's area, as COCOeval's segm evaluation).

    Returns ``{"AP", "dAP": {type: float}, "counts": {type: int}, "pos_thresh", "bg_thresh",
    "max_dets", "per_image_errors": {image_id: number of errors (false positives + misses)}}``
    with the types of ``ERROR_TYPES``; ``per_image_errors`` lists only images with errors.
    ``AP`` is -1.0 (and every dAP 0) where no evaluated image has ground truth.
    """
    if not 0 < bg_thresh <= pos_thresh <= 1:
        raise ValueError(
            f"tide_errors needs 0 < bg_thresh <= pos_thresh <= 1, got bg_thresh={bg_thresh}, "
            f"pos_thresh={pos_thresh}"
        )
    if isinstance(max_dets, bool) or not isinstance(max_dets, int) or max_dets < 1:
        raise ValueError(f"max_dets must be a positive integer, got {max_dets!r}")
    gt = prepare_ground_truth(coco_gt)
    if iou_type not in ("bbox", "segm"):
        raise ValueError(f"iou_type must be 'bbox' or 'segm', got {iou_type!r}")
    dets = load_results(results, gt, iou_type)
    img_ids = evaluated_image_ids(gt, image_ids)
    cat_ids = sorted(gt.getCatIds())
    iou = _box_iou if iou_type == "bbox" else partial(_mask_iou, gt)
    m = _match_all(gt, dets, img_ids, cat_ids, pos_thresh, bg_thresh, max_dets, iou)

    num_k = len(cat_ids)
    npos = np.bincount(m["gt_cls"], minlength=num_k)
    counted = np.flatnonzero(npos > 0)  # categories with ground truth
    err = m["det_err"]
    scored = ~m["det_ignored"]
    base = _mean_ap(
        m["det_cls"][scored], m["det_score"][scored], m["det_tp"][scored], npos, counted
    )

    best = _best_fixers(m)  # cls/loc errors that become true positives when fixed
    missed = m["gt_missed"]
    dap, counts = {}, {}
    for name in ERROR_TYPES:
        code = _CODE[name]
        counts[name] = int(missed.sum()) if name == "miss" else int((err == code).sum())
        cls, tp, keep, n = m["det_cls"], m["det_tp"], scored.copy(), npos
        if name == "miss":
            n = npos - np.bincount(m["gt_cls"][missed], minlength=num_k)
        elif name in ("cls", "loc"):
            mine = err == code
            fixed = mine & best
            keep &= ~(mine & ~best)
            cls = cls.copy()
            cls[fixed] = m["gt_cls"][m["det_target"][fixed]]
            tp = tp | fixed
        else:
            keep &= err != code
        ap = _mean_ap(cls[keep], m["det_score"][keep], tp[keep], n, counted)
        dap[name] = max(ap - base, 0.0) if base >= 0 else 0.0

    per_image = Counter(m["det_image"][err >= 0].tolist()) + Counter(m["gt_image"][missed].tolist())
    return {
        "AP": base,
        "dAP": dap,
        "counts": counts,
        "pos_thresh": float(pos_thresh),
        "bg_thresh": float(bg_thresh),
        "max_dets": max_dets,
        "per_image_errors": {int(k): int(v) for k, v in sorted(per_image.items())},
    }


def _match_all(gt, dets, img_ids, cat_ids, pos, bg, max_dets, iou) -> dict:
    """Match every evaluated image and classify its false positives; ``iou(detections,
    annotations, crowd)`` gives the [D, G] IoU of lists of result and annotation dicts.

    Returns flat arrays over the kept detections (in image order, then category, then score):
    ``det_image``, ``det_cls`` (index into ``cat_ids``), ``det_score``, ``det_tp``,
    ``det_ignored`` (matched a crowd region), ``det_err`` (code of ``ERROR_TYPES`` or -1),
    ``det_target`` (flat index of the box a cls/loc error aims at, else -1); and over the
    non-crowd boxes: ``gt_image``, ``gt_cls``, ``gt_matched``, ``gt_missed``.
    """
    k_of = {c: k for k, c in enumerate(cat_ids)}
    evaluated = set(img_ids)
    dets = [d for d in dets if d["image_id"] in evaluated]
    order_of = {image_id: i for i, image_id in enumerate(img_ids)}
    n = len(dets)
    d_img = np.array([order_of[d["image_id"]] for d in dets], dtype=np.int64)
    d_cls = np.array([k_of[d["category_id"]] for d in dets], dtype=np.int64)
    d_score = np.array([d["score"] for d in dets], dtype=np.float64)
    # COCOeval's order: per image and category, by score (stable), the first max_dets
    order = np.lexsort((np.arange(n), -d_score, d_cls, d_img))
    d_img, d_cls, d_score, d_idx = d_img[order], d_cls[order], d_score[order], order
    group = d_img * len(cat_ids) + d_cls
    starts = np.r_[0, np.flatnonzero(np.diff(group)) + 1] if n else np.zeros(0, np.int64)
    rank = np.arange(n) - np.repeat(starts, np.diff(np.r_[starts, n]))
    kept = rank < max_dets
    d_img, d_cls, d_score, d_idx = d_img[kept], d_cls[kept], d_score[kept], d_idx[kept]
    bounds = np.searchsorted(d_img, np.arange(len(img_ids) + 1))

    out = {key: [] for key in ("tp", "ignored", "err", "target", "g_img", "g_cls", "matched")}
    out["missed"] = []
    g_offset = 0
    for i, image_id in enumerate(img_ids):
        anns = gt.imgToAnns.get(image_id, [])
        plain = [a for a in anns if not a.get("iscrowd", 0)]
        crowd = [a for a in anns if a.get("iscrowd", 0)]
        g_cls = np.array([k_of[a["category_id"]] for a in plain], dtype=np.int64)
        lo, hi = bounds[i], bounds[i + 1]
        image_dets = [dets[j] for j in d_idx[lo:hi]]
        c_cls = np.array([k_of[a["category_id"]] for a in crowd], dtype=np.int64)
        crowd_iou = iou(image_dets, crowd, True) if len(crowd) and hi > lo else None
        r = _image(iou(image_dets, plain, False), crowd_iou, d_cls[lo:hi], g_cls, c_cls, pos, bg)
        out["tp"].append(r["tp"])
        out["ignored"].append(r["ignored"])
        out["err"].append(r["err"])
        out["target"].append(np.where(r["target"] >= 0, r["target"] + g_offset, -1))
        out["g_img"].append(np.full(len(plain), image_id, dtype=np.int64))
        out["g_cls"].append(g_cls)
        out["matched"].append(r["matched"])
        out["missed"].append(r["missed"])
        g_offset += len(plain)

    def cat(key, dtype):
        return np.concatenate(out[key]).astype(dtype) if out[key] else np.zeros(0, dtype)

    return {
        "det_image": np.asarray(img_ids, dtype=np.int64)[d_img] if len(d_img) else d_img,
        "det_cls": d_cls,
        "det_score": d_score,
        "det_tp": cat("tp", bool),
        "det_ignored": cat("ignored", bool),
        "det_err": cat("err", np.int64),
        "det_target": cat("target", np.int64),
        "gt_image": cat("g_img", np.int64),
        "gt_cls": cat("g_cls", np.int64),
        "gt_matched": cat("matched", bool),
        "gt_missed": cat("missed", bool),
    }


def _image(iou, crowd_iou, d_cls, g_cls, c_cls, pos, bg) -> dict:
    """One image: detections [D] sorted by category then score, their IoU [D, G] with the
    non-crowd objects [G] and (None when there are none) [D, C] with the crowd regions [C]."""
    num_d, num_g = len(d_cls), len(g_cls)
    same = d_cls[:, None] == g_cls[None, :]
    # COCOeval's greedy matching (per category, by score; the last best box wins ties)
    thr = min(pos, 1 - 1e-10)
    det_gt = np.full(num_d, -1, dtype=np.int64)
    matched = np.zeros(num_g, dtype=bool)
    candidates = same & (iou >= thr)
    for d in np.flatnonzero(candidates.any(axis=1)):
        free = candidates[d] & ~matched
        if free.any():
            vals = np.where(free, iou[d], -1.0)
            g = num_g - 1 - int(np.argmax(vals[::-1]))
            det_gt[d], matched[g] = g, True
    tp = det_gt >= 0
    ignored = np.zeros(num_d, dtype=bool)
    if crowd_iou is not None:
        hit = (d_cls[:, None] == c_cls[None, :]) & (crowd_iou >= thr)
        ignored = ~tp & hit.any(axis=1)
    fp = ~tp & ~ignored

    err = np.full(num_d, -1, dtype=np.int64)
    target = np.full(num_d, -1, dtype=np.int64)
    if num_g == 0:
        err[fp] = _CODE["bkg"]
    elif num_d:
        rows = np.arange(num_d)
        iou_same = np.where(same, iou, 0.0)
        iou_other = np.where(same, 0.0, iou)
        j_same, j_other = iou_same.argmax(axis=1), iou_other.argmax(axis=1)
        best_same, best_other = iou_same[rows, j_same], iou_other[rows, j_other]
        best_dupe = np.where(matched[None, :], iou_same, 0.0).max(axis=1)
        loc = fp & (best_same >= bg) & (best_same < pos)
        cls = fp & ~loc & (best_other >= pos)
        dupe = fp & ~loc & ~cls & (best_dupe >= pos)
        bkg = fp & ~loc & ~cls & ~dupe & (iou.max(axis=1) < bg)
        both = fp & ~(loc | cls | dupe | bkg)
        for name, mask in (("loc", loc), ("cls", cls), ("dupe", dupe), ("bkg", bkg)):
            err[mask] = _CODE[name]
        err[both] = _CODE["both"]
        target = np.where(loc, j_same, np.where(cls, j_other, -1))
    aimed = np.zeros(num_g, dtype=bool)  # TIDE's "usable": an unmatched box a cls/loc error aims at
    aimed[target[target >= 0]] = True
    aimed &= ~matched
    return {
        "tp": tp,
        "ignored": ignored,
        "err": err,
        "target": target,
        "matched": matched,
        "missed": ~matched & ~aimed,
    }


def _best_fixers(m: dict) -> np.ndarray:
    """[D] bool: cls/loc errors whose box is unmatched and that have the highest score among
    the errors aimed at it (ties: the first in image, category and score order), as TIDE's
    BestGTMatch."""
    target = m["det_target"]
    aims = np.flatnonzero(target >= 0)
    best = np.zeros(len(target), dtype=bool)
    if not aims.size:
        return best
    aims = aims[~m["gt_matched"][target[aims]]]
    if not aims.size:  # every aimed-at box is matched: nothing to fix
        return best
    order = np.lexsort((aims, -m["det_score"][aims], target[aims]))
    ranked = aims[order]
    first = np.r_[True, np.diff(target[ranked]) != 0]
    best[ranked[first]] = True
    return best


def _mean_ap(cls, score, tp, npos, categories) -> float:
    """COCOeval's 101-point AP per category (detections in COCOeval's order), mean over
    ``categories``; a category with no ground truth left scores 0 with detections and is left
    out without (as TIDE); 1.0 where every category is left out (all ground truth removed by
    the miss fix, nothing wrong remains); -1.0 for no categories."""
    aps = []
    for k in categories:
        sel = cls == k
        if npos[k] <= 0:
            if sel.any():
                aps.append(0.0)
            continue
        order = np.argsort(-score[sel], kind="mergesort")
        hits = tp[sel][order]
        tps = np.cumsum(hits, dtype=np.float64)
        fps = np.cumsum(~hits, dtype=np.float64)
        rc = tps / npos[k]
        pr = tps / (fps + tps + np.spacing(1))
        q = np.zeros(len(_REC_THRS))
        if len(pr):
            pr = np.maximum.accumulate(pr[::-1])[::-1]
            inds = np.searchsorted(rc, _REC_THRS, side="left")
            ok = inds < len(pr)
            q[ok] = pr[inds[ok]]
        aps.append(float(q.mean()))
    if not aps:
        return 1.0 if len(categories) else -1.0
    return float(np.mean(aps))


def _mask_iou(gt: COCO, dets: list[dict], anns: list[dict], crowd: bool) -> np.ndarray:
    """pycocotools' mask IoU of detections (``segmentation`` RLEs) and annotations -> [D, G];
    crowd: intersection over the detection's area."""
    if not dets or not anns:
        return np.zeros((len(dets), len(anns)))
    rles = [gt.annToRLE(a) for a in anns]
    ious = mask_utils.iou([d["segmentation"] for d in dets], rles, [int(crowd)] * len(anns))
    return np.asarray(ious, dtype=np.float64).reshape(len(dets), len(anns))


def _box_iou(dets: list[dict], anns: list[dict], crowd: bool) -> np.ndarray:
    """pycocotools' box IoU of detections and annotations (``bbox`` xywh) -> [D, G]; crowd:
    intersection over the detection's area."""
    if not dets or not anns:
        return np.zeros((len(dets), len(anns)))
    d = np.array([x["bbox"] for x in dets], dtype=np.float64).reshape(-1, 4)
    g = np.array([x["bbox"] for x in anns], dtype=np.float64).reshape(-1, 4)
    w = np.minimum(d[:, None, 0] + d[:, None, 2], g[None, :, 0] + g[None, :, 2]) - np.maximum(
        d[:, None, 0], g[None, :, 0]
    )
    h = np.minimum(d[:, None, 1] + d[:, None, 3], g[None, :, 1] + g[None, :, 3]) - np.maximum(
        d[:, None, 1], g[None, :, 1]
    )
    inter = np.clip(w, 0, None) * np.clip(h, 0, None)
    d_area = (d[:, 2] * d[:, 3])[:, None]
    union = d_area if crowd else d_area + (g[:, 2] * g[:, 3])[None, :] - inter
    union = np.broadcast_to(union, inter.shape)
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
