"""The three layers of an exported detector's parity check (``visdet export ckpt=...``).

(a) ``compare_heads``: the heads' raw outputs before post-processing (``HeadGraph``) of the
    exported head file vs eager, within ``rtol``/``atol`` (as ``torch.testing``: the check is
    ``|got - ref| <= atol + rtol * |ref|``).
(b) ``compare_detections``: the final detections of the exported file vs the eager detector,
    matched one to one by label and IoU (> ``iou_min``), scores within ``score_atol``; the
    counts must agree and the rows past ``num_detections`` must be zero.
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


def match(ref: dict[str, Tensor], got: dict[str, Tensor], iou_min: float, score_atol: float):
    """Greedy one-to-one matching of ``got`` to ``ref`` detections (highest ref score first):
    same label, IoU > ``iou_min``, score within ``score_atol``. Returns (matched, worst IoU
    among matches, worst score difference among matches)."""
    n_ref, n_got = len(ref["scores"]), len(got["scores"])
    if n_ref == 0 or n_got == 0:
        return 0, 1.0, 0.0
    iou = box_iou(ref["boxes"].double(), got["boxes"].double())
    same = ref["labels"][:, None] == got["labels"][None, :]
    close = (ref["scores"].double()[:, None] - got["scores"].double()[None, :]).abs()
    ok = same & (iou > iou_min) & (close <= score_atol)
    used = torch.zeros(n_got, dtype=torch.bool)
    matched, worst_iou, worst_score = 0, 1.0, 0.0
    for i in torch.argsort(ref["scores"], descending=True, stable=True).tolist():
        candidates = ok[i] & ~used
        if not candidates.any():
            continue
        j = int(torch.where(candidates, iou[i], torch.tensor(-1.0, dtype=iou.dtype)).argmax())
        used[j] = True
        matched += 1
        worst_iou = min(worst_iou, float(iou[i, j]))
        worst_score = max(worst_score, float(close[i, j]))
    return matched, worst_iou, worst_score


def compare_detections(
    cases: Sequence[tuple[str, Tensor, list[dict], tuple]],
    iou_min: float = 0.99,
    score_atol: float = 1e-3,
) -> Layer:
    """Layer (b). Each case: (name, images [B, 3, H, W], eager detections per image, the
    exported file's padded outputs (boxes, scores, labels, num_detections))."""
    rows, failures = [], []
    min_iou, max_score = 1.0, 0.0
    for name, images, eager, (boxes, scores, labels, counts) in cases:
        b, k = images.shape[0], boxes.shape[1] if boxes.dim() == 3 else 0
        shapes_ok = (
            boxes.shape == (b, k, 4) and scores.shape == (b, k) and labels.shape == (b, k)
            and counts.shape == (b,)
        )  # fmt: skip
        if not shapes_ok:
            failures.append(
                f"{name}: output shapes {[list(t.shape) for t in (boxes, scores, labels, counts)]}"
            )
            rows.append({"case": name, "images": b, "passed": False})
            continue
        unmatched, padding_ok = 0, True
        for i, ref in enumerate(eager):
            n = int(counts[i])
            got = {"boxes": boxes[i, :n], "scores": scores[i, :n], "labels": labels[i, :n]}
            padding_ok &= not (boxes[i, n:].any() or scores[i, n:].any() or labels[i, n:].any())
            matched, worst_iou, worst_score = match(ref, got, iou_min, score_atol)
            unmatched += (len(ref["scores"]) - matched) + (n - matched)
            min_iou, max_score = min(min_iou, worst_iou), max(max_score, worst_score)
        passed = unmatched == 0 and padding_ok
        if not passed:
            failures.append(
                f"{name}: {unmatched} unmatched detections"
                + ("" if padding_ok else ", non-zero rows past num_detections")
            )
        rows.append(
            {
                "case": name,
                "images": b,
                "size": list(images.shape[-2:]),
                "eager_detections": [len(r["scores"]) for r in eager],
                "exported_detections": [int(c) for c in counts],
                "unmatched": unmatched,
                "passed": passed,
            }
        )
    passed = not failures
    failure = "" if passed else (
        f"layer (b) detections (IoU > {iou_min:g}, same label, score within {score_atol:g}): "
        + "; ".join(failures)
    )  # fmt: skip
    measured = {"min_iou": min_iou, "max_score_diff": max_score, "iou_min": iou_min,
                "score_atol": score_atol}  # fmt: skip
    return Layer("b: detections", passed, measured, rows, failure)
