"""The three layers of an exported detector's parity check (``visdet export ckpt=...``).

(a) ``compare_heads``: the heads' raw outputs before post-processing (``HeadGraph``) of the
    exported head file vs eager, within ``rtol``/``atol`` (as ``torch.testing``: the check is
    ``|got - ref| <= atol + rtol * |ref|``).
(b) ``compare_detections``: the final detections of the exported file vs the eager detector,
    matched one to one by label and IoU (> ``iou_min``), scores within ``score_atol``; the
    counts must agree and the rows past ``num_detections`` must be zero. A mask detector's
    ``masks`` (M x M probabilities in each box's frame, before pasting) of matched detections
    must agree within ``mask_atol`` (max |diff| per pixel).
(c) ``compare_ap`` (in ``visdet.export.detector_export``): COCO AP on the validation split.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from visdet.ops.boxes import box_iou


@dataclass
class Layer:
    """One layer's verdict: ``worst`` is measured against ``limit`` (``worst <= limit`` for
    (a) and (c), ``worst >= limit`` for (b)'s minimum IoU; ``passed`` says which way)."""

    name: str
    passed: bool
    measured: dict = field(default_factory=dict)
    cases: list[dict] = field(default_factory=list)
    failure: str = ""

    def to_json(self) -> dict:
        return {"layer": self.name, "passed": self.passed, **self.measured, "cases": self.cases,
                "failure": self.failure}  # fmt: skip


def tensor_excess(got: Tensor, ref: Tensor, rtol: float, atol: float) -> tuple[float, float]:
    """(max |got - ref|, max of |got - ref| - rtol * |ref| - atol): the second is <= 0 when
    ``got`` is within tolerance everywhere. A shape mismatch is infinitely far."""
    if got.shape != ref.shape:
        return float("inf"), float("inf")
    if got.numel() == 0:
        return 0.0, float("-inf")
    diff = (got.double() - ref.double()).abs()
    excess = diff - rtol * ref.double().abs() - atol
    return float(diff.max()), float(excess.max())


def compare_heads(
    run_heads: Callable[[Tensor], Sequence[Tensor]],
    eager_heads: Callable[[Tensor], Sequence[Tensor]],
    images: Sequence[Tensor],
    names: Sequence[str],
    rtol: float = 1e-3,
    atol: float = 1e-5,
) -> Layer:
    """Layer (a) on each image [3, H, W] (run as a batch of one)."""
    cases, worst_diff, worst_excess, worst_name = [], 0.0, float("-inf"), ""
    for image in images:
        with torch.no_grad():
            ref = eager_heads(image[None])
        got = run_heads(image[None])
        per = {}
        for name, g, r in zip(names, got, ref, strict=True):
            diff, excess = tensor_excess(torch.as_tensor(g), r, rtol, atol)
            per[name] = diff
            if excess > worst_excess:
                worst_excess, worst_name = excess, name
            worst_diff = max(worst_diff, diff)
        cases.append({"size": list(image.shape[-2:]), "max_abs_diff": per})
    passed = worst_excess <= 0
    failure = "" if passed else (
        f"layer (a) head outputs: {worst_name} differs from eager by {worst_diff:.3g} "
        f"(beyond rtol {rtol:g} + atol {atol:g} by {worst_excess:.3g})"
    )  # fmt: skip
    measured = {"max_abs_diff": worst_diff, "rtol": rtol, "atol": atol}
    return Layer("a: head outputs", passed, measured, cases, failure)


def matched_pairs(ref: dict[str, Tensor], got: dict[str, Tensor], iou_min: float,
                  score_atol: float) -> list[tuple[int, int, float, float]]:  # fmt: skip
    """Greedy one-to-one matching of ``got`` to ``ref`` detections (highest ref score first):
    same label, IoU > ``iou_min``, score within ``score_atol``. Returns the matches as
    (ref row, got row, IoU, score difference)."""
    n_ref, n_got = len(ref["scores"]), len(got["scores"])
    if n_ref == 0 or n_got == 0:
        return []
    iou = box_iou(ref["boxes"].double(), got["boxes"].double())
    same = ref["labels"][:, None] == got["labels"][None, :]
    close = (ref["scores"].double()[:, None] - got["scores"].double()[None, :]).abs()
    ok = same & (iou > iou_min) & (close <= score_atol)
    used = torch.zeros(n_got, dtype=torch.bool)
    pairs = []
    for i in torch.argsort(ref["scores"], descending=True, stable=True).tolist():
        candidates = ok[i] & ~used
        if not candidates.any():
            continue
        j = int(torch.where(candidates, iou[i], torch.tensor(-1.0, dtype=iou.dtype)).argmax())
        used[j] = True
        pairs.append((i, j, float(iou[i, j]), float(close[i, j])))
    return pairs


