"""One-stage detections (per-level top-k, decode, clip, per-class NMS) against stored outputs
of torchvision's RetinaNet.postprocess_detections, including an image with nothing above the
score threshold."""

from pathlib import Path

import torch

from visdet.models.heads.dense_candidates import dense_detections, level_candidates
from visdet.ops import BoxCoder

REFS = torch.load(
    Path(__file__).parents[1] / "reference_data"
    / "torchvision_retinanet_postprocess_references.pt",
    weights_only=True,
)  # fmt: skip


def test_detections_equal_torchvisions():
    s = REFS["settings"]
    for i, expected in enumerate(REFS["detections"]):
        got = dense_detections(
            [torch.sigmoid(lg[i]) for lg in REFS["cls_logits"]],
            [d[i] for d in REFS["bbox_regression"]],
            REFS["anchors"], REFS["size"], BoxCoder((1.0, 1.0, 1.0, 1.0)), s["score_thresh"],
            s["topk_candidates"], s["nms_thresh"], s["detections_per_img"],
        )  # fmt: skip
        assert torch.equal(got["labels"], expected["labels"])
        torch.testing.assert_close(got["scores"], expected["scores"], rtol=0, atol=1e-12)
        torch.testing.assert_close(got["boxes"], expected["boxes"], rtol=0, atol=1e-10)
    assert len(REFS["detections"][0]["scores"]) == s["detections_per_img"]
    assert len(REFS["detections"][1]["scores"]) == 0


def test_level_candidates_brute_force():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(6, 3, generator=g, dtype=torch.float64)
    deltas = torch.zeros(6, 4, dtype=torch.float64)
    anchors = torch.arange(6, dtype=torch.float64)[:, None] * 10 + torch.tensor([0, 0, 5, 5.0])
    boxes, scores, labels = level_candidates(torch.sigmoid(logits), deltas, anchors, BoxCoder(),
                                             (100, 100), 0.3, 4)  # fmt: skip
    flat = [(torch.sigmoid(logits[a, k]).item(), a, k) for a in range(6) for k in range(3)]
    best = sorted([f for f in flat if f[0] > 0.3], reverse=True)[:4]
    assert scores.tolist() == [b[0] for b in best]
    assert labels.tolist() == [b[2] + 1 for b in best]
    torch.testing.assert_close(boxes, anchors[[b[1] for b in best]])  # zero deltas: anchors


def test_score_factors_apply_after_the_threshold_and_the_top_k():
    """MMDetection's score factors: rank and threshold the class scores, then multiply; a
    product below the threshold is kept (no threshold after the factor)."""
    g = torch.Generator().manual_seed(1)
    probs = torch.rand(6, 3, generator=g, dtype=torch.float64)
    factors = torch.rand(6, generator=g, dtype=torch.float64) * 0.2
    deltas = torch.zeros(6, 4, dtype=torch.float64)
    anchors = torch.arange(6, dtype=torch.float64)[:, None] * 20 + torch.tensor([0, 0, 5, 5.0])
    boxes, scores, labels = level_candidates(probs, deltas, anchors, BoxCoder(), (200, 200), 0.3,
                                             4, factors)  # fmt: skip
    flat = [(probs[a, k].item(), a, k) for a in range(6) for k in range(3)]
    best = sorted([f for f in flat if f[0] > 0.3], reverse=True)[:4]
    assert scores.tolist() == [p * factors[a].item() for p, a, _ in best]
    assert labels.tolist() == [k + 1 for _, _, k in best]
    out = dense_detections([probs], [deltas], [anchors], (200, 200), BoxCoder(), 0.3, 4, 0.5,
                           100, [factors])  # fmt: skip
    assert len(out["scores"]) == 4 and bool((out["scores"] < 0.3).all())
    assert out["scores"].tolist() == sorted(scores.tolist(), reverse=True)