def match(ref: dict[str, Tensor], got: dict[str, Tensor], iou_min: float, score_atol: float):
    """``matched_pairs`` summed up: (matched, worst IoU among matches, worst score difference
    among matches)."""
    pairs = matched_pairs(ref, got, iou_min, score_atol)
    worst_iou = min((p[2] for p in pairs), default=1.0)
    return len(pairs), worst_iou, max((p[3] for p in pairs), default=0.0)


def mask_difference(ref: Tensor, got: Tensor, pairs: Sequence[tuple[int, int, float, float]]
                    ) -> float:  # fmt: skip
    """max |got[j] - ref[i]| over the matched rows (i, j, ...) of masks [N, M, M]; 0 without
    matches, infinite when the mask sizes differ."""
    if ref.shape[1:] != got.shape[1:]:
        return float("inf")
    if not pairs:
        return 0.0
    i = torch.tensor([p[0] for p in pairs])
    j = torch.tensor([p[1] for p in pairs])
    return float((got[j].double() - ref[i].double()).abs().max())


def compare_detections(
    cases: Sequence[tuple[str, Tensor, list[dict], tuple]],
    iou_min: float = 0.99,
    score_atol: float = 1e-3,
    mask_atol: float = 1e-3,
) -> Layer:
    """Layer (b). Each case: (name, images [B, 3, H, W], eager detections per image, the
    exported file's padded outputs (boxes, scores, labels, num_detections[, masks])). With
    ``masks`` [B, K, M, M] (a mask detector: the eager detections have ``masks`` [n, M, M]),
    the masks of matched detections must agree within ``mask_atol``; the report adds
    ``max_mask_diff``."""
    rows, failures = [], []
    min_iou, max_score, max_mask = 1.0, 0.0, 0.0
    with_masks = any(len(outputs) == 5 for *_, outputs in cases)
    for name, images, eager, (boxes, scores, labels, counts, *masks) in cases:
        b, k = images.shape[0], boxes.shape[1] if boxes.dim() == 3 else 0
        shapes_ok = (
            boxes.shape == (b, k, 4) and scores.shape == (b, k) and labels.shape == (b, k)
            and counts.shape == (b,)
            and (not with_masks or (len(masks) == 1 and masks[0].dim() == 4
                                    and masks[0].shape[:2] == (b, k)))
        )  # fmt: skip
        if not shapes_ok:
            shapes = [list(t.shape) for t in (boxes, scores, labels, counts, *masks)]
            failures.append(f"{name}: output shapes {shapes}")
            rows.append({"case": name, "images": b, "passed": False})
            continue
        unmatched, padding_ok, case_mask = 0, True, 0.0
        for i, ref in enumerate(eager):
            n = int(counts[i])
            got = {"boxes": boxes[i, :n], "scores": scores[i, :n], "labels": labels[i, :n]}
            padding_ok &= not (boxes[i, n:].any() or scores[i, n:].any() or labels[i, n:].any())
            pairs = matched_pairs(ref, got, iou_min, score_atol)
            unmatched += (len(ref["scores"]) - len(pairs)) + (n - len(pairs))
            min_iou = min([min_iou, *(p[2] for p in pairs)])
            max_score = max([max_score, *(p[3] for p in pairs)])
            if with_masks:
                padding_ok &= not masks[0][i, n:].any()
                case_mask = max(case_mask, mask_difference(ref["masks"], masks[0][i, :n], pairs))
        max_mask = max(max_mask, case_mask)
        masks_ok = case_mask <= mask_atol
        passed = unmatched == 0 and padding_ok and masks_ok
        if not passed:
            failures.append(
                f"{name}: {unmatched} unmatched detections"
                + ("" if padding_ok else ", non-zero rows past num_detections")
                + ("" if masks_ok else f", mask probabilities differ by {case_mask:.3g}")
            )
        row = {
            "case": name,
            "images": b,
            "size": list(images.shape[-2:]),
            "eager_detections": [len(r["scores"]) for r in eager],
            "exported_detections": [int(c) for c in counts],
            "unmatched": unmatched,
            "passed": passed,
        }
        rows.append({**row, "max_mask_diff": case_mask} if with_masks else row)
    passed = not failures
    rule = f"IoU > {iou_min:g}, same label, score within {score_atol:g}"
    rule += f", masks within {mask_atol:g}" if with_masks else ""
    failure = "" if passed else f"layer (b) detections ({rule}): " + "; ".join(failures)
    measured = {"min_iou": min_iou, "max_score_diff": max_score, "iou_min": iou_min,
                "score_atol": score_atol}  # fmt: skip
    if with_masks:
        measured |= {"max_mask_diff": max_mask, "mask_atol": mask_atol}
    return Layer("b: detections", passed, measured, rows, failure)
